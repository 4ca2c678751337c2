"""IMAP on the wire: hostile input against every bound, STARTTLS rules,
per-user+IP limits, IDLE push and keepalive, and two clients racing on one
mailbox with every untagged response checked for consistency."""
import random
import re
import socket
import threading
import time
import unittest

from roosttest import (BACKENDS, LineClient, RoostServer, SharedServer, backend_classes, free_port,
                       own_server, tls_context)

USER = b"alice@example.org"
PASS = b"alice-secret"
MSG = (b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: race\r\n\r\nbody\r\n")


class Raw(LineClient):
    """A minimal IMAP client that keeps every line it reads. cmd() tags its
    commands tag_prefix and a count."""
    tag_prefix = b"t"

    def __init__(self, port, host="127.0.0.1", tls=False, timeout=20):
        super().__init__((host, port), timeout=timeout, tls=tls)
        self.greeting = self.line()
        self.n = 0

    def starttls(self):
        self.sock = tls_context().wrap_socket(self.sock)
        self.buf = b""

    def line(self):
        """One response line with its literals inlined."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            i = self.buf.index(b"\r\n") + 2
            part, self.buf = self.buf[:i], self.buf[i:]
            out += part
            m = re.search(rb"\{(\d+)\}\r\n$", part)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def cmd(self, text, tag=None):
        """Send a command; return (untagged lines, tagged line)."""
        self.n += 1
        tag = tag or self.tag_prefix + b"%d" % self.n
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def until(self, tag, **line_options):
        """The untagged lines up to the tagged one, and that; line_options
        go to line()."""
        lines = []
        while True:
            l = self.line(**line_options)
            if l.startswith(tag + b" "):
                return lines, l
            lines.append(l)

    def login(self, user=USER, password=PASS):
        _, t = self.cmd(b"LOGIN " + user + b" " + password)
        assert b" OK " in t, t
        return self

    def closed(self):
        try:
            while True:
                self.line()
        except (EOFError, ConnectionError, socket.timeout, OSError):
            return True


class RawSession(SharedServer):
    """Mixin for a unittest class on one shared server (its IMAP listener)
    whose tests each hold a logged-in Raw session, self.r; ok() runs a
    command that must succeed and returns its untagged lines."""
    server_options = {"listeners": ("imap",)}

    def setUp(self):
        self.r = Raw(self.srv.port("imap")).login()

    def tearDown(self):
        self.r.close()

    def ok(self, text):
        lines, tagged = self.r.cmd(text)
        self.assertRegex(tagged, rb"^t\d+ OK", (text, lines, tagged))
        return lines


class RawClients(SharedServer):
    """Mixin for a unittest class on one shared server (its IMAP listener)
    whose tests open Raw sessions as they need them: raw() one, logged in
    unless login is false and closed after the test; ok() and bad() run a
    command on one that must answer OK (its untagged lines returned) or
    BAD."""
    server_options = {"listeners": ("imap",)}

    def raw(self, login=True):
        r = Raw(self.srv.port("imap"))
        self.addCleanup(r.close)
        return r.login() if login else r

    def ok(self, r, text):
        lines, tagged = r.cmd(text)
        self.assertRegex(tagged, rb"^t\d+ OK", (text, lines, tagged))
        return lines

    def bad(self, r, text):
        lines, tagged = r.cmd(text)
        self.assertRegex(tagged, rb"^t\d+ BAD", (text, lines, tagged))


class TestImapHostile(SharedServer, unittest.TestCase):
    server_options = {"listeners": ("imap", "imaps"),
                      "conf": {"imap": {"max_literal": "64K",
                                        "max_connections_per_user_ip": "3",
                                        "idle_keepalive": "1"}}}

    @classmethod
    def server_started(cls):
        cls.port = cls.srv.port("imap")

    def raw(self):
        return Raw(self.port)

    def test_long_line_preauth_and_postauth(self):
        r = self.raw()
        r.send(b"a1 NOOP " + b"x" * 9000 + b"\r\n")
        self.assertRegex(r.line(), rb"^a1 BAD \[TOOBIG\]")
        _, t = r.cmd(b"NOOP")
        self.assertIn(b"OK", t)
        r.login()
        r.send(b"a2 NOOP " + b"x" * 9000 + b"\r\n")     # fine after login
        self.assertRegex(r.line(), rb"^a2 BAD")           # NOOP takes no args
        r.send(b"a3 NOOP " + b"x" * 70000 + b"\r\n")
        self.assertRegex(r.line(), rb"^a3 BAD \[TOOBIG\]")
        _, t = r.cmd(b"NOOP")
        self.assertIn(b"OK", t)
        r.close()

    def test_literals_bounds_keep_sync(self):
        r = self.raw()
        # synchronizing literal too big: NO, no continuation
        r.send(b"a1 LOGIN {100000}\r\n")
        self.assertRegex(r.line(), rb"^a1 NO \[TOOBIG\]")
        # non-synchronizing literal too big: BAD, and its bytes are skipped
        r.send(b"a2 LOGIN {20000+}\r\n" + b"a3 NOOP\r\n" * 2222 + b"xx" + b" x\r\n")
        self.assertRegex(r.line(), rb"^a2 BAD \[TOOBIG\]")
        _, t = r.cmd(b"NOOP")
        self.assertIn(b"OK", t)
        # a good synchronizing literal gets a continuation
        r.send(b"a4 LOGIN {%d}\r\n" % len(USER))
        self.assertTrue(r.line().startswith(b"+"))
        r.send(USER + b" {%d}\r\n" % len(PASS))
        self.assertTrue(r.line().startswith(b"+"))
        r.send(PASS + b"\r\n")
        _, t = r.until(b"a4")
        self.assertIn(b"OK", t)
        # APPEND over APPENDLIMIT (64K)
        r.send(b"a5 APPEND INBOX {70000}\r\n")
        self.assertRegex(r.line(), rb"^a5 NO \[TOOBIG\]")
        r.send(b"a6 APPEND INBOX {70000+}\r\n" + b"y" * 70000 + b"\r\n")
        self.assertRegex(r.line(), rb"^a6 BAD \[TOOBIG\]")
        # within the limit, binary-ish content with CRLFs and braces
        body = b"Subject: t\r\n\r\n{5}\r\n" + b"z" * 60000 + b"\r\n"
        r.send(b"a7 APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
        _, t = r.until(b"a7")
        self.assertIn(b"APPENDUID", t)
        r.close()

    def test_syntax_errors_and_bad_limit(self):
        r = self.raw()
        for bad in (b"a NOOP \r\n", b"\r\n", b"+x NOOP\r\n", b"a LOGIN \"a\x00b\" c\r\n",
                    b"a LOGIN \"unterminated\r\n", b"a SEARCH " + b"(" * 50 + b"ALL"
                    + b")" * 50 + b"\r\n", b"a SEARCH " + b"NOT " * 5000 + b"ALL\r\n",
                    b"a SEARCH " + b"OR ALL " * 5000 + b"ALL\r\n"):
            r.send(bad)
            self.assertRegex(r.line(), rb"^\S+ BAD")
        _, t = r.cmd(b"NOOP")
        self.assertIn(b"OK", t)
        # The 20th bad command ends the session; sends racing the close may
        # find the socket reset, which is the expected outcome too.
        try:
            for i in range(14):
                r.send(b"x%d FROB\r\n" % i)
        except (BrokenPipeError, ConnectionResetError):
            pass
        lines = []
        try:
            while True:
                lines.append(r.line())
        except (EOFError, ConnectionError, socket.timeout):
            pass
        self.assertTrue(any(l.startswith(b"* BYE") for l in lines), lines[-3:])
        r.close()

    def test_deep_search_and_fetch_bounds(self):
        r = self.raw().login()
        r.cmd(b"SELECT INBOX")
        r.cmd(b"APPEND INBOX {%d+}\r\n" % len(MSG) + MSG)
        for bad in (b"SEARCH " + b"NOT " * 5000 + b"ALL", b"SEARCH " + b"OR ALL " * 5000 + b"ALL",
                    b"SEARCH " + b"(" * 40 + b"ALL" + b")" * 40,
                    b"FETCH 1 (BODY[HEADER.FIELDS (" + b"X " * 300 + b"Y)])",
                    b"FETCH 1 BODY[" + b"1." * 40 + b"1]",
                    b"FETCH 1 BODY[]<99999999999999999999.1>",
                    b"FETCH 1:99999999999 FLAGS", b"STORE 1 +FLAGS (" + b" ".join(b"$k%d" % i for i in range(40)) + b")"):
            _, t = r.cmd(bad)
            self.assertRegex(t, rb"^t\d+ (BAD|NO)", bad[:40])
        _, t = r.cmd(b"SEARCH " + b"NOT " * 100 + b"ALL")
        self.assertIn(b"OK", t)
        _, t = r.cmd(b"NOOP")
        self.assertIn(b"OK", t)
        r.close()

    def test_selected_mailbox_deleted_elsewhere(self):
        a = self.raw().login()
        b = self.raw().login()
        a.cmd(b"CREATE Gone")
        a.cmd(b"SELECT Gone")
        _, t = b.cmd(b"DELETE Gone")
        self.assertIn(b"OK", t)
        a.send(b"n NOOP\r\n")
        lines = []
        try:
            while True:
                lines.append(a.line())
        except (EOFError, ConnectionError, socket.timeout, OSError):
            pass
        self.assertTrue(any(l.startswith(b"* BYE") for l in lines), lines)
        a.close()
        b.close()

    def test_starttls_rules(self):
        r = self.raw()
        self.assertIn(b"STARTTLS", r.greeting)
        # pipelined command after STARTTLS is discarded
        r.send(b"s1 STARTTLS\r\ns2 NOOP\r\n")
        self.assertTrue(r.line().startswith(b"s1 OK"))
        r.starttls()
        _, t = r.cmd(b"CAPABILITY")
        self.assertTrue(t.startswith(b"t1 OK"), t)
        caps = _[0]
        self.assertNotIn(b"STARTTLS", caps)
        _, t = r.cmd(b"STARTTLS")
        self.assertIn(b"BAD", t)
        r.login()
        r.close()
        r = self.raw().login()
        _, t = r.cmd(b"STARTTLS")
        self.assertIn(b"BAD", t)
        r.close()
        # implicit TLS
        r = Raw(self.srv.port("imaps"), tls=True)
        self.assertTrue(r.greeting.startswith(b"* OK"))
        self.assertNotIn(b"STARTTLS", r.greeting)
        r.login()
        r.close()

    def test_per_user_ip_limit(self):
        # bob: no other test of this server logs in as bob
        bob = (b"bob@example.org", b"bob-secret")
        conns = [self.raw().login(*bob) for _ in range(3)]
        r = self.raw()
        _, t = r.cmd(b"LOGIN %s %s" % bob)
        self.assertIn(b"NO [LIMIT]", t)
        conns[0].cmd(b"LOGOUT")
        conns[0].close()
        for _ in range(50):
            time.sleep(0.1)
            _, t = r.cmd(b"LOGIN %s %s" % bob)
            if b"OK" in t:
                break
        self.assertIn(b"OK", t)
        for c in conns[1:] + [r]:
            c.close()

    def test_idle_push_and_keepalive(self):
        a = self.raw().login()
        a.cmd(b"CREATE IdleBox")
        a.cmd(b"SELECT IdleBox")
        a.send(b"i1 IDLE\r\n")
        self.assertTrue(a.line().startswith(b"+ "))
        b = self.raw().login()
        _, t = b.cmd(b"APPEND IdleBox {%d+}\r\n" % len(MSG) + MSG)
        self.assertIn(b"OK", t)
        got = []
        while not any(re.match(rb"^\* 1 EXISTS", l) for l in got):
            got.append(a.line())
        # keepalive every second
        deadline = time.time() + 10
        while time.time() < deadline:
            l = a.line()
            if l.startswith(b"* OK Still here"):
                break
        else:
            self.fail("no keepalive")
        b.cmd(b"SELECT IdleBox")
        b.cmd(b"STORE 1 +FLAGS (\\Flagged)")
        while True:
            l = a.line()
            if b"FETCH" in l:
                self.assertIn(b"\\Flagged", l)
                break
        a.send(b"DONE\r\n")
        _, t = a.until(b"i1")
        self.assertIn(b"OK", t)
        _, t = a.cmd(b"NOOP")
        self.assertIn(b"OK", t)
        # IDLE ended by garbage
        a.send(b"i2 IDLE\r\n")
        a.line()
        a.send(b"NOTDONE\r\n")
        _, t = a.until(b"i2")
        self.assertIn(b"BAD", t)
        a.close()
        b.close()

    def test_plaintext_login_refused_off_loopback(self):
        addr = None
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
            s.close()
        except OSError:
            pass
        if not addr or addr.startswith("127."):
            self.skipTest("no non-loopback address")
        port = free_port()
        srv = own_server(self, listeners=("imaps",),
                         conf={"listen": {"imap": "%s:%d" % (addr, port)}})
        self.assertTrue(wait_port_on(addr, port))
        r = Raw(port, host=addr)
        self.assertIn(b"LOGINDISABLED", r.greeting)
        _, t = r.cmd(b"LOGIN " + USER + b" " + PASS)
        self.assertIn(b"NO", t)
        _, t = r.cmd(b"AUTHENTICATE PLAIN")
        self.assertIn(b"NO", t)
        r.send(b"s STARTTLS\r\n")
        self.assertTrue(r.line().startswith(b"s OK"))
        r.starttls()
        _, t = r.cmd(b"CAPABILITY")
        self.assertNotIn(b"LOGINDISABLED", _[0])
        r.login()
        r.close()


def wait_port_on(host, port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class TestImapTimeouts(unittest.TestCase):
    def test_autologout_bye(self):
        # (the real defaults are 60 s before login, 30 min after; the test
        # shortens both)
        with RoostServer(listeners=("imap",), conf={"limits": {"preauth_idle_timeout": "1",
                                                               "idle_timeout": "2"}}) as srv:
            r = Raw(srv.port("imap"))
            t0 = time.time()
            l = r.line()
            self.assertTrue(l.startswith(b"* BYE"), l)
            self.assertTrue(r.closed())
            r.close()
            r = Raw(srv.port("imap")).login()
            l = r.line()
            self.assertTrue(l.startswith(b"* BYE"), l)
            self.assertGreaterEqual(time.time() - t0, 2)
            r.close()


class View:
    """A client's model of the selected mailbox, fed by untagged responses;
    every response is checked against it."""

    def __init__(self, test, exists):
        self.t = test
        self.count = exists

    def feed(self, lines):
        for l in lines:
            m = re.match(rb"^\* (\d+) (EXISTS|EXPUNGE|FETCH|RECENT)", l)
            if not m:
                continue
            n, what = int(m.group(1)), m.group(2)
            if what == b"EXISTS":
                self.t.assertGreaterEqual(n, self.count, l)
                self.count = n
            elif what == b"EXPUNGE":
                self.t.assertTrue(1 <= n <= self.count, (l, self.count))
                self.count -= 1
            elif what == b"FETCH":
                self.t.assertTrue(1 <= n <= self.count, (l, self.count))


class RaceBase:
    backend = "lmdb"

    def test_two_clients_race_and_converge(self):
        srv = own_server(self, listeners=("imap",), backend=self.backend)
        port = srv.port("imap")
        setup = Raw(port).login()
        setup.cmd(b"CREATE Race")
        setup.cmd(b"CREATE RaceOut")
        for _ in range(20):
            setup.cmd(b"APPEND Race {%d+}\r\n" % len(MSG) + MSG)
        setup.close()
        errors = []

        def worker(seed):
            rnd = random.Random(seed)
            c = Raw(port).login()
            lines, t = c.cmd(b"SELECT Race")
            exists = [int(re.match(rb"\* (\d+) EXISTS", l).group(1)) for l in lines
                      if re.match(rb"\* \d+ EXISTS", l)][0]
            v = View(self, exists)
            try:
                for _ in range(60):
                    op = rnd.choice(["store", "store", "expunge", "append", "move",
                                     "fetch", "search", "noop"])
                    if op == "store" and v.count:
                        n = rnd.randint(1, v.count)
                        fl = rnd.choice([b"\\Seen", b"\\Flagged", b"\\Deleted", b"$K"])
                        lines, t = c.cmd(b"STORE %d %sFLAGS (%s)"
                                         % (n, rnd.choice([b"+", b"-"]), fl))
                    elif op == "expunge":
                        lines, t = c.cmd(b"EXPUNGE")
                    elif op == "append":
                        lines, t = c.cmd(b"APPEND Race {%d+}\r\n" % len(MSG) + MSG)
                    elif op == "move" and v.count:
                        n = rnd.randint(1, v.count)
                        lines, t = c.cmd(b"MOVE %d RaceOut" % n)
                    elif op == "fetch" and v.count:
                        lines, t = c.cmd(b"FETCH 1:* (UID FLAGS)")
                        self.assertFalse(any(b"EXPUNGE" in l for l in lines), lines)
                    elif op == "search":
                        lines, t = c.cmd(b"SEARCH ALL")
                        self.assertFalse(any(b"EXPUNGE" in l for l in lines), lines)
                    else:
                        lines, t = c.cmd(b"NOOP")
                    self.assertRegex(t, rb"^t\d+ (OK|NO)", (op, t))
                    v.feed(lines)
                lines, t = c.cmd(b"NOOP")
                v.feed(lines)
                c.result = (c, v)
                return c, v
            except Exception as e:  # reported after join
                errors.append(e)
                raise

        results = []

        def run(seed):
            try:
                results.append(worker(seed))
            except Exception:
                pass

        ths = [threading.Thread(target=run, args=(s,)) for s in (1, 2)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(120)
        if errors:
            raise errors[0]
        self.assertEqual(len(results), 2)
        states = []
        for c, v in results:
            lines, t = c.cmd(b"NOOP")
            v.feed(lines)
            lines, t = c.cmd(b"UID FETCH 1:* (FLAGS)")
            v.feed(lines)
            fetched = [l for l in lines if b" FETCH " in l]
            self.assertEqual(len(fetched), v.count)
            st = sorted((re.search(rb"UID (\d+)", l).group(1),
                         tuple(sorted(re.search(rb"FLAGS \(([^)]*)\)", l).group(1)
                                      .replace(b"\\Recent", b"").split())))
                        for l in fetched)
            states.append(st)
            c.cmd(b"LOGOUT")
            c.close()
        self.assertEqual(states[0], states[1])


backend_classes(globals(), RaceBase, "TestImapRace_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()


class TestImapMaildirForeign(unittest.TestCase):
    """A message another tool drops into the Maildir (bare LF line ends) wakes
    an IDLE session and is served with CRLF."""

    def test_foreign_delivery(self):
        import os
        # storage notifies roost's own changes; a foreign drop is found by
        # IDLE's periodic re-check (min(30 s, keepalive))
        srv = own_server(self, listeners=("imap",), backend="maildir",
                         conf={"imap": {"idle_keepalive": "1"}})
        a = Raw(srv.port("imap")).login()
        a.cmd(b"SELECT INBOX")
        a.send(b"i IDLE\r\n")
        self.assertTrue(a.line().startswith(b"+"))
        new = os.path.join(srv.data_dir, "maildir", "alice@example.org", "new")
        self.assertTrue(os.path.isdir(new), new)
        tmp = os.path.join(srv.data_dir, "maildir", "alice@example.org", "tmp", "x1")
        with open(tmp, "wb") as f:
            f.write(b"From: tool@example.org\nSubject: dropped\n\nline one\nline two\n")
        os.rename(tmp, os.path.join(new, "1700000000.x1.host"))
        deadline = time.time() + 15
        while time.time() < deadline:
            l = a.line()
            if re.match(rb"^\* 1 EXISTS", l):
                break
        a.send(b"DONE\r\n")
        a.until(b"i")
        lines, t = a.cmd(b"FETCH 1 (BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertIn(b"OK", t)
        joined = b"".join(lines)
        self.assertIn(b"From: tool@example.org\r\nSubject: dropped\r\n\r\nline one\r\n"
                      b"line two\r\n", joined)
        self.assertIn(b"Subject: dropped\r\n\r\n", joined)
        a.close()
