"""Slow clients cost a buffer, never a worker (shared/DESIGN.md).

N = 4 x the worker count slow readers fetch a large message over IMAP and
over POP3 and read a trickle (a few KB per second through a small receive
window). While every one of them is still mid-transfer, a second user logs
in over IMAP, selects, fetches and logs out, a POP3 session and an SMTP
session run, and a new connection gets its greeting: each must finish
within a bound that only a blocked worker pool misses. Then the slow readers
read on at full speed and must get every byte of what was stored. The same
again over implicit TLS.

Also: clients that pipeline thousands of CAPABILITY / CAPA / NOOP and never
read must not stop anyone else's greeting (backpressure), and no
connection's pending output grows past 256 KiB (the server logs the largest
pending output of each connection as out_peak= when it closes).
"""
import imaplib
import os
import poplib
import random
import re
import select
import smtplib
import socket
import subprocess
import threading
import time
import unittest

from roosttest import BACKENDS, FILL, ROOT, RoostServer, SharedServer, tls_context


WORKERS = 2
N = 4 * WORKERS
# Larger than what the kernel buffers for one connection on loopback (the
# server's send buffer grows to net.ipv4.tcp_wmem's 4 MiB), so a worker that
# wrote to the socket itself would block.
SIZE = 6 * 1024 * 1024
PEAK_MAX = 256 * 1024
BOUND = 30              # seconds for a session that a free worker pool serves at once
TRICKLE = 1024          # bytes read per slow-reader tick
TICK = 0.25             # seconds between ticks: ~4 KB/s

# IMAP FETCH produces its reply in steps once the IMAP code uses the
# runtime's continuations; until then a FETCH buffers the whole message (the
# worker is still free, which is what the rest of this module checks).
def _imap_uses_continuations():
    imap = os.path.join(ROOT, "protocols", "imap")
    for name in os.listdir(imap):
        if name.endswith(".c"):
            with open(os.path.join(imap, name)) as f:
                if "conn_continue(" in f.read():
                    return True
    return False


IMAP_FETCH_STREAMS = _imap_uses_continuations()

ALICE = ("alice@example.org", "alice-secret")      # the IMAP slow readers' mailbox
BOB = ("bob@example.org", "bob-secret")            # the second IMAP user
CAROL = ("carol@example.org", "carol-secret")      # the other POP3 session
POP_USERS = {"p%d@example.org" % i: "pw-%d" % i for i in range(2 * N)}
USERS = dict([ALICE, BOB, CAROL], **POP_USERS)

SMALL = (b"From: Carol <carol@example.org>\r\nTo: Bob <bob@example.org>\r\n"
         b"Subject: small\r\nMessage-ID: <small@example.org>\r\n\r\nhello\r\n")


def big_message(size, seed=12):
    """A message with lines of every length, many starting with "." or
    ".." or only ".", so dot-stuffing meets every chunk boundary."""
    rnd = random.Random(seed)
    table = bytes((0x21 + i % 94) for i in range(256))
    noise = rnd.randbytes(size + 4096).translate(table)
    out = [b"From: Alice <alice@example.org>\r\nTo: Alice <alice@example.org>\r\n"
           b"Subject: big\r\nMessage-ID: <big@example.org>\r\n\r\n"]
    total, pos = len(out[0]), 0
    while total < size:
        k = rnd.choice((0, 1, 2, 70, 76, 200, 997, rnd.randrange(0, 300)))
        r = rnd.random()
        head = b"." if r < 0.1 else b".." if r < 0.15 else b""
        line = head + noise[pos:pos + k] + b"\r\n"
        pos = (pos + k) % size
        out.append(line)
        total += len(line)
    return b"".join(out)


def fill(srv, user, msg):
    res = subprocess.run([FILL, "-F", srv.conf_path, user, "1"], input=msg,
                         capture_output=True, timeout=120)
    if res.returncode != 0:
        raise AssertionError("roost-fill failed: %s" % res.stderr.decode(errors="replace"))


def unstuff(body):
    """A POP3 multi-line body (without the final ".") as the message bytes."""
    lines = body.split(b"\r\n")
    return b"\r\n".join(ln[1:] if ln.startswith(b".") else ln for ln in lines)


