"""IMAP BINARY (RFC 3516, folded into RFC 9051) on the wire, raw protocol,
both backends: FETCH BINARY[part]<partial>, BINARY.PEEK and BINARY.SIZE
undo base64 and quoted-printable (7bit, 8bit and binary pass), answer a
literal8 when the content holds NUL and NO [UNKNOWN-CTE] for an encoding
that cannot be undone; APPEND with literal8 (~{n} and ~{n+}) keeps the
bytes as given, NUL included; literal8 is refused where it is not allowed
and a plain literal still may not carry NUL; huge literal8 sizes are
refused before any byte is read. Python's imaplib reads BINARY too."""
import base64
import binascii
import imaplib
import os
import re
import unittest

from roosttest import BACKENDS, backend_classes
from test_imap_raw import Raw, RawSession

# Every byte value, NUL first: what a binary attachment holds.
BLOB = bytes(range(256)) * 4


def crlf_len(data):
    """What RFC822.SIZE counts: the bytes with every bare LF as CRLF
    (IMAP speaks CRLF; the stored bytes are kept as given)."""
    return len(data) + len(re.findall(rb"(?<!\r)\n", data))


def binary_message(body=BLOB, extra=b""):
    return (b"From: a@example.org\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n" + extra + b"\r\n" + body)


def b64_lines(data):
    """base64 in 76-column lines, as a mail program writes it."""
    e = base64.b64encode(data)
    return b"".join(e[i:i + 76] + b"\r\n" for i in range(0, len(e), 76))


QP_TEXT = (b"caf=C3=A9 na=C3=AFve, a long line that goes on and on and on and =\r\n"
           b"is soft-broken here; trailing blanks vanish   \r\n"
           b"=3D is an equals sign, =3d too; a stray = stays\r\n")
QP_DECODED = ("caf\u00e9 na\u00efve, a long line that goes on and on and on and "
              "is soft-broken here; trailing blanks vanish\r\n"
              "= is an equals sign, = too; a stray = stays\r\n").encode()

INNER = (b"From: inner@example.org\r\nSubject: inner\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=in\r\n\r\n"
         b"--in\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
         b"--in\r\nContent-Type: application/octet-stream\r\n"
         b"Content-Transfer-Encoding: BASE64\r\n\r\n" + b64_lines(b"\0inner\0") +
         b"--in--\r\n")

