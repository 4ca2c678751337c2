"""Long IMAP replies are produced in steps as the client reads: FETCH of
large messages (whole, partial, sections) byte-identical to what is
stored, a slow reader getting every byte while the server keeps its
pending output bounded, pipelined commands after a long FETCH answered in
order, a client vanishing mid-literal, a message expunged mid-literal
(the mapped file outlives the unlink on both backends: LMDB keeps large
bodies in files), LIST over many mailboxes and SEARCH over many
messages. On every backend."""
import base64
import random
import re
import socket
import subprocess
import time

from roosttest import BACKENDS, FILL, ROOST_BIN, SharedServer, backend_classes, tls_context
from test_imap_raw import Raw

USER = b"alice@example.org"
PASS = b"alice-secret"
ASAN = "asan" in ROOST_BIN


def make_message(size, seed, subject):
    """A CRLF message of about size octets, with a two-part MIME body."""
    rnd = random.Random(seed)
    head = (b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\n"
            b"Subject: " + subject + b"\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            b"--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            b"--b1\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n")
    raw = rnd.getrandbits(8 * (size * 3 // 4)).to_bytes(size * 3 // 4, "little")
    body = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return head + body + b"--b1--\r\n"


def fill(srv, msg, mailbox="INBOX"):
    res = subprocess.run([FILL, "-F", "-m", mailbox, srv.conf_path, USER.decode(), "1"],
                         input=msg, capture_output=True, timeout=300)
    if res.returncode != 0:
        raise AssertionError("roost-fill failed: %s" % res.stderr.decode(errors="replace"))
    return int(res.stdout.split()[1])


def wait_log(srv, pattern, timeout=30.0):
    """The first match of pattern in the server's log, once it is there."""
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, srv.log())
        if m or time.monotonic() > deadline:
            if not m:
                raise AssertionError("no %r in the log:\n%s" % (pattern, srv.log()[-3000:]))
            return m
        time.sleep(0.05)


def login_conn(srv, user=USER):
    """The connection id of the latest login of user (its client has seen
    the reply, which the server writes after the log line)."""
    ids = re.findall(r"event=login conn=(\d+) peer=\S+ proto=imap user=%s" % re.escape(user.decode()),
                     srv.log())
    return ids[-1]


def out_peak(srv, conn):
    """The largest pending output of a connection, logged when it went."""
    m = wait_log(srv, r"event=disconnect conn=%s .*out_peak=(\d+)" % conn)
    return int(m.group(1))


def rss_anon_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon for %d" % pid)


class Client(Raw):
    """A raw IMAP client that can read literals a piece at a time, through a
    small receive window (rcvbuf); its commands are tagged c1, c2, ...;
    login() selects a mailbox too."""
    tag_prefix = b"c"

    def __init__(self, port, rcvbuf=None, timeout=120, tls=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the window stays small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        if tls:
            self.sock = tls_context().wrap_socket(self.sock)
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def _fill(self, n=65536):
        d = self.sock.recv(n)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def raw_line(self, piece=65536):
        while b"\r\n" not in self.buf:
            self._fill(piece)
        i = self.buf.index(b"\r\n") + 2
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def literal(self, n, piece=65536, on_piece=None):
        parts = [self.buf[:n]]
        got = len(parts[0])
        self.buf = self.buf[got:]
        while got < n:
            d = self.sock.recv(min(piece, n - got))
            if not d:
                raise EOFError("connection closed after %d of %d literal octets" % (got, n))
            parts.append(d)
            got += len(d)
            if on_piece is not None:
                on_piece(got)
        return b"".join(parts)

    def line(self, piece=65536, on_piece=None):
        """One response with its literals inlined."""
        out = b""
        while True:
            part = self.raw_line(piece)
            out += part
            m = re.search(rb"\{(\d+)\}\r\n$", part)
            if not m:
                return out
            out += self.literal(int(m.group(1)), piece, on_piece)

    def login(self, select=b"INBOX"):
        super().login(USER, PASS)
        if select is not None:
            _, t = self.cmd(b"SELECT " + select)
            assert b" OK " in t, t
        return self

    def closed(self):
        """Read until the server closes; True when it did."""
        try:
            while self.sock.recv(65536):
                pass
        except socket.timeout:
            return False
        except OSError:
            pass
        return True


def fetch_literals(line):
    """The literals of one untagged FETCH response, in order."""
    out = []
    pos = 0
    while True:
        m = re.compile(rb"\{(\d+)\}\r\n").search(line, pos)
        if not m:
            return out
        n = int(m.group(1))
        out.append(line[m.end():m.end() + n])
        pos = m.end() + n


class StreamBase(SharedServer):
    backend = None
    BIG = (6 if ASAN else 12) * 1024 * 1024

    server_options = {"listeners": ("imap", "imaps"),
                      "conf": {"limits": {"max_message_size": "60M"},
                               "storage": {"fsync": "no"},
                               "server": {"log_level": "info"}}}

    @classmethod
    def server_started(cls):
        cls.port = cls.srv.port("imap")
        cls.small = (b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: small\r\n"
                     b"\r\nsmall body\r\n")
        cls.big = make_message(cls.BIG, 1, b"big")
        cls.small_uid = fill(cls.srv, cls.small)
        cls.big_uid = fill(cls.srv, cls.big)

    def client(self, **kw):
        return Client(self.port, **kw).login()

    def test_big_fetch_identical(self):
        c = self.client()
        try:
            big = self.big
            lines, t = c.cmd(b"UID FETCH %d (RFC822.SIZE BODY.PEEK[] UID)" % self.big_uid)
            self.assertIn(b" OK ", t)
            self.assertEqual(len(lines), 1)
            self.assertIn(b"RFC822.SIZE %d " % len(big), lines[0])
            self.assertEqual(fetch_literals(lines[0]), [big])
            # UID first, before the literal (as Dovecot, Cyrus and Gmail send it)
            self.assertRegex(lines[0], rb"^\* \d+ FETCH \(UID %d " % self.big_uid)
            self.assertTrue(lines[0].endswith(b"}\r\n" + big + b")\r\n"), lines[0][-40:])

            # Partial ranges across chunk boundaries, and past the end.
            n = len(big)
            for off, cnt in ((0, 1), (16383, 3), (16384, 16384), (65535, 200000),
                             (1000001, 3000000), (n - 10, 100), (n, 5), (n + 7, 5)):
                lines, t = c.cmd(b"UID FETCH %d BODY.PEEK[]<%d.%d>" % (self.big_uid, off, cnt))
                self.assertIn(b" OK ", t)
                self.assertIn(b"BODY[]<%d> {" % off, lines[0])
                self.assertEqual(fetch_literals(lines[0]), [big[off:off + cnt]],
                                 "partial <%d.%d>" % (off, cnt))

            # Sections: ranges of the stored bytes inside the message.
            hdr_end = big.index(b"\r\n\r\n") + 4
            lines, t = c.cmd(b"UID FETCH %d (BODY.PEEK[HEADER] BODY.PEEK[TEXT]<5.70000> "
                             b"BODY.PEEK[2] BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (Subject)])"
                             % self.big_uid)
            self.assertIn(b" OK ", t)
            p2_start = big.index(b"\r\n\r\n", big.index(b"application/octet-stream")) + 4
            p2_end = big.rindex(b"\r\n--b1--")
            self.assertEqual(fetch_literals(lines[0]),
                             [big[:hdr_end], big[hdr_end + 5:hdr_end + 5 + 70000],
                              big[p2_start:p2_end], b"hello", b"Subject: big\r\n\r\n"])

            # Several messages, small and big, in one FETCH, in order.
            lines, t = c.cmd(b"FETCH 1:2 (UID BODY.PEEK[])")
            self.assertIn(b" OK ", t)
            self.assertEqual([fetch_literals(l) for l in lines], [[self.small], [big]])
            self.assertTrue(lines[0].startswith(b"* 1 FETCH (UID %d " % self.small_uid))
            self.assertTrue(lines[1].startswith(b"* 2 FETCH (UID %d " % self.big_uid))
        finally:
            c.close()

    def test_bare_lf_converted_while_streaming(self):
        """A message stored with bare LFs (other Maildir tools write them)
        goes out as CRLF, converted chunk by chunk: whole, in parts and
        sections, with ranges starting on an inserted CR or its LF."""
        rnd = random.Random(11)
        lines = [b"From: lf@example.org", b"Subject: lf", b"MIME-Version: 1.0",
                 b"Content-Type: multipart/mixed; boundary=\"b\"", b"", b"--b",
                 b"Content-Type: text/plain", b"", b"first part", b"--b",
                 b"Content-Type: text/plain", b""]
        for i in range(60000):
            lines.append(b"line %d %s" % (i, b"x" * rnd.randrange(0, 60)))
        lines += [b"--b--", b""]
        raw = b"".join(l + (b"\r\n" if rnd.random() < 0.3 else b"\n") for l in lines)
        uid = fill(self.srv, raw)
        conv = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
        c = self.client()
        try:
            lines, t = c.cmd(b"UID FETCH %d (RFC822.SIZE BODY.PEEK[])" % uid)
            self.assertIn(b" OK ", t)
            self.assertIn(b"RFC822.SIZE %d " % len(conv), lines[0])
            self.assertEqual(fetch_literals(lines[0]), [conv])
            # Inserted CRs and the LFs after them, as first octets.
            crs = [m.start() for m in re.finditer(rb"\r\n", conv)][::997]
            offs = [(o, 3) for o in crs] + [(o + 1, 2) for o in crs]
            offs += [(rnd.randrange(len(conv)), rnd.randrange(1, 70000)) for _ in range(40)]
            items = b" ".join(b"BODY.PEEK[]<%d.%d>" % p for p in offs)
            lines, t = c.cmd(b"UID FETCH %d (%s)" % (uid, items))
            self.assertIn(b" OK ", t)
            self.assertEqual(fetch_literals(lines[0]), [conv[o:o + n] for o, n in offs])
            lines, t = c.cmd(b"UID FETCH %d (BODY.PEEK[2] BODY.PEEK[2]<100.5000> "
                             b"BODY.PEEK[1])" % uid)
            self.assertIn(b" OK ", t)
            start = conv.index(b"\r\n\r\n", conv.index(b"first part")) + 4
            end = conv.rindex(b"\r\n--b--")
            self.assertEqual(fetch_literals(lines[0]),
                             [conv[start:end], conv[start + 100:start + 5100], b"first part"])
        finally:
            c.close()

    def test_seen_side_effect(self):
        """BODY[] (no PEEK) sets \\Seen and says so in the same response."""
        uid = fill(self.srv, make_message(300000, 7, b"seen"))
        c = self.client()
        try:
            lines, t = c.cmd(b"UID FETCH %d BODY[]" % uid)
            self.assertIn(b" OK ", t)
            self.assertEqual(len(lines), 1)
            self.assertRegex(lines[0][-60:], rb" FLAGS \([^)]*\\Seen[^)]*\)\)\r\n$")
            lines, t = c.cmd(b"UID FETCH %d FLAGS" % uid)
            self.assertIn(b"\\Seen", lines[0])
        finally:
            c.close()

    def test_slow_reader_gets_every_byte(self):
        """A client with a small window reading a few KB at a time; another
        client's whole session completes meanwhile."""
        slow = Client(self.port, rcvbuf=8192).login()
        other = None
        try:
            slow.n += 1
            slow.send(b"s1 UID FETCH %d BODY.PEEK[]\r\n" % self.big_uid)
            head = slow.raw_line(4096)
            m = re.search(rb"\{(\d+)\}\r\n$", head)
            self.assertTrue(m, head)
            self.assertIn(b"(UID %d " % self.big_uid, head)
            self.assertEqual(int(m.group(1)), len(self.big))
            got = [slow.literal(100000, 4096)]
            # The slow one is mid-literal: someone else logs in, reads, leaves.
            other = self.client()
            lines, t = other.cmd(b"UID FETCH %d (BODY.PEEK[] FLAGS)" % self.small_uid)
            self.assertIn(b" OK ", t)
            self.assertEqual(fetch_literals(lines[0]), [self.small])
            _, t = other.cmd(b"LOGOUT")
            self.assertIn(b" OK ", t)
            got.append(slow.literal(len(self.big) - 100000, 4096))
            self.assertEqual(b"".join(got), self.big)
            rest, t = slow.until(b"s1")
            self.assertEqual(rest, [b")\r\n"])
            self.assertIn(b"s1 OK ", t)
        finally:
            slow.close()
            if other is not None:
                other.close()

    def test_slow_tls_reader(self):
        """The same over TLS: records go out as the client reads."""
        c = Client(self.srv.port("imaps"), rcvbuf=8192, tls=True).login()
        try:
            c.send(b"t1 UID FETCH %d (BODY.PEEK[]<1000.5000000> UID)\r\n" % self.big_uid)
            lines, t = c.until(b"t1", piece=4096)
            self.assertIn(b"t1 OK ", t)
            self.assertEqual(fetch_literals(lines[0]), [self.big[1000:5001000]])
        finally:
            c.close()

    def test_pipelined_after_long_fetch(self):
        c = self.client()
        try:
            c.send(b"p1 UID FETCH %d BODY.PEEK[]\r\n"
                   b"p2 FETCH 1 (UID BODY.PEEK[])\r\n"
                   b"p3 NOOP\r\n"
                   b"p4 UID FETCH %d BODY.PEEK[]<0.20>\r\n"
                   b"p5 LIST \"\" INBOX\r\n" % (self.big_uid, self.big_uid))
            lines, t = c.until(b"p1")
            self.assertIn(b"p1 OK ", t)
            self.assertEqual([fetch_literals(l) for l in lines], [[self.big]])
            lines, t = c.until(b"p2")
            self.assertIn(b"p2 OK ", t)
            self.assertEqual([fetch_literals(l) for l in lines], [[self.small]])
            _, t = c.until(b"p3")
            self.assertIn(b"p3 OK ", t)
            lines, t = c.until(b"p4")
            self.assertIn(b"p4 OK ", t)
            self.assertEqual(fetch_literals(lines[0]), [self.big[:20]])
            lines, t = c.until(b"p5")
            self.assertIn(b"p5 OK ", t)
            self.assertEqual(lines, [b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'])
        finally:
            c.close()

    def test_disconnect_mid_literal(self):
        for how in ("close", "reset"):
            c = Client(self.port, rcvbuf=8192).login()
            c.send(b"d1 UID FETCH %d BODY.PEEK[]\r\n" % self.big_uid)
            c.raw_line(4096)
            c.literal(50000, 4096)
            if how == "reset":
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            c.close()
        # The server is healthy: the next client is served in full.
        c = self.client()
        try:
            lines, t = c.cmd(b"UID FETCH %d BODY.PEEK[]" % self.big_uid)
            self.assertIn(b" OK ", t)
            self.assertEqual(fetch_literals(lines[0]), [self.big])
        finally:
            c.close()

    def test_expunged_mid_literal(self):
        msg = make_message(20 * 1024 * 1024, 3, b"doomed")
        uid = fill(self.srv, msg)
        reader = Client(self.port, rcvbuf=8192).login()
        other = None
        try:
            reader.send(b"e1 UID FETCH %d BODY.PEEK[]\r\n" % uid)
            head = reader.raw_line(4096)
            self.assertTrue(head.endswith(b"{%d}\r\n" % len(msg)), head)
            first = reader.literal(10000, 4096)
            # The reader's window and the server's buffers hold a few MB at
            # most: the rest is read after the message is gone.
            other = self.client()
            _, t = other.cmd(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
            self.assertIn(b" OK ", t)
            _, t = other.cmd(b"UID EXPUNGE %d" % uid)
            self.assertIn(b" OK ", t)
            # The mapped file outlives its unlink (a Maildir message, or
            # an LMDB body file: LMDB keeps bodies this large in files):
            # every byte arrives.
            rest = reader.literal(len(msg) - 10000, 65536)
            self.assertEqual(first + rest, msg)
            _, t = reader.until(b"e1")
            self.assertIn(b"e1 OK ", t)
            # The server is fine either way.
            _, t = other.cmd(b"NOOP")
            self.assertIn(b" OK ", t)
        finally:
            reader.close()
            if other is not None:
                other.close()

    def filled_client(self, mailbox, count, fill_args=(), timeout=300):
        """mailbox filled with count copies of self.small (roost-fill -F and
        fill_args), and a Client that selected it: (client, its conn id)."""
        res = subprocess.run([FILL, "-F", *fill_args, "-m", mailbox, self.srv.conf_path,
                              USER.decode(), str(count)],
                             input=self.small, capture_output=True, timeout=timeout)
        self.assertEqual(res.returncode, 0, res.stderr)
        c = Client(self.port).login(select=mailbox.encode())
        return c, login_conn(self.srv)

    def test_store_many_messages(self):
        """STORE 1:* on a large mailbox: one untagged FETCH per message,
        in order, read slowly, with the commands pipelined behind it
        answered after; with CONDSTORE each MODSEQ is the stored one."""
        count = 4000
        c, conn = self.filled_client("Junk", count, ["-n"], timeout=300)
        try:
            c.send(b"s1 STORE 1:* +FLAGS (\\Flagged)\r\ns2 NOOP\r\n")
            lines, t = c.until(b"s1", piece=512)
            self.assertIn(b"s1 OK ", t)
            self.assertEqual(len(lines), count)
            for i, l in enumerate(lines):
                self.assertRegex(l, rb"^\* %d FETCH \(FLAGS \([^)]*\\Flagged" % (i + 1))
            _, t = c.until(b"s2")
            self.assertIn(b"s2 OK ", t)
            _, t = c.cmd(b"ENABLE CONDSTORE")
            self.assertIn(b" OK ", t)
            lines, t = c.cmd(b"FETCH 1:* (UID MODSEQ)")
            before = [re.search(rb"UID (\d+) MODSEQ \((\d+)\)", l).groups() for l in lines]
            c.send(b"s3 UID STORE 1:* -FLAGS (\\Flagged)\r\ns4 FETCH 1:* (UID MODSEQ)\r\n")
            lines, t = c.until(b"s3", piece=512)
            self.assertIn(b"s3 OK ", t)
            self.assertEqual(len(lines), count)
            stored = [re.search(rb"UID (\d+) FLAGS \([^)]*\) MODSEQ \((\d+)\)", l).groups()
                      for l in lines]
            lines, t = c.until(b"s4")
            self.assertIn(b"s4 OK ", t)
            fetched = [re.search(rb"UID (\d+) MODSEQ \((\d+)\)", l).groups() for l in lines]
            self.assertEqual(stored, fetched)
            for (_, old_m), (_, new_m) in zip(before, fetched):
                self.assertGreater(int(new_m), int(old_m))
        finally:
            c.close()
        # Each reply is over 150 KB; the output never held much past 64 KiB.
        self.assertLess(out_peak(self.srv, conn), 96 * 1024)

    def test_list_many_mailboxes(self):
        names = ["Box%04d" % i for i in range(3000)]
        c = Client(self.port).login(select=None)
        conn = login_conn(self.srv)
        try:
            c.send(b"".join(b"m%d CREATE %s\r\n" % (i, n.encode()) for i, n in enumerate(names)))
            for i in range(len(names)):
                _, t = c.until(b"m%d" % i)
                self.assertIn(b" OK ", t)
            # Read the LIST a little at a time, and pipeline behind it.
            c.send(b"l1 LIST \"\" *\r\nl2 NOOP\r\n")
            lines, t = c.until(b"l1", piece=512)
            self.assertIn(b"l1 OK ", t)
            listed = [re.search(rb'"/" "(.*)"\r\n$', l).group(1).decode() for l in lines]
            self.assertEqual(sorted(listed),
                             sorted(names + ["INBOX", "Archive", "Drafts", "Junk", "Sent",
                                             "Trash"]))
            _, t = c.until(b"l2")
            self.assertIn(b"l2 OK ", t)
        finally:
            c.close()
        # The LIST is about 120 KB; the output never held much past 64 KiB.
        self.assertLess(out_peak(self.srv, conn), 96 * 1024)

    def test_search_many_messages(self):
        """SEARCH over a mailbox whose result line is over 200 KB: one
        line, every number in order, read slowly with a command pipelined
        behind it; the ESEARCH ALL form of a scattered set likewise."""
        # Sanitizer builds fill and search several times slower: their
        # line (about 73 KB) still outgrows the 64 KiB mark.
        count = 14000 if ASAN else 40000
        c, conn = self.filled_client("Archive", count, timeout=600)
        try:
            c.send(b"s1 SEARCH ALL\r\ns2 NOOP\r\n")
            lines, t = c.until(b"s1", piece=512)
            self.assertIn(b"s1 OK ", t)
            self.assertEqual(len(lines), 1)
            self.assertGreater(len(lines[0]), (64 if ASAN else 200) * 1024)
            self.assertEqual(lines[0], b"* SEARCH " + b" ".join(
                b"%d" % i for i in range(1, count + 1)) + b"\r\n")
            _, t = c.until(b"s2")
            self.assertIn(b"s2 OK ", t)

            lines, t = c.cmd(b"UID SEARCH ALL")
            self.assertIn(b" OK ", t)
            self.assertEqual(len(lines), 1)
            uids = [int(x) for x in lines[0].split()[2:]]
            self.assertEqual(len(uids), count)
            self.assertEqual(uids, sorted(set(uids)))

            # Flag every odd message (sets bounded by the line length).
            odd = list(range(1, count + 1, 2))
            for k in range(0, len(odd), 5000):
                part = b",".join(b"%d" % i for i in odd[k:k + 5000])
                _, t = c.cmd(b"STORE " + part + b" +FLAGS.SILENT (\\Flagged)")
                self.assertIn(b" OK ", t)
            c.send(b"e1 SEARCH RETURN (MIN COUNT ALL) FLAGGED\r\ne2 NOOP\r\n")
            lines, t = c.until(b"e1", piece=512)
            self.assertIn(b"e1 OK ", t)
            self.assertEqual(len(lines), 1)
            self.assertEqual(lines[0], b"* ESEARCH (TAG \"e1\") MIN 1 COUNT %d ALL " % len(odd)
                             + b",".join(b"%d" % i for i in odd) + b"\r\n")
            _, t = c.until(b"e2")
            self.assertIn(b"e2 OK ", t)
            lines, t = c.cmd(b"UID SEARCH RETURN (ALL) UNFLAGGED")
            self.assertIn(b" OK ", t)
            self.assertEqual(lines, [b"* ESEARCH (TAG \"c%d\") UID ALL " % c.n + b",".join(
                b"%d" % u for u in uids[1::2]) + b"\r\n"])
        finally:
            c.close()
        # The output never held much past 64 KiB.
        self.assertLess(out_peak(self.srv, conn), 96 * 1024)


class PendingBase(SharedServer):
    """A 50 MB FETCH BODY[] to a client that reads slowly keeps the
    server's memory flat: no copy of the message, output bounded."""
    backend = None
    server_options = {"listeners": ("imap",),
                      "conf": {"limits": {"max_message_size": "60M"},
                               "server": {"log_level": "info"}}}

    @classmethod
    def server_started(cls):
        cls.port = cls.srv.port("imap")
        cls.huge = make_message(50 * 1024 * 1024, 5, b"huge")
        cls.uid = fill(cls.srv, cls.huge)

    def test_50mb_fetch_bounded(self):
        pid = self.srv.proc.pid
        c = Client(self.port, rcvbuf=16384).login()
        conn = login_conn(self.srv)
        try:
            # Warm up: the first FETCH allocates what every FETCH needs.
            lines, t = c.cmd(b"UID FETCH %d BODY.PEEK[]<0.1000>" % self.uid)
            self.assertIn(b" OK ", t)
            base = rss_anon_kb(pid)
            peak = [base]
            mark = [0]

            def sample(got):
                if got >= mark[0]:
                    mark[0] += 1 << 20
                    peak[0] = max(peak[0], rss_anon_kb(pid))

            c.send(b"h1 UID FETCH %d BODY.PEEK[]\r\n" % self.uid)
            lines, t = c.until(b"h1", piece=4096, on_piece=sample)
            self.assertIn(b"h1 OK ", t)
            self.assertEqual(fetch_literals(lines[0]), [self.huge])
            grew_mb = (peak[0] - base) / 1024.0
            # Without streaming the whole 50 MB would sit in the output
            # buffer; sanitizer builds get room for their own bookkeeping.
            self.assertLess(grew_mb, 24 if ASAN else 12,
                            "server anonymous memory grew %.1f MB" % grew_mb)
            _, t = c.cmd(b"LOGOUT")
            self.assertIn(b" OK ", t)
            self.assertTrue(c.closed())
        finally:
            c.close()
        # The runtime logs the largest pending output of the connection
        # when it goes: this one's is the 50 MB FETCH.
        self.assertLessEqual(out_peak(self.srv, conn), 256 * 1024)


backend_classes(globals(), StreamBase, "TestStream_%s", BACKENDS)
backend_classes(globals(), PendingBase, "TestPending_%s", BACKENDS)
