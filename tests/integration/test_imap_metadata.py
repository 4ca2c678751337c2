"""METADATA and METADATA-SERVER (RFC 5464) over raw IMAP on every backend:
SETMETADATA and GETMETADATA on mailboxes and the server, DEPTH and MAXSIZE
(LONGENTRIES), NIL for an entry without a value and to remove one, the
limits ([METADATA MAXSIZE n], [METADATA TOOMANY]), entries kept across a
restart, moved by RENAME and gone with DELETE; hostile arguments BAD."""
import re
import unittest

from roosttest import BACKENDS, backend_classes, own_server
from test_imap_raw import Raw

MAX_VALUE = 16 * 1024     # STORAGE_METADATA_MAX_VALUE
MAX_ENTRIES = 256         # STORAGE_METADATA_MAX_ENTRIES


class MetadataBase:
    backend = "lmdb"

    def setUp(self):
        self.srv = own_server(self, backend=self.backend, listeners=("imap",))
        self.c = self.client()

    def client(self):
        c = Raw(self.srv.port("imap")).login()
        self.addCleanup(c.close)
        return c

    def ok(self, text):
        lines, t = self.c.cmd(text)
        self.assertRegex(t, rb"^t\d+ OK", (text, t))
        return lines, t

    def status(self, text, want):
        lines, t = self.c.cmd(text)
        self.assertRegex(t, rb"^t\d+ " + want, (text[:200], t))
        return t

    def get(self, text):
        """{entry: value or None} of GETMETADATA text's METADATA responses."""
        lines, t = self.ok(b"GETMETADATA " + text)
        out = {}
        for l in lines:
            if not l.startswith(b"* METADATA "):
                continue
            body = l[l.index(b"(") + 1:l.rindex(b")")]
            toks = re.findall(rb'"((?:[^"\\]|\\.)*)"|\{\d+\}\r\n|(NIL)|([^ ()"]+)', body)
            # literals are inlined by Raw.line(): take them apart by hand
            out.update(self._pairs(body))
        return out, t

    @staticmethod
    def _pairs(body):
        items, i = [], 0
        while i < len(body):
            if body[i:i + 1] == b" ":
                i += 1
            elif body[i:i + 1] == b'"':
                j = i + 1
                s = b""
                while body[j:j + 1] != b'"':
                    if body[j:j + 1] == b"\\":
                        j += 1
                    s += body[j:j + 1]
                    j += 1
                items.append(s.decode())
                i = j + 1
            elif body[i:i + 1] == b"{":
                j = body.index(b"}", i)
                n = int(body[i + 1:j])
                items.append(body[j + 3:j + 3 + n].decode())
                i = j + 3 + n
            else:
                j = i
                while j < len(body) and body[j:j + 1] != b" ":
                    j += 1
                tok = body[i:j].decode()
                items.append(None if tok == "NIL" else tok)
                i = j
        return dict(zip(items[0::2], items[1::2]))

    def test_capability(self):
        lines, t = self.ok(b"CAPABILITY")
        caps = lines[0].split()
        self.assertIn(b"METADATA", caps)
        self.assertIn(b"METADATA-SERVER", caps)

    def test_utf8_mailbox_name(self):
        """After ENABLE UTF8=ACCEPT the METADATA response names the mailbox
        in UTF-8, as every other response of that session does."""
        self.ok(b"ENABLE UTF8=ACCEPT")
        name = "Caf\u00e9".encode()
        self.ok(b'CREATE "' + name + b'"')
        self.ok(b'SETMETADATA "' + name + b'" (/private/comment "x")')
        lines, _ = self.ok(b'GETMETADATA "' + name + b'" /private/comment')
        self.assertEqual(lines, [b'* METADATA "' + name + b'" ("/private/comment" "x")\r\n'])

    def test_set_get_depth_maxsize(self):
        value = "caf\u00e9 {braces} \"quoted\"".encode()
        self.ok(b'SETMETADATA INBOX (/private/comment "hello" /shared/Comment {%d+}\r\n%s)'
                % (len(value), value))
        got, t = self.get(b"INBOX /private/comment")
        self.assertEqual(got, {"/private/comment": "hello"})
        got, t = self.get(b"INBOX (/shared/comment /private/nothing)")
        self.assertEqual(got, {"/shared/comment": value.decode(), "/private/nothing": None})
        self.ok(b'SETMETADATA INBOX (/private/vendor/a/b "1" /private/vendor/a/c/d "2")')
        got, t = self.get(b"(DEPTH 1) INBOX /private/vendor/a")
        self.assertEqual(got, {"/private/vendor/a": None, "/private/vendor/a/b": "1"})
        got, t = self.get(b"(DEPTH infinity) INBOX /private")
        self.assertEqual(set(got), {"/private/comment", "/private/vendor/a/b",
                                    "/private/vendor/a/c/d"})
        got, t = self.get(b"(MAXSIZE 3 DEPTH infinity) INBOX /private")
        self.assertEqual(got, {"/private/vendor/a/b": "1", "/private/vendor/a/c/d": "2"})
        self.assertIn(b"[METADATA LONGENTRIES 5]", t)
        # NIL removes; removing what is absent is fine
        self.ok(b"SETMETADATA INBOX (/private/comment NIL /private/never NIL)")
        got, t = self.get(b"INBOX /private/comment")
        self.assertEqual(got, {"/private/comment": None})

    def test_server_entries_and_lifecycle(self):
        self.ok(b'SETMETADATA "" (/shared/comment "the server")')
        got, t = self.get(b'"" /shared/comment')
        self.assertEqual(got, {"/shared/comment": "the server"})
        got, t = self.get(b"INBOX /shared/comment")
        self.assertEqual(got, {"/shared/comment": None})
        self.ok(b"CREATE Box")
        self.ok(b'SETMETADATA Box (/private/color "red")')
        self.ok(b"RENAME Box Moved")
        got, t = self.get(b"Moved /private/color")
        self.assertEqual(got, {"/private/color": "red"})
        self.ok(b"CREATE Box")
        got, t = self.get(b"Box /private/color")
        self.assertEqual(got, {"/private/color": None})
        # across a restart
        self.c.close()
        self.srv.stop()
        self.srv.launch()
        self.c = self.client()
        got, t = self.get(b"Moved /private/color")
        self.assertEqual(got, {"/private/color": "red"})
        self.ok(b"DELETE Moved")
        self.ok(b"CREATE Moved")
        got, t = self.get(b"Moved /private/color")
        self.assertEqual(got, {"/private/color": None})
        got, t = self.get(b'"" /shared/comment')
        self.assertEqual(got, {"/shared/comment": "the server"})

    def test_limits(self):
        big = b"v" * (MAX_VALUE + 1)
        t = self.status(b"SETMETADATA INBOX (/private/big {%d+}\r\n%s)" % (len(big), big),
                        b"NO")
        self.assertIn(b"[METADATA MAXSIZE %d]" % MAX_VALUE, t)
        pairs = b" ".join(b'/private/n%d "x"' % i for i in range(MAX_ENTRIES + 1))
        t = self.status(b"SETMETADATA INBOX (" + pairs + b")", b"NO")
        self.assertIn(b"[METADATA TOOMANY]", t)
        got, t = self.get(b"(DEPTH infinity) INBOX /private")
        self.assertEqual(got, {})      # all or nothing
        pairs = b" ".join(b'/private/n%d "x"' % i for i in range(MAX_ENTRIES))
        self.ok(b"SETMETADATA INBOX (" + pairs + b")")
        t = self.status(b'SETMETADATA INBOX (/private/more "x")', b"NO")
        self.assertIn(b"[METADATA TOOMANY]", t)

    def test_hostile(self):
        for bad in (b"SETMETADATA INBOX (/private/x)", b"SETMETADATA INBOX /private/x",
                    b'SETMETADATA INBOX (/other/x "v")', b'SETMETADATA INBOX (/private "v")',
                    b'SETMETADATA INBOX (/private/a* "v")', b'SETMETADATA INBOX (/private//a "v")',
                    b"SETMETADATA INBOX (/private/x (1))", b"SETMETADATA INBOX (/private/x atom)",
                    b"SETMETADATA INBOX ()", b"GETMETADATA (DEPTH 2) INBOX /private",
                    b"GETMETADATA (MAXSIZE -1) INBOX /private", b"GETMETADATA (FOO 1) INBOX /p",
                    b"GETMETADATA INBOX", b"GETMETADATA INBOX ()", b"GETMETADATA INBOX /bogus",
                    b'SETMETADATA INBOX ("/private/\x7fx" "v")'):
            self.status(bad, b"BAD")
        t = self.status(b'SETMETADATA Nope (/private/x "v")', b"NO")
        self.assertIn(b"[NONEXISTENT]", t)
        t = self.status(b"GETMETADATA Nope /private/x", b"NO")
        self.assertIn(b"[NONEXISTENT]", t)
        self.status(b'SETMETADATA INBOX (/private/x "v\x00")', b"BAD")
        self.ok(b"NOOP")


backend_classes(globals(), MetadataBase, "TestImapMetadata_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
