"""The roost command line: user management, config printing, config errors,
and serve starting and stopping (through roosttest.RoostServer)."""
import os
import pty
import select
import shutil
import signal
import smtplib
import stat
import subprocess
import tempfile
import time
import unittest

import roosttest


class CliCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="roost-cli-")
        self.conf = os.path.join(self.dir, "roost.conf")
        self.passwd = os.path.join(self.dir, "var", "passwd")
        self.write_conf("[server]\ndata_dir = %s\n" % os.path.join(self.dir, "var"))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_conf(self, text, path=None):
        with open(path or self.conf, "w") as f:
            f.write(text)

    def roost(self, *args, input=None, conf=True, cwd=None):
        cmd = [roosttest.ROOST_BIN] + list(args)
        if conf:
            cmd += ["--config", self.conf]
        return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60,
                              cwd=cwd or self.dir)


class TestUser(CliCase):
    def users(self):
        res = self.roost("user", "list")
        self.assertEqual(res.returncode, 0, res.stderr)
        return res.stdout.split()

    def test_round_trip(self):
        self.assertEqual(self.users(), [])
        res = self.roost("user", "add", "alice@example.org", input="first-pw\n")
        self.assertEqual(res.returncode, 0, res.stderr)
        res = self.roost("user", "add", "Bob@Example.org", input="bob-pw\n")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(self.users(), ["alice@example.org", "Bob@Example.org"])
        self.assertEqual(stat.S_IMODE(os.stat(self.passwd).st_mode), 0o600)
        with open(self.passwd) as f:
            text = f.read()
        # Never the password itself, a strong hash in Dovecot's format.
        self.assertNotIn("first-pw", text)
        self.assertIn("alice@example.org:{SHA512-CRYPT}$6$", text)
        before = text

        res = self.roost("user", "passwd", "ALICE@example.org", input="second-pw\n")
        self.assertEqual(res.returncode, 0, res.stderr)
        with open(self.passwd) as f:
            after = f.read()
        self.assertNotEqual(before, after)
        self.assertEqual(after.splitlines()[1], before.splitlines()[1])  # bob untouched

        res = self.roost("user", "del", "alice@example.org")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(self.users(), ["Bob@Example.org"])
        res = self.roost("user", "del", "alice@example.org")
        self.assertEqual(res.returncode, 1)
        self.assertIn("no such user", res.stderr)
        res = self.roost("user", "passwd", "alice@example.org", input="x\n")
        self.assertEqual(res.returncode, 1)

    def test_duplicate_refused(self):
        self.assertEqual(self.roost("user", "add", "alice@example.org",
                                    input="pw\n").returncode, 0)
        with open(self.passwd) as f:
            before = f.read()
        res = self.roost("user", "add", "ALICE@example.org", input="other\n")
        self.assertEqual(res.returncode, 1)
        self.assertIn("already exists", res.stderr)
        with open(self.passwd) as f:
            self.assertEqual(f.read(), before)

    def test_bad_input_changes_nothing(self):
        for name in ("a:b@example.org", "al ice@example.org", "@example.org", "", "a/b"):
            res = self.roost("user", "add", name, input="pw\n")
            self.assertEqual(res.returncode, 2, name)
        res = self.roost("user", "add", "alice@example.org", input="")
        self.assertEqual(res.returncode, 1)
        res = self.roost("user", "add", "alice@example.org", input="\n")
        self.assertEqual(res.returncode, 1)
        self.assertIn("empty password", res.stderr)
        self.assertFalse(os.path.exists(self.passwd))
        # A password on the command line is a usage error, not a password.
        res = self.roost("user", "add", "alice@example.org", "secret", input="pw\n")
        self.assertEqual(res.returncode, 2)
        self.assertEqual(self.roost("user").returncode, 2)
        self.assertEqual(self.roost("user", "frobnicate", "x").returncode, 2)

    def test_config_option_anywhere(self):
        res = self.roost("--config", self.conf, "user", "add", "carol@example.org",
                         input="pw\n", conf=False)
        self.assertEqual(res.returncode, 0, res.stderr)
        res = self.roost("user", "--config=" + self.conf, "list", conf=False)
        self.assertEqual(res.stdout.split(), ["carol@example.org"])
        # Default: ./roost.conf of the working directory.
        res = self.roost("user", "list", conf=False, cwd=self.dir)
        self.assertEqual(res.stdout.split(), ["carol@example.org"])

    def test_hand_edited_file_is_kept(self):
        os.makedirs(os.path.dirname(self.passwd))
        with open(self.passwd, "w") as f:
            f.write("# staff\nold@example.org:{PLAIN}x:1000:1000::/home/old::\n")
        self.assertEqual(self.roost("user", "add", "new@example.org",
                                    input="pw\n").returncode, 0)
        with open(self.passwd) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[:2], ["# staff", "old@example.org:{PLAIN}x:1000:1000::/home/old::"])
        self.assertTrue(lines[2].startswith("new@example.org:{SHA512-CRYPT}"))


