"""The fail2ban filter shipped in etc/fail2ban matches every failed login
the server logs (IMAP, POP3, SMTP AUTH, HTTP), with the peer's address, and
nothing else; checked with Debian's fail2ban-regex on a real server's log.
Skipped when fail2ban is not installed (scripts/deps.sh test installs it)."""
import base64
import imaplib
import os
import poplib
import shutil
import smtplib
import subprocess
import tempfile
import unittest
import urllib.error
import urllib.request

from roosttest import BACKENDS, ROOT, own_server, wait_log

FILTER = os.path.join(ROOT, "etc", "fail2ban", "filter.d", "roost.conf")
FAIL2BAN_REGEX = shutil.which("fail2ban-regex")


def run_regex(log_path):
    """The addresses fail2ban-regex reports, one per match."""
    res = subprocess.run([FAIL2BAN_REGEX, "-o", "ip", log_path, FILTER], capture_output=True,
                         text=True, timeout=120)
    if res.returncode != 0:
        raise AssertionError("fail2ban-regex failed: %s%s" % (res.stdout, res.stderr))
    return [l.strip() for l in res.stdout.splitlines() if l.strip()]


@unittest.skipIf(FAIL2BAN_REGEX is None,
                 "fail2ban-regex not installed (apt-get install fail2ban; "
                 "scripts/deps.sh test does it)")
class TestFail2banFilter(unittest.TestCase):
    def test_every_failed_login_matches_once(self):
        srv = own_server(self, backend=BACKENDS[0],
                         listeners=("imap", "pop3", "submission", "http"),
                         conf={"auth": {"fail_delay_initial": "0", "fail_delay_max": "0"}})
        with imaplib.IMAP4("127.0.0.1", srv.port("imap")) as c:
            # A good login is not a failure.
            c.login("alice@example.org", "alice-secret")
        with imaplib.IMAP4("127.0.0.1", srv.port("imap")) as c:
            with self.assertRaises(imaplib.IMAP4.error):
                c.login("alice@example.org", "wrong")
        p = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=15)
        p.user('x"peer=203.0.113.9')  # a forged field stays inside user=
        with self.assertRaises(poplib.error_proto):
            p.pass_("wrong")
        p.quit()
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=15) as s:
            s.ehlo()
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.login("nobody@example.org", "wrong")
        req = urllib.request.Request(
            "http://127.0.0.1:%d/jmap/session" % srv.port("http"),
            headers={"Authorization": "Basic " +
                     base64.b64encode(b"bob@example.org:wrong").decode()})
        with self.assertRaises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=15)
        # smtplib tries PLAIN, then LOGIN: two failures there.
        self.assertTrue(wait_log(srv, r"event=auth_failed", 5), srv.log()[-3000:])
        for proto in ("imap", "pop3", "submission", "http"):
            self.assertRegex(srv.log(), r"event=auth_failed conn=\d+ peer=127\.0\.0\.1 "
                                        r"proto=%s user=\S+ mechanism=" % proto)
        self.assertIn(r'user="x\"peer\x3d203.0.113.9"', srv.log())
        ips = run_regex(srv.log_path)
        self.assertEqual(ips, ["127.0.0.1"] * 5, ips)

    def test_syslog_ipv6_and_unix_peers(self):
        d = tempfile.mkdtemp(prefix="roost-f2b-")
        try:
            path = os.path.join(d, "mail.log")
            with open(path, "w") as f:
                f.write(
                    "Dec  4 08:20:04 mx roost[4242]: event=auth_failed conn=16 "
                    "peer=198.51.100.4 proto=submission user=- mechanism=LOGIN delay_ms=0\n"
                    "2026-12-04T08:20:01.123Z info event=auth_failed conn=13 "
                    "peer=2001:db8::7 proto=pop3 user=x mechanism=USER delay_ms=2000\n"
                    "2026-12-04T08:20:02.123Z info event=auth_failed conn=14 peer=unix "
                    "proto=lmtp user=bob mechanism=PLAIN delay_ms=2000\n"
                    "2026-12-04T08:20:03.123Z info event=login conn=15 peer=192.0.2.8 "
                    "proto=imap user=bob\n"
                    "2026-12-04T08:20:05.123Z info event=rcpt_rejected conn=17 "
                    "peer=192.0.2.9 proto=smtp reason=unknown_user to=x@example.org\n"
                    # A name tried cannot name another address.
                    "2026-12-04T08:20:06.123Z info event=auth_failed conn=18 peer=192.0.2.10 "
                    "proto=imap user=\"x peer\\x3d203.0.113.9\" mechanism=LOGIN delay_ms=0\n"
                    # The form of earlier releases (proto before peer) still counts.
                    "2026-12-04T08:20:07.123Z info event=auth_failed proto=imap "
                    "peer=192.0.2.11 user=bob conn=19 mechanism=LOGIN delay_ms=0\n")
            self.assertEqual(run_regex(path),
                             ["198.51.100.4", "2001:db8::7", "192.0.2.10", "192.0.2.11"])
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
