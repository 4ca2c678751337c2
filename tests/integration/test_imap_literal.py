"""LITERAL+ and LITERAL- (RFC 7888) on the wire, raw protocol, both
backends. By default the server advertises LITERAL+ and takes a
non-synchronizing literal of any size its bounds allow; with [imap]
literal_minus = yes it advertises LITERAL- instead (never both, section 5)
and refuses a non-synchronizing literal over 4096 bytes with BAD [TOOBIG],
reading and dropping the literal so the next command is understood. A
synchronizing literal of any size still gets its continuation. Hostile
sizes (2^32, 2^64, thousands of digits) are refused without waiting for
the bytes or overflowing."""
import unittest

from roosttest import BACKENDS, backend_classes
from test_imap_raw import RawClients


def message(n):
    """An n-byte message."""
    head = b"From: a@example.org\r\nSubject: literal\r\n\r\n"
    return head + b"x" * (n - len(head))


class LiteralBase(RawClients):
    server_options = {"listeners": ("imap",)}

    def count(self, r, box):
        lines = self.ok(r, b"STATUS " + box + b" (MESSAGES)")
        return int(lines[0].split(b"MESSAGES ")[1].split(b")")[0])

    def caps(self, r):
        return self.ok(r, b"CAPABILITY")[0].split()


class LiteralPlusBase(LiteralBase):
    def test_capability(self):
        for login in (False, True):
            caps = self.caps(self.raw(login))
            self.assertIn(b"LITERAL+", caps)
            self.assertNotIn(b"LITERAL-", caps)

    def test_large_nonsync_append(self):
        r = self.raw()
        self.ok(r, b"CREATE Plus")
        msg = message(20000)
        r.send(b"a1 APPEND Plus {%d+}\r\n" % len(msg) + msg + b"\r\n")
        _, tagged = r.until(b"a1")
        self.assertIn(b"a1 OK", tagged)
        self.assertEqual(self.count(r, b"Plus"), 1)


class LiteralMinusBase(LiteralBase):
    server_options = {"listeners": ("imap",), "conf": {"imap": {"literal_minus": "yes"}}}

    def test_capability(self):
        for login in (False, True):
            caps = self.caps(self.raw(login))
            self.assertIn(b"LITERAL-", caps)
            self.assertNotIn(b"LITERAL+", caps)

    def test_small_nonsync(self):
        r = self.raw(login=False)
        r.send(b"a1 LOGIN {17+}\r\nalice@example.org {12+}\r\nalice-secret\r\n")
        _, tagged = r.until(b"a1")
        self.assertIn(b"a1 OK", tagged)
        self.ok(r, b"CREATE Small")
        msg = message(4096)
        r.send(b"a2 APPEND Small {4096+}\r\n" + msg + b"\r\n")
        _, tagged = r.until(b"a2")
        self.assertIn(b"a2 OK", tagged)
        # literal8 in the non-synchronizing form too (section 6)
        r.send(b"a3 APPEND Small ~{4096+}\r\n" + msg + b"\r\n")
        _, tagged = r.until(b"a3")
        self.assertIn(b"a3 OK", tagged)
        self.assertEqual(self.count(r, b"Small"), 2)

    def test_large_nonsync_refused(self):
        r = self.raw()
        self.ok(r, b"CREATE Big")
        for n, pre in ((4097, b"{"), (100000, b"{"), (5000, b"~{")):
            msg = message(n)
            # the literal and the next command in one go: the literal must
            # be dropped, not taken for commands
            r.send(b"a1 APPEND Big " + pre + b"%d+}\r\n" % n + msg + b"\r\na2 NOOP\r\n")
            _, tagged = r.until(b"a1")
            self.assertEqual(tagged.split(b" ", 3)[1:3], [b"BAD", b"[TOOBIG]"], tagged)
            _, tagged = r.until(b"a2")
            self.assertIn(b"a2 OK", tagged)
        # not only APPEND: any command's literal
        r.send(b"a3 SEARCH TEXT {5000+}\r\n" + b"y" * 5000 + b"\r\na4 NOOP\r\n")
        _, tagged = r.until(b"a3")
        self.assertIn(b"a3 BAD [TOOBIG]", tagged)
        _, tagged = r.until(b"a4")
        self.assertIn(b"a4 OK", tagged)
        self.assertEqual(self.count(r, b"Big"), 0)

    def test_large_sync_accepted(self):
        r = self.raw()
        self.ok(r, b"CREATE Sync")
        msg = message(300000)
        r.send(b"a1 APPEND Sync {%d}\r\n" % len(msg))
        self.assertTrue(r.line().startswith(b"+ "))
        r.send(msg + b"\r\n")
        _, tagged = r.until(b"a1")
        self.assertIn(b"a1 OK", tagged)
        self.assertEqual(self.count(r, b"Sync"), 1)

    def test_multiappend_second_literal_refused(self):
        # The first message is large enough to be spooled to a file; the
        # second, non-synchronizing and over 4096 bytes, refuses the
        # whole MULTIAPPEND: nothing is stored.
        r = self.raw()
        self.ok(r, b"CREATE Multi")
        first = message(300000)
        second = message(8000)
        r.send(b"a1 APPEND Multi {%d}\r\n" % len(first))
        self.assertTrue(r.line().startswith(b"+ "))
        r.send(first + b" {%d+}\r\n" % len(second) + second + b"\r\na2 NOOP\r\n")
        _, tagged = r.until(b"a1")
        self.assertIn(b"a1 BAD [TOOBIG]", tagged)
        _, tagged = r.until(b"a2")
        self.assertIn(b"a2 OK", tagged)
        self.assertEqual(self.count(r, b"Multi"), 0)

    def test_hostile_sizes(self):
        r = self.raw()
        for size in (b"4294967296", b"18446744073709551616", b"9" * 2000):
            r2 = self.raw()
            r2.send(b"h1 APPEND INBOX {" + size + b"+}\r\n")
            _, tagged = r2.until(b"h1")
            self.assertRegex(tagged, rb"^h1 BAD \[TOOBIG\]")
        # zero bytes is a literal like any other
        r.send(b"z1 LOGOUT {0+}\r\n\r\n")
        _, tagged = r.until(b"z1")
        self.assertIn(b"z1 BAD", tagged)
        self.ok(r, b"NOOP")
        self.assertIn(b"LITERAL-", self.caps(self.raw()))


backend_classes(globals(), LiteralPlusBase, "TestImapLiteralPlus_%s", BACKENDS)
backend_classes(globals(), LiteralMinusBase, "TestImapLiteralMinus_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
