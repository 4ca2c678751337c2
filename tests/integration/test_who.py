"""roost who and roost kick: the running server's sessions listed and closed
through its control socket <data_dir>/ctl.sock, which answers only root and
the server's own user and survives hostile requests."""
import imaplib
import os
import poplib
import socket
import stat
import time
import unittest

from roosttest import BACKENDS, RoostServer, wait_log

NOBODY = 65534


def sessions(srv):
    """The `who --raw` lines as dicts (values unquoted where simple)."""
    res = srv.cli("who", "--raw")
    out = []
    for line in res.stdout.splitlines():
        if not line.startswith("session "):
            continue
        d = {}
        for kv in line.split(" ")[1:]:
            k, _, v = kv.partition("=")
            d[k] = v
        out.append(d)
    return out


def ctl(srv, data, timeout=10):
    """Send raw bytes to ctl.sock; the reply until the server closes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(os.path.join(srv.data_dir, "ctl.sock"))
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            reply += b
    except ConnectionResetError:
        pass
    s.close()
    return reply


class WhoTest(unittest.TestCase):
    backend = BACKENDS[0]

    def setUp(self):
        self.srv = RoostServer(backend=self.backend, listeners=("imap", "pop3"))
        self.srv.start_or_skip()
        self.assertTrue(wait_log(self.srv, r"event=ctl_listen"), self.srv.log())
        self.open = []

    def tearDown(self):
        for c in self.open:
            try:
                c.close()
            except OSError:
                pass
        self.srv.stop()
        self.srv.cleanup()

    def imap(self, user, password):
        m = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=15)
        m.login(user, password)
        self.open.append(m.sock)
        return m

    def raw_imap(self, user, password, select=True):
        s = socket.create_connection(("127.0.0.1", self.srv.port("imap")), timeout=15)
        self.open.append(s)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b'a LOGIN "%s" "%s"\r\n' % (user.encode(), password.encode()))
        while not f.readline().startswith(b"a "):
            pass
        if select:
            s.sendall(b"b SELECT INBOX\r\n")
            while not f.readline().startswith(b"b "):
                pass
        return s, f

    def test_who_and_kick(self):
        s_alice, f_alice = self.raw_imap("alice@example.org", "alice-secret")
        bob = self.imap("bob@example.org", "bob-secret")
        bob.select("INBOX")
        pop = poplib.POP3("127.0.0.1", self.srv.port("pop3"), timeout=15)
        pop.user("alice@example.org")
        pop.pass_("alice-secret")
        self.open.append(pop.sock)

        sess = sessions(self.srv)
        by = {(d["user"], d["proto"]): d for d in sess}
        self.assertIn(("alice@example.org", "imap"), by, sess)
        self.assertIn(("alice@example.org", "pop3"), by, sess)
        self.assertIn(("bob@example.org", "imap"), by, sess)
        a = by[("alice@example.org", "imap")]
        self.assertEqual(a["mailbox"], "INBOX")
        self.assertEqual(a["peer"], "127.0.0.1")
        self.assertGreater(int(a["bytes_in"]), 30)
        self.assertGreater(int(a["bytes_out"]), 100)
        self.assertLessEqual(abs(int(a["since"]) - time.time()), 120)
        self.assertEqual(by[("alice@example.org", "pop3")]["mailbox"], "INBOX")
        # The table form names the same sessions.
        table = self.srv.cli("who").stdout
        self.assertIn("USER", table.splitlines()[0])
        self.assertEqual(sum("alice@example.org" in l for l in table.splitlines()), 2)

        # Only alice's POP3 session goes.
        res = self.srv.cli("kick", "alice@example.org", "--proto", "pop3")
        self.assertEqual(res.stdout, "1 session closed\n")
        with self.assertRaises((poplib.error_proto, OSError, EOFError)):
            pop.noop()
            pop.noop()
        s_alice.sendall(b"c NOOP\r\n")
        self.assertTrue(f_alice.readline().startswith(b"c OK"))
        # The client sees the close before the server has finished tearing
        # the session down: wait until the registry no longer lists it, so
        # the next kick counts only the IMAP session.
        self.assertTrue(wait_log(self.srv, r"event=disconnect conn=\d+ peer=\S+ proto=pop3 "
                                 r"user=alice@example.org reason=kicked"), self.srv.log()[-3000:])
        deadline = time.monotonic() + 15
        while (("alice@example.org", "pop3") in
               [(d["user"], d["proto"]) for d in sessions(self.srv)]):
            self.assertLess(time.monotonic(), deadline, sessions(self.srv))
            time.sleep(0.05)

        # Then every alice session; bob's stays and works.
        res = self.srv.cli("kick", "alice@example.org")
        self.assertEqual(res.stdout, "1 session closed\n")
        rest = f_alice.read()  # until the server closes
        self.assertIn(b"* BYE Disconnected by the administrator", rest)
        self.assertEqual(bob.noop()[0], "OK")
        self.assertTrue(wait_log(self.srv, r"event=disconnect conn=\d+ peer=\S+ proto=\w+ "
                                 r"user=alice@example.org reason=kicked", 2), self.srv.log()[-3000:])
        users = [(d["user"], d["proto"]) for d in sessions(self.srv)]
        self.assertEqual(users, [("bob@example.org", "imap")])

        # No session left: exit 1, said on stderr.
        res = self.srv.cli("kick", "alice@example.org", check=False)
        self.assertEqual(res.returncode, 1)
        self.assertIn("no session of alice@example.org", res.stderr)
        self.assertEqual(self.srv.cli("kick", check=False).returncode, 2)
        self.assertEqual(self.srv.cli("kick", "a b", check=False).returncode, 2)
        self.assertEqual(self.srv.cli("who", "--bogus", check=False).returncode, 2)

    def test_kick_busy_session(self):
        # A client that stops reading a long reply is closed too, without
        # waiting for it to read.
        for i in range(40):
            self.srv.cli("deliver", "-a", "alice@example.org",
                         input=("Subject: m%d\r\n\r\n" % i) + "x" * 60000 + "\r\n")
        s, f = self.raw_imap("alice@example.org", "alice-secret")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"d FETCH 1:* BODY.PEEK[]\r\n")
        self.assertTrue(f.read(1000).startswith(b"* 1 FETCH"))
        res = self.srv.cli("kick", "alice@example.org")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertTrue(wait_log(self.srv, r"event=disconnect conn=\d+ .*reason=kicked"),
                        self.srv.log()[-3000:])

    def test_ctl_socket_hostile(self):
        path = os.path.join(self.srv.data_dir, "ctl.sock")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(ctl(self.srv, b"garbage\n"), b"error unknown command\n")
        self.assertEqual(ctl(self.srv, b"who extra\n"), b"error unknown command\n")
        self.assertEqual(ctl(self.srv, b"kick\n"), b"error usage: kick USER [PROTO]\n")
        self.assertEqual(ctl(self.srv, b"kick a b c\n"), b"error usage: kick USER [PROTO]\n")
        self.assertEqual(ctl(self.srv, b"who\0\n"), b"error bad request\n")
        self.assertEqual(ctl(self.srv, b"\xff\xfe\x80\n"), b"error unknown command\n")
        self.assertEqual(ctl(self.srv, b"A" * (1 << 20)), b"error request too long\n")
        self.assertEqual(ctl(self.srv, b"kick " + b"\xc3" * 400 + b"\n"), b"ok kicked=0\n")
        self.assertEqual(ctl(self.srv, b"\n"), b"error unknown command\n")
        # A client that says nothing is dropped after the timeout; the
        # socket serves the next one.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(path)
        self.assertEqual(s.recv(100), b"")
        s.close()
        self.assertTrue(ctl(self.srv, b"who\n").startswith(b"ok sessions=0"))

    @unittest.skipUnless(os.geteuid() == 0, "needs root to act as another user")
    def test_ctl_refuses_other_users(self):
        path = os.path.join(self.srv.data_dir, "ctl.sock")
        def run():
            """Connect as nobody in a forked child: what it was told."""
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(r)
                    os.setgroups([])
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    c.settimeout(10)
                    try:
                        c.connect(path)
                        try:
                            c.sendall(b"who\n")
                        except (BrokenPipeError, ConnectionResetError):
                            pass  # refused before the line was read: the answer is queued
                        out = c.recv(100).strip()
                    except PermissionError:
                        out = b"EACCES"
                    os.write(w, out)
                finally:
                    os._exit(0)
            os.close(w)
            with os.fdopen(r, "rb") as f:
                out = f.read().decode()
            os.waitpid(pid, 0)
            return out

        # The directories are opened for the test; the socket's mode stops them.
        for d in (self.srv.dir, self.srv.data_dir):
            os.chmod(d, 0o711)
        self.assertEqual(run(), "EACCES")
        # Even with the mode opened, the credentials are checked.
        os.chmod(path, 0o666)
        self.assertEqual(run(), "error permission denied")
        self.assertTrue(wait_log(self.srv, r"event=ctl_refused uid=%d" % NOBODY))
        os.chmod(path, 0o600)

    def test_no_server(self):
        self.srv.stop()
        self.assertFalse(os.path.exists(os.path.join(self.srv.data_dir, "ctl.sock")))
        res = self.srv.cli("who", check=False)
        self.assertEqual(res.returncode, 1)
        self.assertIn("no server is running", res.stderr)


if __name__ == "__main__":
    unittest.main()
