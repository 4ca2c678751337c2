"""IMAP BINARY (RFC 3516, folded into RFC 9051) on the wire, raw protocol,
both backends: APPEND with literal8 (~{n} and ~{n+}) keeps the bytes as
given, NUL included; literal8 is refused where it is not allowed and a
plain literal still may not carry NUL; huge literal8 sizes are refused
before any byte is read."""
import re
import unittest

from roosttest import BACKENDS, RoostServer
from test_imap_raw import Raw

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


class BinaryBase:
    backend = "lmdb"

    @classmethod
    def setUpClass(cls):
        cls.srv = RoostServer(backend=cls.backend, listeners=("imap",))
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.srv.stop()
        finally:
            cls.srv.cleanup()

    def setUp(self):
        self.r = Raw(self.srv.port("imap")).login()

    def tearDown(self):
        self.r.close()

    def ok(self, text):
        lines, tagged = self.r.cmd(text)
        self.assertRegex(tagged, rb"^t\d+ OK", (text, lines, tagged))
        return lines

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


for _backend in BACKENDS:
    _name = "TestImapBinary_" + _backend
    globals()[_name] = type(_name, (BinaryBase, unittest.TestCase), {"backend": _backend})


if __name__ == "__main__":
    unittest.main()