class SlowReader(threading.Thread):
    """Logs in, asks for the big message, then reads TRICKLE bytes per TICK
    until told to go fast; records every byte after the command."""

    def __init__(self, proto, port, user, password, tls):
        super().__init__(daemon=True)
        self.proto, self.port, self.user, self.password, self.tls = \
            proto, port, user, password, tls
        self.buf = b""
        self.started = threading.Event()    # the reply began to arrive
        self.fast = threading.Event()
        self.error = None
        self.complete = False

    def _connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.settimeout(120)
        s.connect(("127.0.0.1", self.port))
        if self.tls:
            s = tls_context().wrap_socket(s, server_hostname="roost.test")
        self.sock = s

    def _line(self):
        while b"\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("closed during login: %r" % self.buf[-200:])
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def _until(self, prefix):
        while True:
            line = self._line()
            if line.startswith(prefix):
                return line

    def _login(self):
        if self.proto == "imap":
            self._line()
            self.sock.sendall(b'a1 LOGIN "%s" "%s"\r\n' % (self.user.encode(),
                                                         self.password.encode()))
            assert self._until(b"a1 ").startswith(b"a1 OK")
            self.sock.sendall(b"a2 SELECT INBOX\r\n")
            assert self._until(b"a2 ").startswith(b"a2 OK")
            self.sock.sendall(b"a3 FETCH 1 BODY.PEEK[]\r\n")
        else:
            self._line()
            self.sock.sendall(b"USER %s\r\n" % self.user.encode())
            assert self._line().startswith(b"+OK")
            self.sock.sendall(b"PASS %s\r\n" % self.password.encode())
            assert self._line().startswith(b"+OK")
            self.sock.sendall(b"RETR 1\r\n")

    def _done(self):
        if self.proto == "pop3":
            return self.buf.endswith(b"\r\n.\r\n")
        m = re.search(rb"\{(\d+)\}\r\n", self.buf)
        if m is None:
            return False
        end = m.end() + int(m.group(1))
        return re.search(rb"\r\na3 (OK|NO|BAD)[^\n]*\n", self.buf[end:]) is not None

    def payload(self):
        """The message as the client rebuilds it."""
        if self.proto == "pop3":
            head, body = self.buf.split(b"\r\n", 1)
            assert head.startswith(b"+OK"), head
            return unstuff(body[:-len(b".\r\n")])
        m = re.search(rb"\{(\d+)\}\r\n", self.buf)
        return self.buf[m.end():m.end() + int(m.group(1))]

    def received(self):
        return len(self.buf)

    def run(self):
        try:
            self._connect()
            self._login()
            while not self._done():
                d = self.sock.recv(65536 if self.fast.is_set() else TRICKLE)
                if not d:
                    raise EOFError("closed after %d bytes" % len(self.buf))
                self.buf += d
                self.started.set()
                if not self.fast.is_set():
                    # Pacing the reader, not waiting for the server.
                    self.fast.wait(TICK)
            self.complete = True
            self.sock.close()
        except Exception as e:  # reported by the test
            self.error = e
            self.started.set()


def bounded(test, what, fn):
    """Run fn; it must finish within BOUND seconds (its sockets time out
    at BOUND too, so a blocked server fails here rather than hangs)."""
    t0 = time.monotonic()
    fn()
    took = time.monotonic() - t0
    test.assertLess(took, BOUND, "%s took %.1f s" % (what, took))


def disconnects(log, proto):
    """out_peak of every closed connection of proto."""
    return [int(m.group(1)) for m in
            re.finditer(r"event=disconnect conn=\d+ peer=\S+ proto=%s(?: user=\S+)? .*out_peak=(\d+)" % proto, log)]


def wait_disconnects(test, srv, proto, count):
    deadline = time.monotonic() + 60
    while len(disconnects(srv.log(), proto)) < count:
        test.assertLess(time.monotonic(), deadline,
                        "%d %s connections not closed" % (count, proto))
        time.sleep(0.05)