NESTED = (b"From: a@example.org\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=out\r\n\r\n"
          b"preamble\r\n"
          b"--out\r\nContent-Type: text/plain; charset=utf-8\r\n"
          b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + QP_TEXT +
          b"\r\n--out\r\nContent-Type: application/octet-stream\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\n" + b64_lines(BLOB) +
          b"\r\n--out\r\nContent-Type: message/rfc822\r\n\r\n" + INNER +
          b"\r\n--out\r\nContent-Type: application/octet-stream\r\n"
          b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n`\r\nend\r\n"
          b"\r\n--out\r\nContent-Type: text/plain\r\n\r\nplain 7bit\r\n"
          b"--out--\r\n")


def item(lines, name):
    """(literal8?, bytes) of the literal after name in FETCH lines; or the
    atom after it (BINARY.SIZE) as (None, bytes)."""
    data = b"".join(lines)
    i = data.find(name + b" ")
    assert i >= 0, (name, data[:300])
    rest = data[i + len(name) + 1:]
    m = re.match(rb"(~?)\{(\d+)\}\r\n", rest)
    if m is None:
        return None, re.match(rb"[^ )]+", rest).group(0)
    n = int(m.group(2))
    return m.group(1) == b"~", rest[m.end():m.end() + n]


class BinaryBase(RawSession):
    backend = "lmdb"

    def append8(self, mailbox, msg, sync=True):
        """APPEND msg as a literal8; returns the tagged line."""
        if sync:
            self.r.send(b"ap APPEND " + mailbox + b" ~{%d}\r\n" % len(msg))
            self.assertTrue(self.r.line().startswith(b"+"))
            self.r.send(msg + b"\r\n")
        else:
            self.r.send(b"ap APPEND " + mailbox + b" ~{%d+}\r\n" % len(msg) + msg + b"\r\n")
        _, tagged = self.r.until(b"ap")
        return tagged

    def append(self, mailbox, msg):
        self.r.send(b"ap APPEND " + mailbox + b" {%d}\r\n" % len(msg))
        self.assertTrue(self.r.line().startswith(b"+"))
        self.r.send(msg + b"\r\n")
        _, tagged = self.r.until(b"ap")
        self.assertRegex(tagged, rb"^ap OK", tagged)

    def fresh(self, name, *msgs):
        self.ok(b"CREATE " + name)
        for m in msgs:
            self.append(name, m)
        self.ok(b"SELECT " + name)

    def fetch(self, seq, items):
        return self.ok(b"FETCH %d %s" % (seq, items))

    def flags(self, seq):
        lines = self.ok(b"FETCH %d FLAGS" % seq)
        return re.search(rb"FLAGS \(([^)]*)\)", lines[0]).group(1).split()

    def size_of(self, seq):
        lines = self.ok(b"FETCH %d RFC822.SIZE" % seq)
        return int(re.search(rb"RFC822\.SIZE (\d+)", lines[0]).group(1))

    def test_append_literal8(self):
        """~{n} and ~{n+} both store the message as given: nothing is
        re-encoded (RFC822.SIZE counts its bare LFs as CRLF, as for any
        message; the bytes themselves come back by BINARY[])."""
        self.ok(b"CREATE Bin8")
        msg = binary_message()
        tagged = self.append8(b"Bin8", msg)
        self.assertRegex(tagged, rb"^ap OK \[APPENDUID \d+ 1\]", tagged)
        tagged = self.append8(b"Bin8", msg, sync=False)
        self.assertRegex(tagged, rb"^ap OK \[APPENDUID \d+ 2\]", tagged)
        # a literal8 without NUL is a literal8 still, and fine
        tagged = self.append8(b"Bin8", b"Subject: text\r\n\r\nplain\r\n", sync=False)
        self.assertRegex(tagged, rb"^ap OK", tagged)
        self.ok(b"SELECT Bin8")
        self.assertEqual(self.size_of(1), crlf_len(msg))
        self.assertEqual(self.size_of(2), crlf_len(msg))

    def test_append_literal8_spooled(self):
        """A literal8 large enough to go to a spool file keeps its NULs."""
        self.ok(b"CREATE Bin8Big")
        msg = binary_message(BLOB * 400)  # 400 KiB, past the spool threshold
        tagged = self.append8(b"Bin8Big", msg, sync=False)
        self.assertRegex(tagged, rb"^ap OK", tagged)
        self.ok(b"SELECT Bin8Big")
        self.assertEqual(self.size_of(1), crlf_len(msg))

    def test_nul_in_plain_literal_refused(self):
        """CHAR8 excludes NUL: a plain literal holding one is BAD, in
        memory or spooled, and the stream stays in sync."""
        msg = binary_message()
        self.r.send(b"n1 APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        _, tagged = self.r.until(b"n1")
        self.assertRegex(tagged, rb"^n1 BAD .*NUL", tagged)
        big = binary_message(BLOB * 400)
        self.r.send(b"n2 APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
        _, tagged = self.r.until(b"n2")
        self.assertRegex(tagged, rb"^n2 BAD .*NUL", tagged)
        self.ok(b"NOOP")

    def test_literal8_where_not_allowed(self):
        """literal8 carries APPEND's message only: elsewhere BAD."""
        for cmd in (b"SEARCH TEXT ~{3+}\r\nabc", b"CREATE ~{3+}\r\nabc",
                    b"APPEND ~{5+}\r\nINBOX {3+}\r\nabc"):
            lines, tagged = self.r.cmd(cmd)
            self.assertRegex(tagged, rb"^t\d+ BAD", (cmd, tagged))
        self.ok(b"NOOP")

    def test_huge_literal8(self):
        """Sizes past APPENDLIMIT are refused before the bytes come:
        synchronizing with NO [TOOBIG] (no continuation), non-synchronizing
        with BAD [TOOBIG]; digits past any bound never overflow."""
        lines = self.ok(b"CAPABILITY")
        limit = int(re.search(rb"APPENDLIMIT=(\d+)", lines[0]).group(1))
        self.r.send(b"h1 APPEND INBOX ~{%d}\r\n" % (limit + 1))
        _, tagged = self.r.until(b"h1")
        self.assertRegex(tagged, rb"^h1 NO \[TOOBIG\]", tagged)
        self.r.send(b"h2 APPEND INBOX ~{99999999999999999999999}\r\n")
        _, tagged = self.r.until(b"h2")
        self.assertRegex(tagged, rb"^h2 NO \[TOOBIG\]", tagged)
        self.r.send(b"h3 APPEND INBOX ~{%d+}\r\n" % (limit + 1))
        _, tagged = self.r.until(b"h3")
        self.assertRegex(tagged, rb"^h3 BAD \[TOOBIG\]", tagged)
        self.r.close()
        # the last left the stream unsynchronized by design (the client
        # promised bytes it was told not to send): a new connection
        self.r = Raw(self.srv.port("imap")).login()
        self.ok(b"NOOP")


    def test_capability(self):
        lines = self.ok(b"CAPABILITY")
        self.assertIn(b"BINARY", lines[0].split())

    def test_decode_parts(self):
        """base64, quoted-printable, 7bit; NUL makes a literal8, text a
        literal; BINARY.SIZE matches what BINARY sends."""
        self.fresh(b"Nested", NESTED)
        lines = self.fetch(1, b"(BINARY.PEEK[1] BINARY.PEEK[2] BINARY.PEEK[5] "
                              b"BINARY.SIZE[1] BINARY.SIZE[2] BINARY.SIZE[5])")
        self.assertEqual(item(lines, b"BINARY[1]"), (False, QP_DECODED))
        self.assertEqual(item(lines, b"BINARY[2]"), (True, BLOB))
        self.assertEqual(item(lines, b"BINARY[5]"), (False, b"plain 7bit"))
        self.assertEqual(item(lines, b"BINARY.SIZE[1]"), (None, b"%d" % len(QP_DECODED)))
        self.assertEqual(item(lines, b"BINARY.SIZE[2]"), (None, b"%d" % len(BLOB)))
        self.assertEqual(item(lines, b"BINARY.SIZE[5]"), (None, b"10"))

    def test_nested_and_non_leaf(self):
        """A message/rfc822 or multipart part is 7bit/8bit/binary by rule
        (RFC 2045 6.4): BINARY of it is its body as it is, the parts
        inside keep their encodings; its own parts decode by number."""
        self.fresh(b"NonLeaf", NESTED)
        lines = self.fetch(1, b"(BINARY.PEEK[3] BINARY.PEEK[3.2] BINARY.SIZE[3.2] "
                              b"BINARY.PEEK[3.1] BINARY.PEEK[])")
        self.assertEqual(item(lines, b"BINARY[3]"), (False, INNER))
        self.assertEqual(item(lines, b"BINARY[3.2]"), (True, b"\0inner\0"))
        self.assertEqual(item(lines, b"BINARY.SIZE[3.2]"), (None, b"7"))
        self.assertEqual(item(lines, b"BINARY[3.1]"), (False, b"inner text"))
        # the whole multipart message: as it is
        self.assertEqual(item(lines, b"BINARY[]"), (False, NESTED))
        # a part that does not exist: empty, as BODY[] answers
        lines = self.fetch(1, b"(BINARY.PEEK[9] BINARY.SIZE[9])")
        self.assertEqual(item(lines, b"BINARY[9]"), (False, b""))
        self.assertEqual(item(lines, b"BINARY.SIZE[9]"), (None, b"0"))

    def test_sizes_cached(self):
        """A decoded size is measured once and kept in the message's cache
        record (the next BINARY.SIZE, in this or another session, reads
        it); the answers are the same from the record. The Maildir record
        is a file this test can read."""
        self.fresh(b"Cached", NESTED)
        for _ in range(2):
            lines = self.fetch(1, b"(BINARY.SIZE[2] BINARY.SIZE[3.2] BINARY.PEEK[2]<0.8>)")
            self.assertEqual(item(lines, b"BINARY.SIZE[2]"), (None, b"%d" % len(BLOB)))
            self.assertEqual(item(lines, b"BINARY.SIZE[3.2]"), (None, b"7"))
            self.assertEqual(item(lines, b"BINARY[2]<0>"), (True, BLOB[:8]))
            self.r.close()
            self.r = Raw(self.srv.port("imap")).login()
            self.ok(b"SELECT Cached")
        lines = self.fetch(1, b"(ENVELOPE BINARY.SIZE[1] RFC822.SIZE)")
        self.assertEqual(item(lines, b"BINARY.SIZE[1]"), (None, b"%d" % len(QP_DECODED)))
        self.assertIn(b"RFC822.SIZE %d" % len(NESTED), lines[0])
        if self.backend == "maildir":
            want = b"2 %d 1\n3.2 7 1\n1 %d 0\n" % (len(BLOB), len(QP_DECODED))
            found = [os.path.join(d, "roost-cache") for d, _, files in os.walk(self.srv.dir)
                     if "roost-cache" in files]
            records = []
            for path in found:
                with open(path, "rb") as f:
                    records.append(f.read())
            self.assertTrue([r for r in records if want in r], found)

    def test_whole_single_part(self):
        """BINARY[] of a message whose one body is encoded: the header with
        Content-Transfer-Encoding made binary, then the decoded body."""
        hdr = b"From: a@example.org\r\nSubject: one\r\nContent-Type: image/png\r\n"
        msg = hdr + b"Content-Transfer-Encoding: base64\r\n\r\n" + b64_lines(BLOB)
        self.fresh(b"Single", msg)
        lines = self.fetch(1, b"(BINARY.PEEK[] BINARY.SIZE[] BINARY.PEEK[1] "
                              b"BINARY.PEEK[]<40.100>)")
        want = hdr + b"Content-Transfer-Encoding: binary\r\n\r\n" + BLOB
        self.assertEqual(item(lines, b"BINARY[]"), (True, want))
        self.assertEqual(item(lines, b"BINARY.SIZE[]"), (None, b"%d" % len(want)))
        self.assertEqual(item(lines, b"BINARY[1]"), (True, BLOB))
        # a partial across the header and the decoded body
        self.assertEqual(item(lines, b"BINARY[]<40>")[1], want[40:140])

    def test_partial(self):
        """<offset.length> counts decoded octets; past the end: empty."""
        self.fresh(b"Partial", NESTED)
        lines = self.fetch(1, b"(BINARY.PEEK[2]<10.20> BINARY.PEEK[1]<3.4> "
                              b"BINARY.PEEK[2]<1000.100> BINARY.PEEK[2]<5000.10>)")
        self.assertEqual(item(lines, b"BINARY[2]<10>"), (True, BLOB[10:30]))
        self.assertEqual(item(lines, b"BINARY[1]<3>"), (False, QP_DECODED[3:7]))
        self.assertEqual(item(lines, b"BINARY[2]<1000>")[1], BLOB[1000:])
        self.assertEqual(item(lines, b"BINARY[2]<5000>")[1], b"")

    def test_seen(self):
        """BINARY sets \\Seen as BODY[] does; PEEK and SIZE do not."""
        self.fresh(b"SeenBin", NESTED, NESTED)
        self.fetch(1, b"(BINARY.PEEK[1] BINARY.SIZE[2])")
        self.assertNotIn(b"\\Seen", self.flags(1))
        lines = self.fetch(1, b"BINARY[2]")
        self.assertIn(b"\\Seen", lines[0])
        self.assertIn(b"\\Seen", self.flags(1))
        self.assertNotIn(b"\\Seen", self.flags(2))

    def test_unknown_cte(self):
        """An encoding Roost cannot undo: NO [UNKNOWN-CTE], for BINARY and
        BINARY.SIZE; a multipart claiming base64 is refused the same way."""
        self.fresh(b"Unknown", NESTED)
        for it in (b"BINARY.PEEK[4]", b"BINARY.SIZE[4]", b"BINARY[4]<0.10>"):
            lines, tagged = self.r.cmd(b"FETCH 1 " + it)
            self.assertRegex(tagged, rb"^t\d+ NO \[UNKNOWN-CTE\]", (it, tagged))
            self.assertFalse([l for l in lines if b"BINARY" in l], lines)
        self.assertNotIn(b"\\Seen", self.flags(1))
        bad = (b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n")
        self.append(b"Unknown", bad)
        self.ok(b"NOOP")
        lines, tagged = self.r.cmd(b"FETCH 2 BINARY.PEEK[]")
        self.assertRegex(tagged, rb"^t\d+ NO \[UNKNOWN-CTE\]", tagged)
        # the others in the set are answered
        lines, tagged = self.r.cmd(b"FETCH 1:2 BINARY.PEEK[]")
        self.assertRegex(tagged, rb"^t\d+ NO \[UNKNOWN-CTE\]", tagged)
        self.assertEqual(item(lines, b"BINARY[]"), (False, NESTED))
        self.assertEqual(len([l for l in lines if b"BINARY[]" in l]), 1, lines)
        # BINARY (not PEEK) over both: \Seen on the one answered only
        lines, tagged = self.r.cmd(b"FETCH 1:2 BINARY[]")
        self.assertRegex(tagged, rb"^t\d+ NO \[UNKNOWN-CTE\]", tagged)
        self.assertIn(b"\\Seen", self.flags(1))
        self.assertNotIn(b"\\Seen", self.flags(2))

    def test_bad_sections(self):
        """section-binary is part numbers only; no partial on SIZE."""
        self.fresh(b"BadSec", NESTED)
        for it in (b"BINARY[HEADER]", b"BINARY[1.MIME]", b"BINARY[1.]", b"BINARY[0]",
                   b"BINARY[1]<0>", b"BINARY.SIZE[1]<0.5>", b"BINARY[1]<0.0>",
                   b"BINARY.PEEK[1", b"BINARY.SIZE", b"BINARY[1]x", b"BINARY.PEEK[1.x]"):
            lines, tagged = self.r.cmd(b"FETCH 1 (" + it + b")")
            self.assertRegex(tagged, rb"^t\d+ BAD", (it, tagged))

    def test_malformed_encodings(self):
        """Broken base64 and quoted-printable decode as RFC 2045 allows:
        garbage skipped, the first '=' ends base64, a stray '=' stays."""
        msg = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
               b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               b"aGVs!!bG8g\r\n d29y*bGQ=garbage after the end\r\n"
               b"--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
               b"=ZZ=4=\r\n=41=\r\n"
               b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\nQ\r\n"
               b"--b--\r\n")
        self.fresh(b"Broken", msg)
        lines = self.fetch(1, b"(BINARY.PEEK[1] BINARY.PEEK[2] BINARY.PEEK[3])")
        self.assertEqual(item(lines, b"BINARY[1]"), (False, b"hello world"))
        self.assertEqual(item(lines, b"BINARY[2]"), (False, b"=ZZ=4A"))
        self.assertEqual(item(lines, b"BINARY[3]"), (False, b""))

    def test_literal8_round_trip(self):
        """APPEND ~{n} with NUL and bare LF bytes, then BINARY[] and
        BINARY[1] give them back exactly; BODY[] (a literal, which cannot
        carry NUL) shows each NUL as 0x80, its length unchanged."""
        self.ok(b"CREATE Round")
        msg = binary_message()
        self.assertRegex(self.append8(b"Round", msg), rb"^ap OK")
        big = binary_message(BLOB * 400)
        self.assertRegex(self.append8(b"Round", big, sync=False), rb"^ap OK")
        self.ok(b"SELECT Round")
        lines = self.fetch(1, b"(BINARY.PEEK[] BINARY.PEEK[1] BINARY.SIZE[1] BODY.PEEK[])")
        self.assertEqual(item(lines, b"BINARY[]"), (True, msg))
        self.assertEqual(item(lines, b"BINARY[1]"), (True, BLOB))
        self.assertEqual(item(lines, b"BINARY.SIZE[1]"), (None, b"%d" % len(BLOB)))
        lit8, body = item(lines, b"BODY[]")
        self.assertFalse(lit8)
        self.assertNotIn(b"\0", body)
        self.assertEqual(len(body), crlf_len(msg))
        lines = self.fetch(2, b"(BINARY.PEEK[1] BINARY.PEEK[1]<300000.5000>)")
        self.assertEqual(item(lines, b"BINARY[1]"), (True, BLOB * 400))
        self.assertEqual(item(lines, b"BINARY[1]<300000>")[1], (BLOB * 400)[300000:305000])

    def test_large_base64_streamed(self):
        """A 3 MiB base64 attachment comes back whole and in a partial from
        its middle (decoded a chunk at a time as the client reads)."""
        payload = bytes((i * 7 + (i >> 8)) & 0xff for i in range(3 << 20))
        msg = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
               b"Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               + b64_lines(payload) + b"--b--\r\n")
        self.ok(b"CREATE Large")
        self.assertRegex(self.append8(b"Large", msg, sync=False), rb"^ap OK")
        self.ok(b"SELECT Large")
        lines = self.fetch(1, b"(BINARY.SIZE[1] BINARY.PEEK[1]<2000000.70000>)")
        self.assertEqual(item(lines, b"BINARY.SIZE[1]"), (None, b"%d" % len(payload)))
        self.assertEqual(item(lines, b"BINARY[1]<2000000>")[1], payload[2000000:2070000])
        lines = self.fetch(1, b"BINARY[1]")
        lit8, got = item(lines, b"BINARY[1]")
        self.assertTrue(lit8)
        self.assertEqual(binascii.crc32(got), binascii.crc32(payload))
        self.assertEqual(len(got), len(payload))

    def test_imaplib(self):
        """A real client: Python's imaplib sends FETCH BINARY and reads the
        literal8 back as it reads any literal."""
        self.fresh(b"Lib", NESTED)
        c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"))
        try:
            c.login("alice@example.org", "alice-secret")
            self.assertIn("BINARY", c.capabilities)
            c.select("Lib")
            typ, data = c._simple_command("FETCH", "1", "(BINARY.PEEK[2] BINARY.SIZE[1])")
            self.assertEqual(typ, "OK")
            typ, data = c._untagged_response(typ, data, "FETCH")
            self.assertEqual(data[0][1], BLOB)
            self.assertIn(b"BINARY.SIZE[1] %d" % len(QP_DECODED), data[1])
            typ, data = c.uid("FETCH", "1", "(BINARY.PEEK[1]<0.4>)")
            self.assertEqual(typ, "OK")
            self.assertEqual(data[0][1], QP_DECODED[:4])
            typ, data = c._simple_command("FETCH", "1", "(BINARY[4])")
            self.assertEqual(typ, "NO")
            self.assertIn(b"[UNKNOWN-CTE]", data[0])
        finally:
            c.logout()


backend_classes(globals(), BinaryBase, "TestImapBinary_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
