"""A real Postfix relaying into Roost's LMTP listener.

A private Postfix instance (its own config, queue and log under a temp
directory, SMTP on a free loopback port, no chroot) accepts mail for
example.org and hands it to Roost over LMTP (virtual_transport). Needs
Debian's postfix package and root (Postfix's master runs as root); skipped
otherwise. Install without a system configuration and without starting the
system instance:

    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get install -y --no-install-recommends postfix

Run it alone: ROOST_TESTS=test_smtp_postfix make integration
"""
import os
import shutil
import smtplib
import subprocess
import tempfile
import time
import unittest

from roosttest import POSTFIX, POSTFIX_MASTER_CF, free_port, postfix_config, wait_port
from test_smtp import ALICE, BOB, message, start_server, uids



@unittest.skipUnless(os.path.exists(POSTFIX) and os.path.exists(POSTFIX_MASTER_CF),
                     "postfix not installed (see the module docstring)")
@unittest.skipUnless(os.geteuid() == 0, "a private Postfix instance needs root")
class PostfixLmtpTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="roost-postfix-")
        self.etc = os.path.join(self.dir, "etc")  # made by write_config()
        self.started = False

    def tearDown(self):
        if self.started:
            subprocess.run([POSTFIX, "-c", self.etc, "stop"], capture_output=True, timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_config(self, smtp_port, lmtp_port):
        self.etc = postfix_config(self.dir, smtp_port, """relay_domains = example.org
relay_transport = lmtp:inet:127.0.0.1:{lmtp}
lmtp_host_lookup = native
smtputf8_enable = yes
""".format(lmtp=lmtp_port))

    def postfix_log(self):
        try:
            with open(os.path.join(self.dir, "postfix.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def test_postfix_relays_into_lmtp(self):
        srv = start_server()
        with srv:
            smtp_port = free_port()
            self.write_config(smtp_port, srv.port("lmtp"))
            res = subprocess.run([POSTFIX, "-c", self.etc, "start"], capture_output=True,
                                 text=True, timeout=60)
            self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
            self.started = True
            self.assertTrue(wait_port(smtp_port), self.postfix_log())
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as s:
                s.sendmail("sender@remote.example", [ALICE, BOB],
                           message("via postfix", "Relayed by Postfix over LMTP.\r\n.dot\r\n"))
                s.sendmail("sender@remote.example", ["nobody@example.org"],
                           message("nobody"))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if uids(srv, ALICE) and uids(srv, BOB) and "nobody@example.org" in \
                        self.postfix_log() and "status=bounced" in self.postfix_log():
                    break
                time.sleep(0.2)
            a, b = uids(srv, ALICE), uids(srv, BOB)
            self.assertEqual((len(a), len(b)), (1, 1), self.postfix_log())
            raw = subprocess.run([srv.binary, "mailbox", "fetch", ALICE, "INBOX", str(a[0][0]),
                                  "--config", srv.conf_path], capture_output=True,
                                 check=True).stdout
            self.assertIn(b"with LMTP", raw)
            self.assertIn(b"by postfix.test (Postfix)", raw)
            self.assertIn(b"\r\n.dot\r\n", raw)
            log = self.postfix_log()
            self.assertRegex(log, r"to=<alice@example\.org>.*relay=127\.0\.0\.1.*status=sent")
            # Roost's 550 5.1.1 at RCPT made Postfix bounce, not retry.
            self.assertRegex(log, r"to=<nobody@example\.org>.*status=bounced")


if __name__ == "__main__":
    unittest.main()
