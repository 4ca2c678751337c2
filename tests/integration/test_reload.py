"""SIGHUP and `roost reload` read the aliases and passwd files again; a file
that does not load is reported (event=reload_failed, and by roost reload's
exit status) and the tables in use stay as they were."""
import imaplib
import os
import re
import signal
import smtplib
import unittest

from roosttest import BACKENDS, RoostServer, wait_log

USERS = {"alice@example.org": "alice-pw", "bob@example.org": "bob-pw"}


def msg(subject):
    return ("From: s@remote.example\r\nTo: team@example.org\r\nSubject: %s\r\n\r\nbody\r\n"
            % subject).encode()


class ReloadCase:
    backend = BACKENDS[0]

    def setUp(self):
        self.srv = RoostServer(backend=self.backend, users=USERS, listeners=("smtp", "imap"),
                               conf={"smtp": {"aliases": "X"}})
        orig = self.srv.write_config

        def write_config():
            self.aliases = os.path.join(self.srv.dir, "aliases")
            self.write_aliases("team: alice\n")
            self.srv.extra_conf["smtp"]["aliases"] = self.aliases
            orig()
        self.srv.write_config = write_config
        self.srv.start_or_skip()
        self.assertTrue(wait_log(self.srv, r"event=ctl_listen"))

    def tearDown(self):
        self.srv.stop()
        self.srv.cleanup()

    def write_aliases(self, text):
        # As an editor saving over it would: a new file renamed in place.
        tmp = self.aliases + ".new"
        with open(tmp, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        os.rename(tmp, self.aliases)

    def count(self, user):
        res = self.srv.cli("mailbox", "uids", user, "INBOX", check=False)
        return len(res.stdout.splitlines()) if res.returncode == 0 else 0

    def send_team(self, subject):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            return s.sendmail("s@remote.example", ["team@example.org"], msg(subject))

    def login(self, user, password):
        m = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=15)
        try:
            return m.login(user, password)[0]
        except imaplib.IMAP4.error:
            return "NO"
        finally:
            try:
                m.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    def test_aliases_reload(self):
        self.assertEqual(self.send_team("one"), {})
        self.assertEqual((self.count("alice@example.org"), self.count("bob@example.org")),
                         (1, 0))
        # SIGHUP: the new table.
        self.write_aliases("team: bob\nabuse: alice\n")
        self.srv.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_log(self.srv, r"event=reloaded file=aliases .* aliases=2"),
                        self.srv.log()[-2000:])
        self.assertEqual(self.send_team("two"), {})
        self.assertEqual((self.count("alice@example.org"), self.count("bob@example.org")),
                         (1, 1))

        # Broken files: roost reload fails, says which and why, keeps the old.
        for bad in ("team bob\n", "team: |/bin/sh\n", "team: bob\nteam: alice\n",
                    b"team: bob\n\x00\n", "x: " + "a," * 5000 + "\n"):
            self.write_aliases(bad)
            res = self.srv.cli("reload", check=False)
            self.assertEqual(res.returncode, 1, res.stdout)
            self.assertIn("aliases:", res.stderr)
            self.assertIn("the old aliases are kept", res.stderr)
        self.assertEqual(len(re.findall(r"event=reload_failed file=aliases", self.srv.log())), 5)
        os.unlink(self.aliases)
        self.srv.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_log(self.srv, r"event=reload_failed file=aliases .*"
                                 r"No such file", 1))
        self.assertEqual(self.send_team("three"), {})
        self.assertEqual(self.count("bob@example.org"), 2)

        # Fixed again: roost reload says so.
        self.write_aliases("team: alice, bob\n")
        res = self.srv.cli("reload")
        self.assertEqual(res.stdout, "reloaded\n")
        self.assertEqual(self.send_team("four"), {})
        self.assertEqual((self.count("alice@example.org"), self.count("bob@example.org")),
                         (2, 3))

    def test_passwd_reload(self):
        passwd = os.path.join(self.srv.data_dir, "passwd")
        self.assertEqual(self.login("alice@example.org", "alice-pw"), "OK")
        with open(passwd) as f:
            good = f.read()
        with open(passwd, "a") as f:
            f.write("this line has no colon\n")
        res = self.srv.cli("reload", check=False)
        self.assertEqual(res.returncode, 1)
        self.assertIn("passwd file", res.stderr)
        self.assertTrue(wait_log(self.srv, r"event=reload_failed file=passwd"))
        # The old users still log in.
        self.assertEqual(self.login("alice@example.org", "alice-pw"), "OK")
        with open(passwd, "w") as f:
            f.write(good)
        self.srv.cli("user", "del", "bob@example.org")
        self.assertEqual(self.srv.cli("reload").returncode, 0)
        self.assertEqual(self.login("bob@example.org", "bob-pw"), "NO")
        self.assertEqual(self.login("alice@example.org", "alice-pw"), "OK")


for _b in BACKENDS:
    globals()["TestReload_" + _b] = type("TestReload_" + _b, (ReloadCase, unittest.TestCase),
                                         {"backend": _b})
del _b

if __name__ == "__main__":
    unittest.main()
