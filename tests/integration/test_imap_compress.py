"""COMPRESS=DEFLATE (RFC 4978) on the wire, driven by Python's zlib on a raw
socket: plaintext and TLS, a FETCH of megabytes through the compressor (the
reply in steps, the output flow control), input pipelined behind COMPRESS,
and hostile input (garbage instead of DEFLATE, a decompression bomb, a
stream the client ends) closing the connection cleanly while the server
goes on serving. Both backends."""
import imaplib
import os
import glob
import re
import shutil
import socket
import ssl
import unittest
import zlib

from roosttest import BACKENDS, Mbsync, SharedServer, backend_classes, tls_context, wait_log
from test_imap_raw import Raw

USER = "alice@example.org"
PASS = "alice-secret"


def body_of(i, size):
    """A message of about size bytes: text that compresses, plus a part of
    random bytes (base64) that does not."""
    words = (b"Lorem ipsum dolor sit amet %d, consectetur adipiscing elit.\r\n" % i) * (size // 128)
    noise = zlib.compress(os.urandom(size // 8)).hex().encode()
    lines = b"".join(noise[j:j + 76] + b"\r\n" for j in range(0, len(noise), 76))
    return (b"From: bob@example.org\r\nTo: alice@example.org\r\nSubject: big %d\r\n\r\n" % i
            + words + lines)


class Wire(Raw):
    """test_imap_raw's Raw client that can switch its stream to DEFLATE."""

    def __init__(self, port, tls=False, timeout=30):
        self.comp = None
        self.decomp = None
        self.wire_in = 0
        super().__init__(port, tls=tls, timeout=timeout)

    def compress_on(self):
        self.comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.decomp = zlib.decompressobj(-15)
        # Bytes read past the tagged OK are compressed already.
        rest, self.buf = self.buf, b""
        if rest:
            self.buf = self.decomp.decompress(rest)

    def pack(self, data):
        return self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH)

    def send(self, data):
        self.sock.sendall(self.pack(data) if self.comp else data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.wire_in += len(d)
        self.buf += self.decomp.decompress(d) if self.decomp else d

    def login(self):
        _, ok = self.cmd(b'LOGIN "%s" "%s"' % (USER.encode(), PASS.encode()))
        assert ok.split()[1] == b"OK", ok

    def compress(self):
        """COMPRESS DEFLATE: the OK arrives uncompressed, all after it not."""
        self.n += 1
        tag = b"t%d" % self.n
        self.sock.sendall(tag + b" COMPRESS DEFLATE\r\n")
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        ok, self.buf = self.buf[:i], self.buf[i:]
        if ok.startswith(tag + b" OK"):
            self.compress_on()
        return ok

    def closed(self):
        """True once the server has closed (EOF or reset), reading what
        is left without decompressing it."""
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False


class CompressBase(SharedServer):
    N_BIG = 8
    BIG = 256 * 1024

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bodies = [body_of(i, cls.BIG) for i in range(cls.N_BIG)]
        c = imaplib.IMAP4("127.0.0.1", cls.srv.port("imap"))
        c.login(USER, PASS)
        c.create("Big")
        for b in cls.bodies:
            c.append("Big", None, None, b)
        c.logout()

    def wire(self, tls=False):
        w = Wire(self.srv.port("imaps" if tls else "imap"), tls=tls)
        self.addCleanup(w.close)
        return w

    def test_capability_and_states(self):
        w = self.wire()
        self.assertNotIn(b"COMPRESS=DEFLATE", w.greeting)
        _, r = w.cmd(b"COMPRESS DEFLATE")
        self.assertIn(b"BAD", r)  # not before login
        w.login()
        u, _ = w.cmd(b"CAPABILITY")
        self.assertIn(b" COMPRESS=DEFLATE", u[0])
        _, r = w.cmd(b"COMPRESS LZW")
        self.assertTrue(r.split()[1] == b"NO", r)
        _, r = w.cmd(b"COMPRESS")
        self.assertIn(b"BAD", r)
        ok = w.compress()
        self.assertRegex(ok, rb"^t\d+ OK ")
        # Second time: NO [COMPRESSIONACTIVE], sent compressed.
        _, r = w.cmd(b"COMPRESS DEFLATE")
        self.assertRegex(r, rb"^t\d+ NO \[COMPRESSIONACTIVE\]")
        # STARTTLS is gone once compressed (and after login anyway).
        _, r = w.cmd(b"STARTTLS")
        self.assertIn(b"BAD", r)
        u, r = w.cmd(b"NOOP")
        self.assertIn(b"OK", r)
        _, r = w.cmd(b"LOGOUT")
        self.assertIn(b"OK", r)

    def big_fetch(self, tls):
        w = self.wire(tls)
        w.login()
        self.assertIn(b"OK", w.compress())
        u, r = w.cmd(b"SELECT Big")
        self.assertIn(b"OK", r)
        start = w.wire_in
        u, r = w.cmd(b"FETCH 1:* (UID BODY.PEEK[])")
        self.assertIn(b"OK", r)
        got = [ln for ln in u if b"FETCH" in ln]
        self.assertEqual(len(got), self.N_BIG)
        plain = 0
        for i, ln in enumerate(got):
            body = ln[ln.index(b"}\r\n") + 3:ln.rindex(b")")]
            self.assertEqual(body, self.bodies[i])
            plain += len(ln)
        wire = w.wire_in - start
        # The text half compresses, the random half does not.
        self.assertLess(wire, plain * 0.8, (wire, plain))
        # Commands keep working after the big reply in steps.
        _, r = w.cmd(b"NOOP")
        self.assertIn(b"OK", r)
        w.cmd(b"LOGOUT")
        return wire, plain

    def test_big_fetch_plain(self):
        self.big_fetch(False)
        # The cost per connection is measured, not guessed, and logged.
        wait_log(self.srv, r"event=compress_end conn=\d+ .*zlib_bytes=\d+ conn_bytes=\d+ plain_out=")

    def test_big_fetch_tls(self):
        self.big_fetch(True)

    def test_starttls_then_compress(self):
        w = self.wire()
        _, r = w.cmd(b"STARTTLS")
        self.assertIn(b"OK", r)
        w.sock = tls_context().wrap_socket(w.sock)
        w.login()
        self.assertIn(b"OK", w.compress())
        u, r = w.cmd(b"LIST \"\" *")
        self.assertIn(b"OK", r)
        self.assertTrue(any(b"Big" in ln for ln in u))

    def test_pipelined_after_compress(self):
        # Against RFC 4978 the client does not wait for the OK: the bytes
        # behind the command are compressed, and are read as such.
        w = self.wire()
        w.login()
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        after = comp.compress(b"p1 NOOP\r\n") + comp.flush(zlib.Z_SYNC_FLUSH)
        w.sock.sendall(b"c1 COMPRESS DEFLATE\r\n" + after)
        while b"\r\n" not in w.buf:
            w._fill()
        i = w.buf.index(b"\r\n") + 2
        ok, w.buf = w.buf[:i], w.buf[i:]
        self.assertTrue(ok.startswith(b"c1 OK"), ok)
        w.compress_on()
        w.comp = comp
        _, r = w.until(b"p1")
        self.assertIn(b"OK", r)

    def test_idle_push_compressed(self):
        # An untagged push produced by a wake-up, not by a command, must be
        # flushed through the compressor at once.
        w = self.wire()
        w.login()
        w.compress()
        w.cmd(b"SELECT INBOX")
        w.send(b"i1 IDLE\r\n")
        self.assertTrue(w.line().startswith(b"+"))
        c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"))
        c.login(USER, PASS)
        c.append("INBOX", None, None, b"Subject: push\r\n\r\nhi\r\n")
        c.logout()
        while True:
            ln = w.line()
            if b"EXISTS" in ln:
                break
        w.send(b"DONE\r\n")
        _, r = w.until(b"i1")
        self.assertIn(b"OK", r)

    @unittest.skipIf(shutil.which("mbsync") is None, "mbsync (isync) not installed")
    def test_mbsync_compressed(self):
        # isync 1.4 turns COMPRESS on when the server offers it: a real
        # client pulls the big messages through the compressor.
        mb = Mbsync(self, self.srv.port("imaps"), USER, PASS,
                    "Patterns Big\nCreate Near\nSyncState *\n", tls=True)
        maildir = mb.maildir
        n_before = self.srv.log().count("event=compress ")
        rc, out = mb.run(timeout=120)
        if rc != 0 and "certificate" in out.lower():
            # Without a way to trust the self-signed certificate, plaintext.
            with open(mb.conf) as f:
                text = f.read()
            text = text.replace("Port %d" % self.srv.port("imaps"),
                                "Port %d" % self.srv.port("imap"))
            text = text.replace("SSLType IMAPS\nCertificateFile /dev/null\n",
                                "SSLType None\n")
            with open(mb.conf, "w") as f:
                f.write(text)
            rc, out = mb.run(timeout=120)
        self.assertEqual(rc, 0, out)
        self.assertGreater(self.srv.log().count("event=compress "), n_before, out)
        # mbsync stores LF line ends and adds its X-TUID header.
        got = set()
        for f in glob.glob(os.path.join(maildir, "Big", "*", "*")):
            with open(f, "rb") as fh:
                got.add(re.sub(rb"X-TUID: [^\n]*\n", b"", fh.read()))
        want = set(b.replace(b"\r\n", b"\n") for b in self.bodies)
        self.assertEqual(len(got), len(want))
        self.assertTrue(got == want, "bodies differ after the compressed sync")

    def assert_still_serving(self):
        w = self.wire()
        w.login()
        w.compress()
        _, r = w.cmd(b"NOOP")
        self.assertIn(b"OK", r)

    def test_garbage_closes(self):
        w = self.wire()
        w.login()
        w.compress()
        # Not DEFLATE: a block type 3 (reserved) header and junk.
        w.sock.sendall(b"\xff\xff\xff\xff" + os.urandom(64))
        self.assertTrue(w.closed())
        wait_log(self.srv, r"event=inflate_error")
        self.assert_still_serving()

    def test_garbage_tls_closes(self):
        w = self.wire(tls=True)
        w.login()
        w.compress()
        w.sock.sendall(b"\x07" * 200)
        self.assertTrue(w.closed())
        self.assert_still_serving()

    def rss_kib(self):
        with open("/proc/%d/status" % self.srv.proc.pid) as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def test_bomb_bounded(self):
        # 64 MiB of one byte with no line end, a few dozen KiB on the wire:
        # the inflated input meets the line bound and is refused as any
        # over-long line is, without the server ever holding the 64 MiB.
        w = self.wire()
        w.login()
        w.compress()
        before = self.rss_kib()
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        for _ in range(64):
            w.sock.sendall(comp.compress(b"A" * (1 << 20)))
        w.sock.sendall(comp.compress(b"\r\nn1 NOOP\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
        w.comp = comp
        lines, r = w.until(b"n1")
        self.assertIn(b"OK", r)
        self.assertTrue(any(b"BAD" in ln for ln in lines), lines)
        self.assertLess(self.rss_kib() - before, 32 * 1024)
        self.assert_still_serving()

    def test_client_ends_stream(self):
        # A final block ends the client's stream: the server takes it as
        # the end of input.
        w = self.wire()
        w.login()
        w.compress()
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        w.sock.sendall(comp.compress(b"n1 NOOP\r\n") + comp.flush(zlib.Z_FINISH))
        _, r = w.until(b"n1")
        self.assertIn(b"OK", r)
        self.assertTrue(w.closed())


backend_classes(globals(), CompressBase, "TestImapCompress_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