class SlowReadersBase(SharedServer):
    backend = None
    server_options = {"users": USERS, "conf": {"server": {"workers": str(WORKERS)},
                                               "limits": {"command_timeout": "300"}}}
    needs_fill = True

    @classmethod
    def server_started(cls):
        cls.big = big_message(SIZE)
        fill(cls.srv, ALICE[0], cls.big)
        fill(cls.srv, BOB[0], SMALL)
        fill(cls.srv, CAROL[0], SMALL)
        for user in POP_USERS:
            fill(cls.srv, user, cls.big)

    # -- the sessions that must not wait --
    def imap_second_user(self, tls):
        if tls:
            m = imaplib.IMAP4_SSL("127.0.0.1", self.srv.port("imaps"), ssl_context=tls_context(),
                                  timeout=BOUND)
        else:
            m = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=BOUND)
        m.login(*BOB)
        self.assertEqual(m.select("INBOX")[0], "OK")
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0][1], SMALL)
        m.logout()

    def pop3_session(self, tls):
        if tls:
            p = poplib.POP3_SSL("127.0.0.1", self.srv.port("pop3s"), context=tls_context(),
                                timeout=BOUND)
        else:
            p = poplib.POP3("127.0.0.1", self.srv.port("pop3"), timeout=BOUND)
        p.user(CAROL[0])
        p.pass_(CAROL[1])
        self.assertEqual(p.stat()[0], 1)
        self.assertEqual(b"\r\n".join(p.retr(1)[1]) + b"\r\n", SMALL)
        p.quit()

    def smtp_session(self, tls):
        if tls:
            s = smtplib.SMTP_SSL("127.0.0.1", self.srv.port("smtps"), context=tls_context(),
                                 timeout=BOUND)
        else:
            s = smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=BOUND)
        s.ehlo("client.test")
        if tls:
            s.login(*CAROL)     # smtps is for submission
        s.sendmail(CAROL[0], [BOB[0]], SMALL)
        s.quit()

    def greeting(self, tls):
        s = socket.create_connection(("127.0.0.1", self.srv.port("imaps" if tls else "imap")),
                                     timeout=BOUND)
        if tls:
            s = tls_context().wrap_socket(s, server_hostname="roost.test")
        self.assertTrue(s.recv(100).startswith(b"* OK"))
        s.close()

    def run_slow_readers(self, tls, pop_users):
        imap_port = self.srv.port("imaps" if tls else "imap")
        pop_port = self.srv.port("pop3s" if tls else "pop3")
        readers = [SlowReader("imap", imap_port, ALICE[0], ALICE[1], tls) for _ in range(N)]
        readers += [SlowReader("pop3", pop_port, u, POP_USERS[u], tls) for u in pop_users]
        for r in readers:
            r.start()
        try:
            for r in readers:
                self.assertTrue(r.started.wait(120), "a slow reader's reply never began")
                self.assertIsNone(r.error)
            # Every worker would now be stuck if a worker waited on a slow
            # client. Everyone else must still be served.
            bounded(self, "the greeting", lambda: self.greeting(tls))
            bounded(self, "the second IMAP user", lambda: self.imap_second_user(tls))
            bounded(self, "the POP3 session", lambda: self.pop3_session(tls))
            bounded(self, "the SMTP session", lambda: self.smtp_session(tls))
            for r in readers:
                self.assertIsNone(r.error)
                self.assertFalse(r.complete, "a slow reader finished early: the test "
                                 "proves nothing (raise SIZE)")
                self.assertLess(r.received(), SIZE)
        finally:
            for r in readers:
                r.fast.set()
            for r in readers:
                r.join(180)
        pop_want = self.big
        for r in readers:
            self.assertIsNone(r.error)
            self.assertTrue(r.complete)
            got = r.payload()
            self.assertEqual(len(got), len(pop_want))
            self.assertTrue(got == pop_want, "%s payload differs" % r.proto)
        return readers

    def closed_counts(self):
        log = self.srv.log()
        return {p: len(disconnects(log, p)) for p in ("imap", "imaps", "pop3", "pop3s")}

    def check_peaks(self, tls, before):
        """out_peak of every connection of the run: the slow readers plus,
        for POP3, the other session, for IMAP the second user and the
        greeting."""
        imap_l, pop_l = ("imaps", "pop3s") if tls else ("imap", "pop3")
        wait_disconnects(self, self.srv, pop_l, before[pop_l] + N + 1)
        pop = disconnects(self.srv.log(), pop_l)[before[pop_l]:]
        self.assertLessEqual(max(pop), PEAK_MAX, "POP3 pending output")
        wait_disconnects(self, self.srv, imap_l, before[imap_l] + N + 2)
        imap = disconnects(self.srv.log(), imap_l)[before[imap_l]:]
        with self.subTest("IMAP pending output"):
            if not IMAP_FETCH_STREAMS:
                self.skipTest("IMAP FETCH does not produce its reply in steps yet: largest "
                              "pending output of an IMAP connection %d bytes (bound %d not "
                              "checked)" % (max(imap), PEAK_MAX))
            self.assertLessEqual(max(imap), PEAK_MAX, "IMAP pending output")

    def test_slow_readers_plain(self):
        before = self.closed_counts()
        self.run_slow_readers(False, sorted(POP_USERS)[:N])
        self.check_peaks(False, before)

    def test_slow_readers_tls(self):
        before = self.closed_counts()
        self.run_slow_readers(True, sorted(POP_USERS)[N:])
        self.check_peaks(True, before)


