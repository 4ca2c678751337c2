"""SIGHUP and `roost reload` read the configuration, aliases and passwd files
again; a file that does not load is reported (event=reload_failed, and by
roost reload's exit status) and what is in use stays as it was. Of the
configuration, the values a running server can take (log level, limits,
timeouts, rates, TLS) apply at once; the others are named as needing a
restart and keep their running values."""
import imaplib
import os
import re
import signal
import smtplib
import unittest

from roosttest import BACKENDS, backend_classes, own_server, wait_log

USERS = {"alice@example.org": "alice-pw", "bob@example.org": "bob-pw"}


def msg(subject):
    return ("From: s@remote.example\r\nTo: team@example.org\r\nSubject: %s\r\n\r\nbody\r\n"
            % subject).encode()


class ReloadCase:
    backend = BACKENDS[0]

    def setUp(self):
        self.srv = own_server(self, backend=self.backend, users=USERS,
                              listeners=("smtp", "imap"), aliases="team: alice\n")
        self.aliases = self.srv.aliases_path
        self.assertTrue(wait_log(self.srv, r"event=ctl_listen"))

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
        self.assertEqual(res.stdout, "configuration unchanged\nreloaded\n")
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


class ConfigReloadTest(unittest.TestCase):
    def setUp(self):
        self.srv = own_server(self, users=USERS, listeners=("smtp",),
                              conf={"server": {"log_level": "info"},
                                    "limits": {"max_recipients": "2"}})
        self.assertTrue(wait_log(self.srv, r"event=ctl_listen"))

    def edit_config(self, **changes):
        """Rewrite roost.conf with key = value lines replaced (the ports stay)."""
        with open(self.srv.conf_path) as f:
            text = f.read()
        for key, value in changes.items():
            text, n = re.subn(r"(?m)^%s = .*$" % key, "%s = %s" % (key, value), text)
            self.assertEqual(n, 1, key)
        tmp = self.srv.conf_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.srv.conf_path)

    def accepted(self, n):
        """How many of n recipients one SMTP transaction gets accepted."""
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.ehlo("client.test")
            s.mail("s@remote.example")
            return sum(s.rcpt("alice@example.org")[0] == 250 for _ in range(n))

    def test_config_reload(self):
        self.assertEqual(self.accepted(4), 2)
        self.assertNotIn(" debug ", self.srv.log())
        self.edit_config(max_recipients="5", log_level="debug", workers="3")
        res = self.srv.cli("reload")
        self.assertEqual(res.stdout.splitlines(),
                         ["applied: server.log_level limits.max_recipients",
                          "needs a restart (kept as running): server.workers",
                          "reloaded"], res.stdout)
        self.assertTrue(wait_log(self.srv, r"event=reloaded file=config path=\S+ "
                                 r"applied=server.log_level,limits.max_recipients "
                                 r"restart_needed=server.workers"), self.srv.log()[-2000:])
        # A new session sees the new limit and the new log level.
        self.assertEqual(self.accepted(6), 5)
        self.assertIn(" debug event=", self.srv.log())
        # Unchanged: nothing applied, the restart still pending.
        res = self.srv.cli("reload")
        self.assertEqual(res.stdout.splitlines(),
                         ["needs a restart (kept as running): server.workers", "reloaded"])

        # A broken file: SIGHUP logs why and keeps every running value
        # (roost reload itself refuses such a file before asking the server).
        self.edit_config(max_recipients="lots")
        res = self.srv.cli("reload", check=False)
        self.assertEqual(res.returncode, 2)
        self.assertIn("max_recipients", res.stderr)
        self.srv.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_log(self.srv, r"event=reload_failed file=config path=\S+ "
                                 r"error=.*max_recipients.* keeping=old"), self.srv.log()[-2000:])
        self.assertEqual(self.accepted(6), 5)
        # Fixed: the next reload applies it.
        self.edit_config(max_recipients="1")
        self.srv.cli("reload")
        self.assertEqual(self.accepted(3), 1)

    def test_reload_while_serving(self):
        """Sessions running while the configuration is swapped under them
        see one configuration or the other, never a torn one (under make
        tsan this is the race check of the swap)."""
        import threading
        seen, errors = [], []

        def client():
            try:
                for _ in range(5):
                    seen.append(self.accepted(6))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for i in range(10):
            self.edit_config(max_recipients="5" if i % 2 == 0 else "2",
                             log_level="debug" if i % 2 == 0 else "info")
            self.srv.cli("reload")
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(seen), 20)
        self.assertTrue(set(seen) <= {2, 5}, seen)
        self.assertIsNone(self.srv.proc.poll())
        self.assertNotIn("ThreadSanitizer", self.srv.log())


backend_classes(globals(), ReloadCase, "TestReload_%s", BACKENDS)

if __name__ == "__main__":
    unittest.main()
