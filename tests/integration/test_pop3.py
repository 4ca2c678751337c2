"""POP3 against a real `roost serve`: poplib, curl, fetchmail, raw sockets.

Each backend gets one server for most tests (every test uses its own user,
so tests do not see each other's mail); a second, small server covers what
needs special settings (a non-loopback listener, short idle timeouts).
Messages are put in place with build/tests/tools/roost-fill, which stores
them through the storage API.
"""
import base64
import imaplib
import os
import poplib
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from roosttest import (BACKENDS, FILL, LineClient, RoostServer, SharedServer, backend_classes,
                       free_port, tls_context, wait_port)


N_USERS = 40
USERS = {"u%d@example.org" % i: "pw-%d" % i for i in range(N_USERS)}

CONF = {
    "auth": {"fail_delay_initial": "1", "fail_delay_max": "1"},
    "limits": {"max_message_size": "60M"},
}

SAMPLE = (b"From: Alice <alice@example.org>\r\n"
          b"To: Bob <bob@example.org>\r\n"
          b"Subject: hello\r\n"
          b"Message-ID: <1@example.org>\r\n"
          b"\r\n"
          b"line one\r\n"
          b".line starting with a dot\r\n"
          b"..two dots\r\n"
          b".\r\n"
          b"last line\r\n")

CAPA_WANT = ("TOP", "USER", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "STLS",
             "EXPIRE NEVER", "LOGIN-DELAY 0")


def fill(srv, user, msg, count=1, numbered=False, fast=False):
    """Store msg count times in user's INBOX; returns (uidvalidity, last uid)."""
    args = [FILL]
    if numbered:
        args.append("-n")
    if fast:
        args.append("-F")
    args += [srv.conf_path, user, str(count)]
    res = subprocess.run(args, input=msg, capture_output=True, timeout=600)  # a bound on a hang, not a timing check (20,000 under ASan on a loaded machine passed 120 s)
    if res.returncode != 0:
        raise AssertionError("roost-fill failed: %s" % res.stderr.decode(errors="replace"))
    uidv, uid = res.stdout.split()
    return int(uidv), int(uid)


def wire_octets(msg):
    """The bytes RETR delivers (after unstuffing) for a stored message."""
    out = msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\n"):
        out += b"\r\n"
    return out


class Raw(LineClient):
    """A line-level POP3 client on a plain socket (optionally upgraded)."""

    def __init__(self, port, host="127.0.0.1", tls=False, timeout=30):
        super().__init__((host, port), timeout=timeout, tls=tls)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        super().send(data)

    def line(self):
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def cmd(self, text):
        self.send(text + "\r\n" if isinstance(text, str) else text + b"\r\n")
        return self.line()

    def multi(self):
        """Lines of a multi-line body up to the final ".", unstuffed."""
        lines = []
        while True:
            line = self.line()
            if line == b".":
                return lines
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)

    def body(self):
        """A multi-line body as the bytes the client rebuilds (lines + CRLF)."""
        return b"".join(line + b"\r\n" for line in self.multi())

    def closed(self):
        """True once the server closed the connection (after any pending lines)."""
        try:
            return self.read_to_close()
        except (socket.timeout, ConnectionResetError):
            return False

    def login(self, user, password):
        self.greeting = self.line()
        assert self.greeting.startswith(b"+OK"), self.greeting
        r = self.cmd("USER " + user)
        assert r.startswith(b"+OK"), r
        r = self.cmd("PASS " + password)
        assert r.startswith(b"+OK"), r
        return self