class TestTerminal(CliCase):
    """On a terminal the password is asked twice with echo off."""

    def run_on_tty(self, args, answers):
        master, slave = pty.openpty()
        proc = subprocess.Popen([roosttest.ROOST_BIN] + args + ["--config", self.conf],
                                stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        out = b""
        pending = list(answers)
        try:
            while True:
                r, _, _ = select.select([master], [], [], 30)
                if not r:
                    raise AssertionError("no output; so far: %r" % out)
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                if pending and out.rstrip().endswith(b"password:"):
                    os.write(master, pending.pop(0).encode() + b"\n")
        finally:
            os.close(master)
            proc.wait(30)
        return proc.returncode, out.decode(errors="replace")

    def test_prompt_twice_without_echo(self):
        rc, out = self.run_on_tty(["user", "add", "tty@example.org"],
                                  ["s3cret-typed", "s3cret-typed"])
        self.assertEqual(rc, 0, out)
        self.assertIn("New password:", out)
        self.assertIn("Retype new password:", out)
        self.assertNotIn("s3cret-typed", out)
        with open(self.passwd) as f:
            self.assertIn("tty@example.org:{SHA512-CRYPT}", f.read())

    def test_mismatch_changes_nothing(self):
        rc, out = self.run_on_tty(["user", "add", "tty@example.org"], ["one", "two"])
        self.assertEqual(rc, 1, out)
        self.assertIn("do not match", out)
        self.assertFalse(os.path.exists(self.passwd))


class TestConfig(CliCase):
    def test_prints_defaults(self):
        empty = os.path.join(self.dir, "empty")
        os.makedirs(empty)
        res = self.roost("config", conf=False, cwd=empty)
        self.assertEqual(res.returncode, 0, res.stderr)
        out = res.stdout
        for line in ("[server]", "data_dir = ./var", "[storage]", "backend = lmdb",
                     "imap = 127.0.0.1:2143", "smtp = 127.0.0.1:2525",
                     "password_scheme = SHA512-CRYPT", "plaintext_insecure = no",
                     "passwd_file = ./var/passwd"):
            self.assertIn(line + "\n", out)

    def test_prints_file_values(self):
        self.write_conf("[server]\ndata_dir = %s\n[listen]\npop3 = off\n"
                        % os.path.join(self.dir, "var"))
        res = self.roost("config")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("pop3 = off\n", res.stdout)
        self.assertIn("data_dir = %s\n" % os.path.join(self.dir, "var"), res.stdout)

    def check_bad(self, text, *words):
        self.write_conf(text)
        for args in (("config",), ("serve",), ("user", "list")):
            res = self.roost(*args)
            self.assertEqual(res.returncode, 2, (args, res.stdout, res.stderr))
            self.assertIn(self.conf, res.stderr)
            for w in words:
                self.assertIn(w, res.stderr)
            self.assertEqual(res.stdout, "")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "var")))

    def test_unknown_key(self):
        self.check_bad("[server]\nhostname = x\nbogus_key = 1\n", ":3", "bogus_key")

    def test_bad_value(self):
        self.check_bad("# c\n[limits]\nmax_connections = lots\n", ":3", "max_connections")

    def test_duplicate_section(self):
        self.check_bad("[auth]\n[smtp]\n\n[auth]\n", ":4", "auth")

    def test_sample_config_is_valid(self):
        sample = os.path.join(roosttest.ROOT, "etc", "roost.conf.sample")
        res = self.roost("config", "--config", sample, conf=False)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("data_dir = /var/lib/roost\n", res.stdout)

    def test_missing_file(self):
        res = self.roost("config", "--config", os.path.join(self.dir, "nope.conf"), conf=False)
        self.assertEqual(res.returncode, 2)
        self.assertIn("nope.conf", res.stderr)

    def test_usage(self):
        self.assertEqual(self.roost("frobnicate").returncode, 2)
        self.assertEqual(self.roost(conf=False).returncode, 2)
        self.assertEqual(self.roost("config", "extra").returncode, 2)
        res = self.roost("--version", conf=False)
        self.assertEqual(res.returncode, 0)
        self.assertTrue(res.stdout.startswith("roost "))
        res = self.roost("help", conf=False)
        self.assertEqual(res.returncode, 0)
        for cmd in ("serve", "user", "config"):
            self.assertIn(cmd, res.stdout)


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


