"""IMAP work and memory bounds against hostile input: LIST patterns that
backtrack, quoted strings that once cost the rest of the line each, and large
APPEND literals held open by many sessions (spooled to disk, not memory).
Memory is read from the server's /proc/PID/status."""
import base64
import os
import re
import socket
import termios
import fcntl
import time
import unittest

from roosttest import BACKENDS, RoostServer, backend_classes
from test_imap_raw import Raw

MB = 1024 * 1024


def proc_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for %d" % (field, pid))


def spool_fds(pid, data_dir):
    """Open files of the server that are deleted files under its data
    directory: the spooled literals."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith(data_dir) and target.endswith("(deleted)"):
            n += 1
    return n


def server_unread(port):
    """Bytes the kernel holds for the server's connections on port that the
    server has not read yet (rx_queue in /proc/net/tcp)."""
    total = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, state, queues = fields[1], fields[3], fields[4]
                    if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                        total += int(queues.split(":")[1], 16)
        except FileNotFoundError:
            pass
    return total


def wait_until(cond, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Client(Raw):
    """test_imap_raw's Raw reading into a bytearray: literals of any size
    in linear time."""

    def __init__(self, port, timeout=60):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()
        self.n = 0
        self.greeting = self.line()

    def _fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def line(self):
        out = bytearray()
        while True:
            while True:
                i = self.buf.find(b"\r\n")
                if i >= 0:
                    break
                self._fill()
            part = bytes(self.buf[:i + 2])
            del self.buf[:i + 2]
            out += part
            m = re.search(rb"\{(\d+)\}\r\n$", part)
            if not m:
                return bytes(out)
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += self.buf[:n]
            del self.buf[:n]

    def tag(self):
        self.n += 1
        return b"t%d" % self.n

    def append(self, *messages):
        """APPEND (MULTIAPPEND) with synchronizing literals; the tagged line."""
        tag = self.tag()
        self.send(tag + b" APPEND INBOX")
        for m in messages:
            self.send(b" {%d}\r\n" % len(m))
            l = self.line()
            assert l.startswith(b"+"), l
            self.send(m)
        self.send(b"\r\n")
        return self.until(tag)[1]

    def unsent(self):
        return fcntl.ioctl(self.sock, termios.TIOCOUTQ, b"\0\0\0\0") != b"\0\0\0\0"


def list_names(lines):
    """Mailbox names of LIST/LSUB responses, sorted."""
    out = []
    for l in lines:
        m = re.match(rb'\* (?:LIST|LSUB) \([^)]*\) (?:"/"|NIL) (.*)\r\n$', l, re.S)
        assert m, l
        name = m.group(1)
        lit = re.match(rb"\{(\d+)\}\r\n", name)
        if lit:
            name = name[lit.end():]
        elif name.startswith(b'"'):
            name = re.sub(rb'\\(.)', rb"\1", name[1:-1])
        out.append(name)
    return sorted(out)


def message(size, seed):
    """A mail of about size bytes: headers, then base64 lines."""
    head = b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: big %d\r\n\r\n" % seed
    raw = os.urandom(size * 3 // 4)
    body = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return head + body[:max(0, size - len(head) - 2)] + b"\r\n"


class ServerPerTest(unittest.TestCase):
    backend = "lmdb"
    conf = None

    def setUp(self):
        self.srv = RoostServer(backend=self.backend, listeners=("imap",), conf=self.conf)
        self.srv.start()
        self.port = self.srv.port("imap")
        self.pid = self.srv.proc.pid
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        try:
            self.srv.stop()
        finally:
            self.srv.cleanup()

    def client(self):
        c = Client(self.port)
        self.clients.append(c)
        return c


# ---- LIST patterns ----

class ListPatternBase:
    def test_backtracking_pattern_is_fast(self):
        c = self.client().login()
        long_name = b"a" * 100
        for name in (long_name, long_name + b"/" + long_name, b"Work/Projects"):
            _, t = c.cmd(b"CREATE " + name)
            self.assertIn(b" OK ", t)
        self.assertIn(b" OK ", c.cmd(b"SUBSCRIBE " + long_name)[1])
        bad = b"*a" * 12 + b"*b"
        for verb in (b"LIST", b"LSUB"):
            for pat in (bad, bad.replace(b"*", b"%")):
                t0 = time.monotonic()
                lines, t = c.cmd(verb + b' "" "' + pat + b'"')
                took = time.monotonic() - t0
                self.assertIn(b" OK ", t)
                self.assertEqual(lines, [])
                self.assertLess(took, 10.0, "%s %s took %.1fs" % (verb, pat, took))
        # the same shape that does match
        lines, t = c.cmd(b'LIST "" "' + b"*a" * 12 + b'*"')
        self.assertEqual(list_names(lines), [long_name, long_name + b"/" + long_name])
        lines, t = c.cmd(b'LIST "" "' + b"%a" * 12 + b'%"')
        self.assertEqual(list_names(lines), [long_name])

    def test_pattern_semantics(self):
        c = self.client().login()

        def names(pattern, ref=b'""'):
            lines, t = c.cmd(b"LIST " + ref + b" " + pattern)
            self.assertIn(b" OK ", t)
            return list_names(lines)

        top = names(b'"%"')     # INBOX and the special-use ones
        self.assertIn(b"INBOX", top)
        for name in (b"Work/Projects/Roost", b"Work2", b"INBOX/Sub"):
            self.assertIn(b" OK ", c.cmd(b"CREATE " + name)[1])
        self.assertEqual(names(b'"%"'), sorted(top + [b"Work", b"Work2"]))
        self.assertEqual(names(b'"Work/%"'), [b"Work/Projects"])
        self.assertEqual(names(b'"Work/*"'), [b"Work/Projects", b"Work/Projects/Roost"])
        self.assertEqual(names(b'"W%/%/R*"'), [b"Work/Projects/Roost"])
        self.assertEqual(names(b'"*o*"'), [b"INBOX", b"INBOX/Sub", b"Work", b"Work/Projects",
                                           b"Work/Projects/Roost", b"Work2"])
        self.assertEqual(names(b'"inbox"'), [b"INBOX"])
        self.assertEqual(names(b'"InBox/%"'), [b"INBOX/Sub"])
        self.assertEqual(names(b'"%"', ref=b'"Work/"'), [b"Work/Projects"])
        self.assertEqual(names(b'"work*"'), [])

    def test_pattern_length_bound(self):
        c = self.client().login()
        _, t = c.cmd(b'LIST "" "' + b"*" * 1024 + b'"')
        self.assertIn(b" OK ", t)
        _, t = c.cmd(b'LIST "" "' + b"*" * 1025 + b'"')
        self.assertRegex(t, rb"^t\d+ NO \[LIMIT\] Pattern too long")
        _, t = c.cmd(b'LIST "" (' + b" ".join([b'"' + b"%" * 1000 + b'"'] * 9) + b")")
        self.assertRegex(t, rb"^t\d+ NO \[LIMIT\] Pattern too long")
        self.assertIn(b" OK ", c.cmd(b"NOOP")[1])


# ---- quoted strings ----

class TestParserMemory(ServerPerTest):
    def refused_within(self, c, n, line_max, times, refusal, grow_max_kb):
        """NOOP with n empty quoted strings (a line under line_max), sent
        times on c: each refused (the tagged reply matches refusal), the
        server's peak RSS grown by less than grow_max_kb, and c still
        answered."""
        hwm0 = proc_kb(self.pid, "VmHWM")
        line = b"NOOP" + b' ""' * n
        self.assertLess(len(line), line_max)
        for _ in range(times):
            _, t = c.cmd(line)
            self.assertRegex(t, refusal)
        grew = proc_kb(self.pid, "VmHWM") - hwm0
        self.assertLess(grew, grow_max_kb, "peak RSS grew by %d KiB" % grew)
        self.assertIn(b" OK ", c.cmd(b"NOOP")[1])

    def test_quoted_strings_cost_their_length(self):
        c = self.client().login()
        self.refused_within(c, 21000, 64 * 1024, 3, rb"^t\d+ BAD ", 64 * 1024)

    def test_quoted_strings_before_login(self):
        c = self.client()
        self.refused_within(c, 2700, 8 * 1024, 5, rb"^t\d+ BAD \[TOOBIG\]", 6 * 1024)
        c.login()

    def test_quoted_strings_before_large_literal(self):
        c = self.client().login()
        hwm0 = proc_kb(self.pid, "VmHWM")
        body = message(8 * MB, 1)
        tag = c.tag()
        c.send(tag + b" APPEND INBOX" + b' ""' * 200 + b" {%d+}\r\n" % len(body) + body + b"\r\n")
        _, t = c.until(tag)
        self.assertRegex(t, rb"^t\d+ BAD ")
        grew = proc_kb(self.pid, "VmHWM") - hwm0
        self.assertLess(grew, 64 * 1024, "peak RSS grew by %d KiB" % grew)
        # the stream stayed in sync and the session works
        t = c.append(b"Subject: small\r\n\r\nhi\r\n")
        self.assertIn(b"APPENDUID", t)


    def test_command_past_line_bound_after_literal(self):
        # the literal fits, the line after it takes the command past 8 KiB
        c = self.client()
        c.send(b"a1 LOGIN {5}\r\n")
        self.assertTrue(c.line().startswith(b"+"))
        c.send(b"alice " + b"x" * 9000 + b"\r\n")
        self.assertRegex(c.line(), rb"^a1 BAD \[TOOBIG\]")
        self.assertIn(b" OK ", c.cmd(b"NOOP")[1])
        # the same after login, past 64 KiB after a small APPEND literal
        c.login()
        c.send(b"a2 APPEND INBOX {5+}\r\nhello " + b"(" * 70000 + b"\r\n")
        self.assertRegex(c.line(), rb"^a2 BAD \[TOOBIG\]")
        self.assertIn(b" OK ", c.cmd(b"NOOP")[1])


# ---- large literals ----

class SpoolBase:
    def fetch_body(self, c, uid):
        lines, t = c.cmd(b"UID FETCH %d (BODY.PEEK[])" % uid)
        self.assertIn(b" OK ", t)
        self.assertEqual(len(lines), 1)
        m = re.match(rb"\* \d+ FETCH \(.*BODY\[\] \{(\d+)\}\r\n", lines[0])
        self.assertIsNotNone(m, lines[0][:200])
        start = m.end()
        return lines[0][start:start + int(m.group(1))]

    def test_large_append_stores_exact_bytes(self):
        c = self.client().login()
        big = message(20 * MB, 2)
        t = c.append(big)
        m = re.search(rb"APPENDUID (\d+) (\d+)", t)
        self.assertIsNotNone(m, t)
        uid = int(m.group(2))
        # MULTIAPPEND mixing kept and spooled literals
        small1, mid, small2 = b"Subject: 1\r\n\r\none\r\n", message(MB, 3), b"Subject: 3\r\n\r\n3\r\n"
        t = c.append(small1, mid, small2)
        m = re.search(rb"APPENDUID \d+ (\d+):(\d+)", t)
        self.assertIsNotNone(m, t)
        first = int(m.group(1))
        self.assertEqual(int(m.group(2)), first + 2)
        # a non-synchronizing one
        tag = c.tag()
        other = message(2 * MB, 4)
        c.send(tag + b" APPEND INBOX (\\Seen) {%d+}\r\n" % len(other) + other + b"\r\n")
        t = c.until(tag)[1]
        m = re.search(rb"APPENDUID \d+ (\d+)", t)
        self.assertIsNotNone(m, t)
        last = int(m.group(1))
        # every spool file is gone once the commands are done
        self.assertEqual(spool_fds(self.pid, self.srv.data_dir), 0)
        self.assertIn(b" OK ", c.cmd(b"SELECT INBOX")[1])
        self.assertTrue(self.fetch_body(c, uid) == big, "20 MB message differs")
        self.assertEqual(self.fetch_body(c, first), small1)
        self.assertTrue(self.fetch_body(c, first + 1) == mid, "1 MB message differs")
        self.assertEqual(self.fetch_body(c, first + 2), small2)
        self.assertTrue(self.fetch_body(c, last) == other, "2 MB message differs")

    def test_unfinished_literals_stay_on_disk(self):
        sessions = [self.client().login() for _ in range(10)]
        # settle the allocator with one completed large append first
        self.assertIn(b"APPENDUID", sessions[0].append(message(MB, 5)))
        rss0 = proc_kb(self.pid, "VmRSS")
        chunk = b"x" * (1 << 20)
        for s in sessions:
            s.send(b"a APPEND INBOX {50000000}\r\n")
            self.assertTrue(s.line().startswith(b"+"))
        for _ in range(10):
            for s in sessions:
                s.send(chunk)
        wait_until(lambda: not any(s.unsent() for s in sessions)
                   and server_unread(self.port) == 0, "the server to read 100 MB")
        rss = proc_kb(self.pid, "VmRSS")
        self.assertLess(rss - rss0, 48 * 1024,
                        "RSS grew by %d KiB holding 10 x 10 MB of literals" % (rss - rss0))
        self.assertEqual(spool_fds(self.pid, self.srv.data_dir), 10)
        # a client that leaves takes its spool file with it
        for s in sessions:
            s.close()
        self.clients = []
        wait_until(lambda: spool_fds(self.pid, self.srv.data_dir) == 0, "spool files closed")
        c = self.client().login()
        self.assertIn(b"APPENDUID", c.append(b"Subject: after\r\n\r\nstill fine\r\n"))


backend_classes(globals(), (ListPatternBase, ServerPerTest), "TestListPatterns_%s", BACKENDS)
backend_classes(globals(), (SpoolBase, ServerPerTest), "TestAppendSpool_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