class Pop3Base(SharedServer):
    backend = None
    next_user = 0
    needs_fill = True

    @classmethod
    def server_args(cls):
        # IMAP on a port of our own, not waited for: the test that needs it
        # skips when this build has no IMAP handler.
        cls.imap_port = free_port()
        conf = dict(CONF, listen={"imap": "127.0.0.1:%d" % cls.imap_port})
        return dict(backend=cls.backend, users=USERS, conf=conf, listeners=("pop3", "pop3s"))

    @classmethod
    def server_stopped(cls):
        log = cls.srv.log()
        for pw in USERS.values():
            if pw in log:
                raise AssertionError("a password reached the server log")

    def user(self):
        cls = type(self)
        i = cls.next_user
        cls.next_user += 1
        self.assertLess(i, N_USERS, "raise N_USERS")
        name = "u%d@example.org" % i
        return name, USERS[name]

    def port(self, name="pop3"):
        return self.srv.port(name)

    def raw(self, **kw):
        r = Raw(self.port(), **kw)
        self.addCleanup(r.close)
        return r

    def session(self, user, password):
        return self.raw().login(user, password)

    def login_retry(self, user, password, tries=50):
        """Log in, waiting while a just-dropped session still holds the lock."""
        for _ in range(tries):
            r = self.raw()
            r.line()
            r.cmd("USER " + user)
            resp = r.cmd("PASS " + password)
            if resp.startswith(b"+OK"):
                return r
            self.assertIn(b"[IN-USE]", resp)
            r.cmd("QUIT")
            r.close()
            time.sleep(0.1)
        self.fail("maildrop stayed locked")

    def stat(self, r):
        resp = r.cmd("STAT")
        self.assertTrue(resp.startswith(b"+OK "), resp)
        n, size = resp.split()[1:3]
        return int(n), int(size)

    # ---- greeting, CAPA ----

    def test_greeting_and_capa(self):
        r = self.raw()
        greeting = r.line()
        self.assertTrue(greeting.startswith(b"+OK"), greeting)
        self.assertNotIn(b"<", greeting, "no APOP timestamp: APOP is not offered")
        self.assertTrue(r.cmd("CAPA").startswith(b"+OK"))
        capa = [line.decode() for line in r.multi()]
        for want in CAPA_WANT:
            self.assertIn(want, capa)
        self.assertTrue(any(c.startswith("SASL ") and "PLAIN" in c.split() for c in capa), capa)
        self.assertTrue(any(c.startswith("IMPLEMENTATION") for c in capa), capa)
        self.assertFalse(any(c.startswith("APOP") for c in capa))
        self.assertTrue(r.cmd("APOP x 0123456789abcdef0123456789abcdef").startswith(b"-ERR"))
        self.assertTrue(r.cmd("STAT").startswith(b"-ERR"), "STAT before login")
        self.assertIn("UTF8 USER", capa)
        self.assertTrue(r.cmd("UTF8").startswith(b"+OK"))
        self.assertTrue(r.cmd("UTF8 x").startswith(b"-ERR"))
        self.assertEqual(r.cmd("QUIT")[:3], b"+OK")
        self.assertTrue(r.closed())

    def test_capa_after_login_and_over_pop3s(self):
        user, pw = self.user()
        r = Raw(self.port("pop3s"), tls=True)
        self.addCleanup(r.close)
        r.line()
        self.assertTrue(r.cmd("CAPA").startswith(b"+OK"))
        capa = [line.decode() for line in r.multi()]
        self.assertNotIn("STLS", capa, "no STLS over implicit TLS")
        self.assertIn("USER", capa)
        self.assertTrue(r.cmd("STLS").startswith(b"-ERR"))
        r.cmd("USER " + user)
        self.assertTrue(r.cmd("PASS " + pw).startswith(b"+OK"))
        self.assertTrue(r.cmd("CAPA").startswith(b"+OK"))
        capa = [line.decode() for line in r.multi()]
        self.assertIn("TOP", capa)
        self.assertNotIn("USER", capa)
        self.assertNotIn("STLS", capa)
        self.assertTrue(r.cmd("USER " + user).startswith(b"-ERR"), "USER in TRANSACTION")
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))

    # ---- poplib ----

    def test_poplib_stls_user_pass_retr_top_uidl(self):
        user, pw = self.user()
        uidv, uid = fill(self.srv, user, SAMPLE)
        p = poplib.POP3("127.0.0.1", self.port(), timeout=30)
        self.addCleanup(p.close)
        self.assertIn(b"STLS", [c.encode() for c in p.capa()])
        p.stls(tls_context())
        self.assertTrue(p.user(user).startswith(b"+OK"))
        self.assertTrue(p.pass_(pw).startswith(b"+OK"))
        count, size = p.stat()
        self.assertEqual(count, 1)
        self.assertEqual(size, len(wire_octets(SAMPLE)))
        resp, listing, _ = p.list()
        self.assertEqual(listing, [b"1 %d" % size])
        self.assertEqual(p.list(1), b"+OK 1 %d" % size)
        resp, lines, octets = p.retr(1)
        self.assertEqual(b"".join(line + b"\r\n" for line in lines), SAMPLE)
        self.assertTrue(resp.startswith(b"+OK %d" % size), resp)
        resp, lines, _ = p.top(1, 0)
        self.assertEqual(lines, SAMPLE.split(b"\r\n\r\n")[0].split(b"\r\n") + [b""])
        resp, lines, _ = p.top(1, 2)
        self.assertEqual(lines[-3:], [b"", b"line one", b".line starting with a dot"])
        uidl = "%08X%08X" % (uid, uidv)
        self.assertEqual(p.uidl(1), ("+OK 1 " + uidl).encode())
        resp, listing, _ = p.uidl()
        self.assertEqual(listing, [b"1 " + uidl.encode()])
        self.assertTrue(p.noop().startswith(b"+OK"))
        self.assertTrue(p.quit().startswith(b"+OK"))
        # Nothing was deleted; the UIDL is stable across sessions.
        r = self.session(user, pw)
        self.assertEqual(r.cmd("UIDL 1"), ("+OK 1 " + uidl).encode())

    def test_bare_lf_and_sizes(self):
        user, pw = self.user()
        msgs = [b"Subject: lf\n\nbody\n.dot\nno final newline",
                b"Subject: crlf\r\n\r\nbody\r\n",
                b"Subject: mixed\r\n\nlone\rcr\n..\n",
                b"."]
        for m in msgs:
            fill(self.srv, user, m)
        r = self.session(user, pw)
        n, total = self.stat(r)
        self.assertEqual(n, len(msgs))
        self.assertEqual(total, sum(len(wire_octets(m)) for m in msgs))
        self.assertTrue(r.cmd("LIST").startswith(b"+OK"))
        sizes = [int(line.split()[1]) for line in r.multi()]
        for i, m in enumerate(msgs, 1):
            resp = r.cmd("RETR %d" % i)
            self.assertTrue(resp.startswith(b"+OK"), resp)
            body = r.body()
            self.assertEqual(body, wire_octets(m))
            self.assertEqual(len(body), sizes[i - 1])
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))

    # ---- AUTH (RFC 5034) ----

    def test_auth_plain_and_login(self):
        user, pw = self.user()
        fill(self.srv, user, SAMPLE)
        ir = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
        # AUTH with no argument lists the mechanisms.
        r = self.raw()
        r.line()
        self.assertTrue(r.cmd("AUTH").startswith(b"+OK"))
        self.assertIn(b"PLAIN", r.multi())
        # SASL-IR
        self.assertTrue(r.cmd("AUTH PLAIN " + ir).startswith(b"+OK"))
        self.assertEqual(self.stat(r)[0], 1)
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))
        # Without initial response: empty challenge "+ ".
        r = self.raw()
        r.line()
        self.assertEqual(r.cmd("AUTH PLAIN").rstrip(), b"+")
        self.assertTrue(r.cmd(ir).startswith(b"+OK"))
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))
        # Cancelled, malformed, unknown mechanism.
        r = self.raw()
        r.line()
        r.cmd("AUTH PLAIN")
        self.assertTrue(r.cmd("*").startswith(b"-ERR"))
        r.cmd("AUTH PLAIN")
        self.assertTrue(r.cmd("!!!not base64").startswith(b"-ERR"))
        self.assertTrue(r.cmd("AUTH X-UNKNOWN").startswith(b"-ERR"))
        # LOGIN
        resp = r.cmd("AUTH LOGIN")
        self.assertTrue(resp.startswith(b"+ "), resp)
        resp = r.cmd(base64.b64encode(user.encode()).decode())
        self.assertTrue(resp.startswith(b"+ "), resp)
        self.assertTrue(r.cmd(base64.b64encode(pw.encode()).decode()).startswith(b"+OK"))
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))

    def test_wrong_password(self):
        user, pw = self.user()
        r = self.raw()
        r.line()
        r.cmd("USER " + user)
        resp = r.cmd("PASS wrong")
        self.assertTrue(resp.startswith(b"-ERR [AUTH]"), resp)
        # USER must be given again after a failed PASS.
        self.assertTrue(r.cmd("PASS " + pw).startswith(b"-ERR"))
        bad = base64.b64encode(("\0%s\0nope" % user).encode()).decode()
        self.assertTrue(r.cmd("AUTH PLAIN " + bad).startswith(b"-ERR [AUTH]"))
        r.cmd("USER nobody@example.org")
        self.assertTrue(r.cmd("PASS x").startswith(b"-ERR [AUTH]"))
        r.cmd("USER " + user)
        self.assertTrue(r.cmd("PASS " + pw).startswith(b"+OK"))
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))

    # ---- deletion semantics ----

    def test_dele_then_quit_deletes(self):
        user, pw = self.user()
        for i in range(3):
            fill(self.srv, user, SAMPLE.replace(b"hello", b"msg %d" % i))
        r = self.session(user, pw)
        self.assertTrue(r.cmd("UIDL").startswith(b"+OK"))
        before = dict(line.split() for line in r.multi())
        self.assertTrue(r.cmd("DELE 2").startswith(b"+OK"))
        self.assertTrue(r.cmd("DELE 2").startswith(b"-ERR"), "already deleted")
        self.assertTrue(r.cmd("RETR 2").startswith(b"-ERR"))
        self.assertTrue(r.cmd("LIST 2").startswith(b"-ERR"))
        self.assertEqual(self.stat(r)[0], 2)
        self.assertTrue(r.cmd("LIST").startswith(b"+OK"))
        self.assertEqual([line.split()[0] for line in r.multi()], [b"1", b"3"])
        resp = r.cmd("QUIT")
        self.assertTrue(resp.startswith(b"+OK"), resp)
        self.assertTrue(r.closed())
        r = self.login_retry(user, pw)
        self.assertEqual(self.stat(r)[0], 2)
        self.assertTrue(r.cmd("UIDL").startswith(b"+OK"))
        after = [line.split()[1] for line in r.multi()]
        self.assertEqual(after, [before[b"1"], before[b"3"]])
        self.assertTrue(r.cmd("RETR 2").startswith(b"+OK"))
        self.assertIn(b"Subject: msg 2", r.body())
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))

    def test_dele_then_disconnect_deletes_nothing(self):
        user, pw = self.user()
        fill(self.srv, user, SAMPLE, count=2)
        r = self.session(user, pw)
        self.assertTrue(r.cmd("DELE 1").startswith(b"+OK"))
        self.assertTrue(r.cmd("DELE 2").startswith(b"+OK"))
        r.close()
        r = self.login_retry(user, pw)
        self.assertEqual(self.stat(r)[0], 2)
        # RSET undoes marks too.
        r.cmd("DELE 1")
        self.assertTrue(r.cmd("RSET").startswith(b"+OK"))
        self.assertEqual(self.stat(r)[0], 2)
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))
        r = self.login_retry(user, pw)
        self.assertEqual(self.stat(r)[0], 2)
        r.cmd("QUIT")

    def test_poplib_dele_quit(self):
        user, pw = self.user()
        fill(self.srv, user, SAMPLE, count=3, numbered=True)
        p = poplib.POP3("127.0.0.1", self.port(), timeout=30)
        p.user(user)
        p.pass_(pw)
        for i in (1, 2, 3):
            p.retr(i)
            p.dele(i)
        self.assertEqual(p.stat()[0], 0)
        p.quit()
        p = poplib.POP3_SSL("127.0.0.1", self.port("pop3s"), context=tls_context(), timeout=30)
        p.user(user)
        p.pass_(pw)
        self.assertEqual(p.stat(), (0, 0))
        p.quit()

    # ---- one session per maildrop, snapshot ----

    def test_in_use_and_snapshot(self):
        user, pw = self.user()
        fill(self.srv, user, SAMPLE)
        a = self.session(user, pw)
        b = self.raw()
        b.line()
        b.cmd("USER " + user)
        resp = b.cmd("PASS " + pw)
        self.assertTrue(resp.startswith(b"-ERR [IN-USE]"), resp)
        # Over pop3s, and with AUTH, the same.
        c = Raw(self.port("pop3s"), tls=True)
        self.addCleanup(c.close)
        c.line()
        ir = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
        self.assertTrue(c.cmd("AUTH PLAIN " + ir).startswith(b"-ERR [IN-USE]"))
        # Mail delivered during the session shows up in the next one.
        fill(self.srv, user, SAMPLE)
        self.assertEqual(self.stat(a)[0], 1)
        self.assertTrue(a.cmd("RETR 2").startswith(b"-ERR"))
        self.assertTrue(a.cmd("QUIT").startswith(b"+OK"))
        a.closed()
        b.cmd("USER " + user)
        self.assertTrue(b.cmd("PASS " + pw).startswith(b"+OK"))
        self.assertEqual(self.stat(b)[0], 2)
        b.cmd("QUIT")

    # ---- STLS ----

    def test_stls_discards_pipelined_plaintext(self):
        user, pw = self.user()
        r = self.raw()
        r.line()
        # A man in the middle appends a command after STLS: it must not
        # run, over plaintext or after the handshake.
        r.send("STLS\r\nUSER %s\r\nCAPA\r\n" % user)
        self.assertTrue(r.line().startswith(b"+OK"))
        self.assertEqual(r.buf, b"")
        r.sock = tls_context().wrap_socket(r.sock)
        resp = r.cmd("PASS " + pw)
        self.assertTrue(resp.startswith(b"-ERR"), "USER from before TLS was forgotten: %r" % resp)
        self.assertTrue(r.cmd("CAPA").startswith(b"+OK"))
        capa = r.multi()
        self.assertNotIn(b"STLS", capa)
        self.assertTrue(r.cmd("STLS").startswith(b"-ERR"))
        r.cmd("USER " + user)
        self.assertTrue(r.cmd("PASS " + pw).startswith(b"+OK"))
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))

    # ---- hostile input ----

    def test_hostile_arguments(self):
        user, pw = self.user()
        fill(self.srv, user, SAMPLE, count=2)
        bad_numbers = ["0", "-1", "+1", "3", "4294967295", "4294967296", "18446744073709551617",
                       "99999999999999999999999999999999", "1x", "x", "0x1", "1.0", "", "1 1"]
        for cmd in ("RETR", "LIST", "DELE", "UIDL", "TOP"):
            r = self.login_retry(user, pw)
            for arg in bad_numbers:
                if cmd in ("LIST", "UIDL") and arg == "":
                    continue
                line = "%s %s" % (cmd, arg) if cmd != "TOP" else "TOP %s 1" % arg
                resp = r.cmd(line.rstrip())
                self.assertTrue(resp.startswith(b"-ERR"), "%s -> %r" % (line, resp))
            self.assertTrue(r.cmd("NOOP").startswith(b"+OK"))
            self.assertEqual(self.stat(r)[0], 2, "nothing marked by bad DELEs")
            r.cmd("QUIT")
            r.closed()
        r = self.login_retry(user, pw)
        for arg in ["-1", "4294967296", "99999999999999999999", "x", "1 2"]:
            resp = r.cmd("TOP 1 " + arg)
            self.assertTrue(resp.startswith(b"-ERR"), "TOP 1 %s -> %r" % (arg, resp))
        resp = r.cmd("TOP 1 4294967295")
        self.assertTrue(resp.startswith(b"+OK"), resp)
        self.assertEqual(r.body(), SAMPLE)
        for line in (b"RETR \x001", b"\x00\x00\x00", b"RE\x00TR 1", b"NOOP\x00"):
            self.assertTrue(r.cmd(line).startswith(b"-ERR"), line)
        self.assertTrue(r.cmd("NOOP extra").startswith(b"-ERR"))
        self.assertTrue(r.cmd("STAT 1").startswith(b"-ERR"))
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))

    def test_hostile_authorization_input(self):
        user, pw = self.user()
        r = self.raw()
        r.line()
        for line in (b"USER", b"USER a b", b"USER " + b"u" * 600, b"USER a\x00b", b"PASS",
                     b"PASS nouser", b"AUTH " + b"X" * 100, b"AUTH PLAIN ====",
                     b"AUTH PLAIN " + b"A" * 7000, b"AUTH PLAIN a b", b"TOP 1 1", b"RETR 1",
                     b"DELE 1", b"UIDL", b"\xff\xfe", b"AUTH\x00PLAIN"):
            resp = r.cmd(line)
            self.assertTrue(resp.startswith(b"-ERR"), "%r -> %r" % (line[:40], resp))
        self.assertTrue(r.cmd("CAPA").startswith(b"+OK"))
        r.multi()
        # (16 bad commands so far: a fresh session for the rest.)
        r = self.raw()
        r.line()
        # A SASL exchange fed garbage ends with -ERR, and the session goes on.
        for reply in (b"", b"\x00\x00", b"not base64 at all", b"=" * 5000):
            self.assertTrue(r.cmd("AUTH PLAIN").startswith(b"+"))
            resp = r.cmd(reply)
            self.assertTrue(resp.startswith(b"-ERR"), "%r -> %r" % (reply[:20], resp))
        self.assertTrue(r.cmd("USER " + user).startswith(b"+OK"))
        self.assertTrue(r.cmd("PASS " + pw).startswith(b"+OK"))
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))

    def test_overlong_lines_and_pipelined_garbage(self):
        user, pw = self.user()
        fill(self.srv, user, SAMPLE)
        r = self.raw()
        r.line()
        # Before login (8K bound) ...
        self.assertTrue(r.cmd(b"USER " + b"x" * 20000).startswith(b"-ERR"))
        self.assertTrue(r.cmd("CAPA").startswith(b"+OK"))
        r.multi()
        r.cmd("USER " + user)
        self.assertTrue(r.cmd("PASS " + pw).startswith(b"+OK"))
        # ... and after (64K bound).
        self.assertTrue(r.cmd(b"NOOP " + b"9" * 200000).startswith(b"-ERR"))
        self.assertTrue(r.cmd("NOOP").startswith(b"+OK"))
        r.send(b"GARBAGE\r\nNOOP\r\n\x01\x02\xff\r\nSTAT\r\nLIST 1\nRETR 99\r\n\r\nUIDL 1\r\n")
        self.assertTrue(r.line().startswith(b"-ERR"))
        self.assertTrue(r.line().startswith(b"+OK"))
        self.assertTrue(r.line().startswith(b"-ERR"))
        self.assertTrue(r.line().startswith(b"+OK 1 "))
        self.assertTrue(r.line().startswith(b"+OK 1 "))
        self.assertTrue(r.line().startswith(b"-ERR"))
        self.assertTrue(r.line().startswith(b"-ERR"))
        self.assertTrue(r.line().startswith(b"+OK 1 "))
        # Pipelined RETRs come back in order.
        r.send("RETR 1\r\nLIST\r\nRETR 1\r\n")
        self.assertTrue(r.line().startswith(b"+OK"))
        self.assertEqual(r.body(), SAMPLE)
        self.assertTrue(r.line().startswith(b"+OK"))
        self.assertEqual(len(r.multi()), 1)
        self.assertTrue(r.line().startswith(b"+OK"))
        self.assertEqual(r.body(), SAMPLE)
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))

    def test_too_many_bad_commands(self):
        user, pw = self.user()
        r = self.raw()
        r.line()
        for i in range(19):
            self.assertTrue(r.cmd("XYZZY %d" % i).startswith(b"-ERR"))
        self.assertTrue(r.cmd("CAPA").startswith(b"+OK"), "still served after 19")
        r.multi()
        self.assertTrue(r.cmd("XYZZY").startswith(b"-ERR"))
        self.assertTrue(r.line().startswith(b"-ERR"))
        self.assertTrue(r.closed())
        # Logged in, bad arguments count too; the maildrop is untouched.
        fill(self.srv, user, SAMPLE)
        r = self.session(user, pw)
        r.cmd("DELE 1")
        r.send("RETR x\r\n" * 25)
        lines = []
        while True:
            try:
                lines.append(r.line())
            except EOFError:
                break
        self.assertEqual(len(lines), 21, lines)
        self.assertTrue(all(line.startswith(b"-ERR") for line in lines))
        r = self.login_retry(user, pw)
        self.assertEqual(self.stat(r)[0], 1)
        r.cmd("QUIT")

    # ---- real clients ----

    def test_curl(self):
        if shutil.which("curl") is None:
            self.skipTest("curl not installed")
        user, pw = self.user()
        fill(self.srv, user, SAMPLE, count=2, numbered=True)
        base = ["curl", "-sS", "--max-time", "30", "--user", "%s:%s" % (user, pw)]
        out = subprocess.run(base + ["pop3://127.0.0.1:%d/" % self.port()],
                             capture_output=True, check=True).stdout
        size = len(wire_octets(b"X-Seq: 1\r\n" + SAMPLE))
        self.assertEqual(out, b"1 %d\r\n2 %d\r\n" % (size, size))
        out = subprocess.run(base + ["pop3://127.0.0.1:%d/2" % self.port()],
                             capture_output=True, check=True).stdout
        self.assertEqual(out, b"X-Seq: 2\r\n" + SAMPLE)
        out = subprocess.run(base + ["-k", "pop3s://127.0.0.1:%d/1" % self.port("pop3s")],
                             capture_output=True, check=True).stdout
        self.assertEqual(out, b"X-Seq: 1\r\n" + SAMPLE)
        # STLS, required by the client.
        out = subprocess.run(base + ["-k", "--ssl-reqd", "pop3://127.0.0.1:%d/1" % self.port()],
                             capture_output=True, check=True).stdout
        self.assertEqual(out, b"X-Seq: 1\r\n" + SAMPLE)
        # SASL PLAIN with initial response.
        out = subprocess.run(base + ["--sasl-ir", "--login-options", "AUTH=PLAIN",
                                     "pop3://127.0.0.1:%d/" % self.port()],
                             capture_output=True, check=True).stdout
        self.assertEqual(out.count(b"\r\n"), 2)
        # A custom command: DELE then curl's QUIT.
        subprocess.run(base + ["-X", "DELE 1", "-I", "pop3://127.0.0.1:%d/" % self.port()],
                       capture_output=True, check=True)
        r = self.login_retry(user, pw)
        self.assertEqual(self.stat(r)[0], 1)
        r.cmd("QUIT")

    def fetchmail(self, user, pw, keep, tls):
        if shutil.which("fetchmail") is None:
            self.skipTest("fetchmail not installed")
        home = tempfile.mkdtemp(prefix="roost-fetchmail-")
        self.addCleanup(shutil.rmtree, home, True)
        out = os.path.join(home, "mbox")
        rc = os.path.join(home, "fetchmailrc")
        with open(rc, "w") as f:
            f.write('poll 127.0.0.1 with proto POP3 service %d\n' % self.port())
            f.write('  user "%s" there with password "%s" is root here\n' % (user, pw))
            f.write('  %s fetchall\n' % ("keep" if keep else "nokeep"))
            if tls:
                f.write("  sslproto tls1.2+ no sslcertck\n")
            else:
                f.write("  sslproto ''\n")
            f.write("  mda \"/bin/sh -c 'cat >> %s'\"\n" % out)
        os.chmod(rc, 0o600)
        env = dict(os.environ, HOME=home, FETCHMAILHOME=home)
        res = subprocess.run(["fetchmail", "-f", rc, "-i", os.path.join(home, "ids"),
                              "--pidfile", os.path.join(home, "pid"), "--nosyslog", "-v"],
                             capture_output=True, timeout=60, env=env)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        with open(out, "rb") as f:
            return f.read(), res.stdout + res.stderr

    def test_fetchmail_keep_and_delete(self):
        user, pw = self.user()
        fill(self.srv, user, SAMPLE, count=3, numbered=True)
        got, log = self.fetchmail(user, pw, keep=True, tls=True)
        self.assertEqual(got.count(b"Subject: hello"), 3, log)
        self.assertIn(b"X-Seq: 3", got)
        self.assertIn(b"STLS", log)
        r = self.login_retry(user, pw)
        self.assertEqual(self.stat(r)[0], 3)
        r.cmd("QUIT")
        r.closed()
        got, log = self.fetchmail(user, pw, keep=False, tls=False)
        self.assertEqual(got.count(b"Subject: hello"), 3, log)
        self.assertIn(b".line starting with a dot", got)
        r = self.login_retry(user, pw)
        self.assertEqual(self.stat(r), (0, 0))
        r.cmd("QUIT")

    # ---- POP3 and IMAP on one INBOX ----

    def imap_or_skip(self):
        if "listener=imap status=skipped" in self.srv.log() or not wait_port(self.imap_port):
            self.skipTest("no IMAP service in this build")
        return imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=30)

    def test_imap_sees_pop3_deletions(self):
        user, pw = self.user()
        uidv, _ = fill(self.srv, user, SAMPLE, count=3, numbered=True)
        imap = self.imap_or_skip()
        imap.login(user, pw)
        typ, data = imap.select("INBOX")
        self.assertEqual(int(data[0]), 3)
        typ, data = imap.uid("FETCH", "1:*", "(UID)")
        uids = sorted(int(d.split(b"UID ")[1].rstrip(b")")) for d in data if d)
        r = self.session(user, pw)
        self.assertTrue(r.cmd("UIDL").startswith(b"+OK"))
        self.assertEqual([line.split()[1].decode() for line in r.multi()],
                         ["%08X%08X" % (u, uidv) for u in uids])
        r.cmd("DELE 2")
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))
        deadline = time.monotonic() + 10
        expunged = []
        while time.monotonic() < deadline and not expunged:
            imap.noop()
            expunged = imap.untagged_responses.pop("EXPUNGE", [])
            time.sleep(0.05)
        imap.logout()
        self.assertEqual(expunged, [b"2"])

    # ---- size ----

    def test_retr_50mb_streams(self):
        user, pw = self.user()
        line = b"x" * 998 + b"\n"
        msg = b"Subject: big\n\n" + line * (50 * 1024 * 1024 // len(line))
        fill(self.srv, user, msg, fast=True)
        r = self.session(user, pw)
        n, size = self.stat(r)
        self.assertEqual(size, len(wire_octets(msg)))
        r.send("RETR 1\r\n")
        self.assertEqual(r.line(), b"+OK %d octets" % size)
        got = len(r.buf)
        tail = r.buf
        r.buf = b""
        while not tail.endswith(b"\r\n.\r\n"):
            chunk = r.sock.recv(1 << 20)
            self.assertTrue(chunk, "connection closed during RETR")
            got += len(chunk)
            tail = (tail + chunk)[-5:]
        self.assertEqual(got, size + 3)
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))