class TestServe(unittest.TestCase):
    # Failed logins are slowed per address; keep the test fast.
    CONF = {"auth": {"fail_delay_initial": "1", "fail_delay_max": "1"}}

    def smtp_login(self, srv, user, password):
        """True/False for SMTP AUTH PLAIN through the real server."""
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as c:
            c.ehlo()
            if not c.has_extn("auth"):
                self.skipTest("smtp listener offers no AUTH in this build")
            try:
                c.login(user, password, initial_response_ok=True)
                return True
            except smtplib.SMTPAuthenticationError:
                return False

    def test_starts_and_stops_cleanly(self):
        with roosttest.RoostServer(listeners=("smtp",), conf=self.CONF) as srv:
            self.assertTrue(wait_for(lambda: "event=serving" in srv.log()), srv.log())
            self.assertIn("users=2", srv.log())
        # stop() checked exit status 0 and the log for sanitizer reports.
        self.assertEqual(srv.returncode, 0)

    def test_users_change_while_running(self):
        with roosttest.RoostServer(listeners=("smtp",), conf=self.CONF) as srv:
            self.assertTrue(self.smtp_login(srv, "alice@example.org", "alice-secret"))
            self.assertTrue(self.smtp_login(srv, "ALICE@example.org", "alice-secret"))
            self.assertFalse(self.smtp_login(srv, "alice@example.org", "wrong"))
            self.assertFalse(self.smtp_login(srv, "carol@example.org", "carol-pw"))
            # Added, changed and deleted while the server runs: no signal needed.
            srv.add_user("carol@example.org", "carol-pw")
            self.assertTrue(self.smtp_login(srv, "carol@example.org", "carol-pw"))
            srv.cli("user", "passwd", "carol@example.org", input="carol-new\n")
            self.assertFalse(self.smtp_login(srv, "carol@example.org", "carol-pw"))
            self.assertTrue(self.smtp_login(srv, "carol@example.org", "carol-new"))
            srv.cli("user", "del", "carol@example.org")
            self.assertFalse(self.smtp_login(srv, "carol@example.org", "carol-new"))

    def test_sighup_with_bad_passwd_keeps_users(self):
        with roosttest.RoostServer(listeners=("smtp",), conf=self.CONF) as srv:
            self.assertTrue(self.smtp_login(srv, "bob@example.org", "bob-secret"))
            passwd = os.path.join(srv.data_dir, "passwd")
            with open(passwd + ".new", "w") as f:
                f.write("this line has no colon\n")
            os.rename(passwd + ".new", passwd)
            srv.proc.send_signal(signal.SIGHUP)
            self.assertTrue(wait_for(lambda: "keeping=old" in srv.log()), srv.log())
            self.assertTrue(self.smtp_login(srv, "bob@example.org", "bob-secret"))
            self.assertIn("line=1", srv.log())

    def test_bind_failure_exits(self):
        """A listener that cannot be bound stops the start-up: exit 1, nothing served."""
        with roosttest.RoostServer(listeners=("smtp",), conf=self.CONF) as first:
            srv = roosttest.RoostServer(
                listeners=("smtp",),
                conf={"listen": {"submission": "127.0.0.1:%d" % first.port("smtp")}})
            res = srv.serve_refused()
            self.assertEqual(res.returncode, 1, res.stderr)
            self.assertIn("Address already in use", res.stderr)
            self.assertNotIn("event=serving", res.stderr)

    def test_serve_usage(self):
        res = subprocess.run([roosttest.ROOST_BIN, "serve", "now"], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(res.returncode, 2)


if __name__ == "__main__":
    unittest.main()
