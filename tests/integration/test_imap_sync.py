"""IMAP sizes and resynchronisation: RFC822.SIZE of foreign bare-LF Maildir
messages, CONDSTORE and QRESYNC (RFC 7162), spoken raw on the wire."""
import os
import re
import unittest

from roosttest import RoostServer
from test_imap_raw import Raw

LF_MSG = b"From: tool@example.org\nSubject: dropped\n\nline one\nline two\n"
CRLF_MSG = b"From: a@example.org\r\nSubject: crlf\r\n\r\nbody\r\n"


def literal_of(lines, name):
    """The literal following `name {n}` in the joined lines."""
    joined = b"".join(lines)
    m = re.search(re.escape(name) + rb" \{(\d+)\}\r\n", joined)
    assert m, joined
    n = int(m.group(1))
    return joined[m.end():m.end() + n]


def sizes_of(lines):
    return [int(x) for x in re.findall(rb"RFC822\.SIZE (\d+)", b"".join(lines))]


class TestImapVirtualSize(unittest.TestCase):
    """RFC822.SIZE equals the octets BODY[] sends, also for a message another
    tool dropped into the Maildir with bare LF line ends."""

    def test_bare_lf_size(self):
        srv = RoostServer(listeners=("imap",), backend="maildir")
        try:
            srv.start()
        except AssertionError as e:
            srv.cleanup()
            if "unknown backend" in str(e):
                self.skipTest("maildir backend not in this build")
            raise
        try:
            a = Raw(srv.port("imap")).login()
            a.cmd(b"SELECT INBOX")
            box = os.path.join(srv.data_dir, "maildir", "alice@example.org")
            tmp = os.path.join(box, "tmp", "x1")
            with open(tmp, "wb") as f:
                f.write(LF_MSG)
            os.rename(tmp, os.path.join(box, "new", "1700000000.x1.host"))
            seen, t = a.cmd(b"NOOP")
            self.assertIn(b"* 1 EXISTS\r\n", seen)
            seen, t = a.cmd(b"APPEND INBOX {%d}" % len(CRLF_MSG) + b"\r\n" + CRLF_MSG)
            self.assertIn(b"OK", t)
            lines, t = a.cmd(b"NOOP")
            self.assertIn(b"* 2 EXISTS\r\n", seen + lines)
            # size first (nothing cached), then with the body, then from
            # the cache in a second session, then after ENVELOPE filled it
            lines, t = a.cmd(b"FETCH 1:2 RFC822.SIZE")
            self.assertIn(b"OK", t)
            first = sizes_of(lines)
            self.assertEqual(first, [len(LF_MSG) + LF_MSG.count(b"\n"), len(CRLF_MSG)])
            for i in (1, 2):
                lines, t = a.cmd(b"FETCH %d (RFC822.SIZE BODY.PEEK[])" % i)
                self.assertIn(b"OK", t)
                body = literal_of(lines, b"BODY[]")
                self.assertEqual(sizes_of(lines), [len(body)])
                self.assertEqual(len(body), first[i - 1])
            lines, t = a.cmd(b"FETCH 1 RFC822")
            self.assertEqual(len(literal_of(lines, b"RFC822")), first[0])
            b = Raw(srv.port("imap")).login()
            b.cmd(b"EXAMINE INBOX")
            lines, t = b.cmd(b"FETCH 1:* (ENVELOPE RFC822.SIZE)")
            self.assertIn(b"OK", t)
            self.assertEqual(sizes_of(lines), first)
            self.assertIn(b'"dropped"', b"".join(lines))
            lines, t = b.cmd(b"FETCH 1:* FAST")
            self.assertEqual(sizes_of(lines), first)
            lines, t = b.cmd(b"FETCH 1:* (BODYSTRUCTURE)")
            self.assertIn(b"OK", t)
            lines, t = b.cmd(b"FETCH 1:* ALL")
            self.assertEqual(sizes_of(lines), first)
            a.close()
            b.close()
        finally:
            srv.stop()
            srv.cleanup()


if __name__ == "__main__":
    unittest.main()