class Pop3LargeMaildrop:
    """20,000 messages: LIST, UIDL and STAT without building the reply."""

    def test_20000_messages(self):
        user, pw = self.user()
        fill(self.srv, user, b"Subject: s\r\n\r\nbody\r\n", count=20000, numbered=True,
             fast=True)
        r = self.session(user, pw)
        n, size = self.stat(r)
        self.assertEqual(n, 20000)
        self.assertTrue(r.cmd("LIST").startswith(b"+OK"))
        listing = r.multi()
        self.assertEqual(len(listing), 20000)
        self.assertEqual(sum(int(line.split()[1]) for line in listing), size)
        self.assertTrue(r.cmd("UIDL").startswith(b"+OK"))
        uidls = r.multi()
        self.assertEqual(len(set(line.split()[1] for line in uidls)), 20000)
        self.assertEqual(r.cmd("LIST 20000"), listing[-1].join([b"+OK ", b""]))
        self.assertTrue(r.cmd("LIST 20001").startswith(b"-ERR"))
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))


backend_classes(globals(), (Pop3LargeMaildrop, Pop3Base), "TestPop3_%s", BACKENDS)


class TestPop3Restart(unittest.TestCase):
    """Shutdown with marked messages deletes nothing; UIDLs survive a restart."""

    def test_shutdown_deletes_nothing_and_uidl_survives(self):
        if not os.path.exists(FILL):
            self.skipTest("%s not built" % FILL)
        user, pw = "u0@example.org", USERS["u0@example.org"]
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                first = RoostServer(backend=backend, users={user: pw}, listeners=("pop3",))
                first.start()
                try:
                    fill(first, user, SAMPLE, count=3, numbered=True)
                    r = Raw(first.port("pop3")).login(user, pw)
                    self.assertTrue(r.cmd("UIDL").startswith(b"+OK"))
                    before = r.multi()
                    r.cmd("DELE 1")
                    r.cmd("DELE 3")
                    first.stop()
                    resp = r.line()
                    self.assertTrue(resp.startswith(b"-ERR [SYS/TEMP]"), resp)
                    r.close()
                    second = RoostServer(backend=backend, users={}, listeners=("pop3",),
                                         conf={"server": {"data_dir": first.data_dir},
                                               "auth": {"passwd_file":
                                                        os.path.join(first.data_dir, "passwd")}})
                    with second:
                        r = Raw(second.port("pop3")).login(user, pw)
                        self.assertEqual(r.cmd("STAT").split()[1], b"3")
                        self.assertTrue(r.cmd("UIDL").startswith(b"+OK"))
                        self.assertEqual(r.multi(), before)
                        r.cmd("QUIT")
                        r.close()
                finally:
                    first.kill()
                    first.cleanup()