class SlowReadersLmdb(SlowReadersBase, unittest.TestCase):
    backend = "lmdb"


@unittest.skipUnless("maildir" in BACKENDS, "maildir backend not selected")
class SlowReadersMaildir(SlowReadersBase, unittest.TestCase):
    backend = "maildir"

    # The runtime does not depend on the backend; POP3 re-reads the message
    # at every step, which is what differs: the plaintext run covers it.
    def test_slow_readers_tls(self):
        raise unittest.SkipTest("covered by the lmdb run")


class PipelinedFlood(unittest.TestCase):
    """Unauthenticated clients pipeline cheap commands and never read."""

    CONNS = 8
    # Each flood's replies add up to more than the kernel buffers (see SIZE).
    REPLIES = 8 * 1024 * 1024

    def flood(self, port, greeting_prefix, prologue, command, reply_len):
        socks = []
        for _ in range(self.CONNS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
            s.settimeout(BOUND)
            s.connect(("127.0.0.1", port))
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(greeting_prefix))
            if prologue:
                s.sendall(prologue)
                while not f.readline().startswith(b"250 "):
                    pass
            s.setblocking(False)
            socks.append((s, f))
        # Send until the server stops reading from every flooder (no byte
        # taken for a second: its output is full) or all was sent.
        data = command * (self.REPLIES // reply_len)
        sent = [0] * len(socks)
        while True:
            pending = [i for i in range(len(socks)) if sent[i] < len(data)]
            if not pending:
                break
            _, writable, _ = select.select([], [socks[i][0] for i in pending], [], 1.0)
            if not writable:
                break
            for i in pending:
                if socks[i][0] in writable:
                    try:
                        sent[i] += socks[i][0].send(data[sent[i]:sent[i] + 65536])
                    except BlockingIOError:
                        pass
        return socks

    def test_pipelining_clients_do_not_stop_greetings(self):
        srv = RoostServer(users={}, conf={"server": {"workers": str(WORKERS)},
                                          "limits": {"command_timeout": "300"}},
                          listeners=("imap", "pop3", "smtp"))
        with srv:
            socks = []
            # Reply lengths are lower bounds (shorter than the real ones).
            socks += self.flood(srv.port("imap"), b"* OK", None, b"a CAPABILITY\r\n", 100)
            socks += self.flood(srv.port("pop3"), b"+OK", None, b"CAPA\r\n", 100)
            socks += self.flood(srv.port("smtp"), b"220", b"EHLO flood.test\r\n", b"NOOP\r\n",
                                12)

            def greeted(port, prefix, cmd, reply):
                s = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
                f = s.makefile("rb")
                self.assertTrue(f.readline().startswith(prefix))
                s.sendall(cmd)
                self.assertTrue(f.readline().startswith(reply))
                s.close()

            bounded(self, "an IMAP greeting",
                    lambda: greeted(srv.port("imap"), b"* OK", b"a NOOP\r\n", b"a OK"))
            bounded(self, "a POP3 greeting",
                    lambda: greeted(srv.port("pop3"), b"+OK", b"QUIT\r\n", b"+OK"))
            bounded(self, "an SMTP greeting",
                    lambda: greeted(srv.port("smtp"), b"220", b"NOOP\r\n", b"250"))
            for s, f in socks:
                f.close()
                s.close()
            for proto in ("imap", "pop3", "smtp"):
                # The flooders, the greeted client and the start-up probe.
                wait_disconnects(self, srv, proto, self.CONNS + 2)
                peaks = disconnects(srv.log(), proto)
                self.assertLessEqual(max(peaks), PEAK_MAX, "%s pending output" % proto)


if __name__ == "__main__":
    unittest.main()