def non_loopback_ipv4():
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.254", 9))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


class TestPop3Policy(SharedServer, unittest.TestCase):
    """A listener on all addresses (reached through a non-loopback address
    of this machine) and short idle timeouts."""
    needs_fill = True

    @classmethod
    def server_args(cls):
        cls.pop3_port = free_port()
        conf = {"listen": {"pop3": "0.0.0.0:%d" % cls.pop3_port},
                "limits": {"idle_timeout": "2", "preauth_idle_timeout": "2"},
                "auth": {"fail_delay_initial": "1", "fail_delay_max": "1"}}
        return dict(backend=BACKENDS[0], users=USERS, conf=conf, listeners=())

    @classmethod
    def server_started(cls):
        if not wait_port(cls.pop3_port):
            raise AssertionError("pop3 listener did not come up:\n" + cls.srv.log())

    def raw(self, host="127.0.0.1"):
        r = Raw(self.pop3_port, host=host)
        self.addCleanup(r.close)
        return r

    def test_plaintext_refused_off_loopback(self):
        ip = non_loopback_ipv4()
        if ip is None:
            self.skipTest("this machine has no non-loopback IPv4 address")
        user, pw = "u1@example.org", USERS["u1@example.org"]
        r = self.raw(ip)
        r.line()
        self.assertTrue(r.cmd("CAPA").startswith(b"+OK"))
        capa = r.multi()
        self.assertIn(b"STLS", capa)
        self.assertNotIn(b"USER", capa)
        self.assertFalse(any(c.startswith(b"SASL") and b"PLAIN" in c for c in capa))
        resp = r.cmd("USER " + user)
        self.assertTrue(resp.startswith(b"-ERR [AUTH]"), resp)
        resp = r.cmd("PASS " + pw)
        self.assertTrue(resp.startswith(b"-ERR [AUTH]"), resp)
        ir = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
        self.assertTrue(r.cmd("AUTH PLAIN " + ir).startswith(b"-ERR"))
        self.assertTrue(r.cmd("STLS").startswith(b"+OK"))
        r.sock = tls_context().wrap_socket(r.sock)
        self.assertTrue(r.cmd("USER " + user).startswith(b"+OK"))
        self.assertTrue(r.cmd("PASS " + pw).startswith(b"+OK"))
        self.assertTrue(r.cmd("QUIT").startswith(b"+OK"))

    def test_timeout_deletes_nothing(self):
        user, pw = "u2@example.org", USERS["u2@example.org"]
        fill(self.srv, user, SAMPLE, count=2)
        r = self.raw().login(user, pw)
        self.assertTrue(r.cmd("DELE 1").startswith(b"+OK"))
        r.sock.settimeout(30)
        resp = r.line()
        self.assertTrue(resp.startswith(b"-ERR"), resp)
        self.assertTrue(r.closed())
        r = self.raw().login(user, pw)
        self.assertEqual(r.cmd("STAT").split()[1], b"2")
        r.cmd("QUIT")

    def test_preauth_timeout(self):
        r = self.raw()
        r.line()
        r.sock.settimeout(30)
        self.assertTrue(r.line().startswith(b"-ERR"))
        self.assertTrue(r.closed())


if __name__ == "__main__":
    unittest.main()
