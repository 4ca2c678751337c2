"""Small IMAP extensions on the wire: UNAUTHENTICATE (RFC 8437),
CREATE-SPECIAL-USE (RFC 6154) and REPLACE (RFC 8508), with their refusals.
Both backends."""
import re
import unittest

from roosttest import BACKENDS, SharedServer, backend_classes
from test_imap_rev2 import Raw

ALICE = (b"alice@example.org", b"alice-secret")
BOB = (b"bob@example.org", b"bob-secret")


class ExtBase(SharedServer):
    def raw(self, who=ALICE):
        r = Raw(self.srv.port("imap"))
        self.addCleanup(r.close)
        r.ok(b'LOGIN "%s" "%s"' % who)
        return r

    def test_unauthenticate(self):
        r = self.raw()
        u = r.ok(b"CAPABILITY")
        self.assertIn(b" UNAUTHENTICATE", u[0])
        r.ok(b"CREATE Una")
        r.ok(b'APPEND Una {22+}\r\nSubject: una\r\n\r\nbody\r\n')
        r.ok(b"ENABLE CONDSTORE IMAP4rev2")
        r.ok(b"SELECT Una")
        r.ok(b"STORE 1 +FLAGS.SILENT (\\Deleted)")
        u, t = r.cmd(b"UNAUTHENTICATE")
        self.assertRegex(t, rb"^t\d+ OK ")
        self.assertFalse(any(b"EXPUNGE" in ln for ln in u), u)
        # Not authenticated any more: the pre-login world.
        _, t = r.cmd(b"SELECT Una")
        self.assertIn(b"BAD", t)
        u = r.ok(b"CAPABILITY")
        self.assertIn(b"AUTH=", u[0])
        _, t = r.cmd(b"UNAUTHENTICATE")
        self.assertIn(b"BAD", t)
        # Someone else logs in on the same connection.
        r.ok(b'LOGIN "%s" "%s"' % BOB)
        u = r.ok(b'LIST "" Una')
        self.assertEqual(u, [])
        r.ok(b"UNAUTHENTICATE")
        # Alice again: her message was not expunged, and what she enabled
        # before is off (no MODSEQ in FETCH, \Recent rules of rev1).
        r.ok(b'LOGIN "%s" "%s"' % ALICE)
        r.ok(b"SELECT Una")
        u = r.ok(b"FETCH 1 (FLAGS)")
        self.assertIn(b"\\Deleted", u[0])
        self.assertNotIn(b"MODSEQ", u[0])
        u, t = r.cmd(b"SEARCH ALL")
        self.assertEqual(u, [b"* SEARCH 1\r\n"])
        _, t = r.cmd(b"UNAUTHENTICATE extra")
        self.assertIn(b"BAD", t)
        r.ok(b"LOGOUT")

    def test_create_special_use(self):
        r = self.raw()
        u = r.ok(b"CAPABILITY")
        self.assertIn(b" CREATE-SPECIAL-USE", u[0])
        r.ok(b"CREATE MyDrafts (USE (\\Drafts))")
        r.ok(b"CREATE Bin (USE (\\Trash \\Junk))")
        r.ok(b"CREATE Plain (USE ())")
        u = r.ok(b'LIST "" * RETURN (SPECIAL-USE)')
        text = b"".join(u)
        self.assertRegex(text, rb'\* LIST \([^)]*\\Drafts[^)]*\) "/" "?MyDrafts"?')
        self.assertRegex(text, rb'\* LIST \([^)]*\\Trash[^)]*\) "/" "?Bin"?')
        self.assertRegex(text, rb'\* LIST \([^)]*\\Junk[^)]*\) "/" "?Bin"?')
        plain = [ln for ln in u if b"Plain" in ln][0]
        self.assertNotRegex(plain, rb"\\(Drafts|Sent|Trash|Junk|Archive)")
        # Virtual or unknown uses: NO [USEATTR], nothing created.
        for bad in (b"\\All", b"\\Flagged", b"\\Bogus"):
            _, t = r.cmd(b"CREATE Virt (USE (%s))" % bad)
            self.assertRegex(t, rb"^t\d+ NO \[USEATTR\]")
        self.assertEqual(r.ok(b'LIST "" Virt'), [])
        # Malformed parameters: BAD.
        for bad in (b"CREATE X (USE \\Drafts)", b"CREATE X (FOO (\\Drafts))",
                    b"CREATE X (USE)", b"CREATE X (USE (\"\\Drafts\"))", b"CREATE X USE"):
            _, t = r.cmd(bad)
            self.assertIn(b"BAD", t, bad)
        self.assertEqual(r.ok(b'LIST "" X'), [])

    def count(self, r, box):
        u = r.ok(b"STATUS %s (MESSAGES)" % box)
        return int(re.search(rb"MESSAGES (\d+)", u[0]).group(1))

    def test_replace(self):
        r = self.raw()
        u = r.ok(b"CAPABILITY")
        self.assertIn(b" REPLACE", u[0])
        r.ok(b"CREATE Rep")
        r.ok(b"CREATE RepOther")
        for i in (1, 2):
            body = b"Subject: v%d\r\n\r\nversion %d\r\n" % (i, i)
            r.ok(b"APPEND Rep {%d+}\r\n%s" % (len(body), body))
        r.ok(b"SELECT Rep")
        new = b"Subject: v1 again\r\n\r\nversion 1, edited\r\n"
        u, t = r.cmd(b"REPLACE 1 Rep (\\Draft) {%d+}\r\n%s" % (len(new), new))
        self.assertRegex(t, rb"^t\d+ OK ")
        self.assertRegex(u[0], rb"^\* OK \[APPENDUID \d+ 3\]")
        self.assertIn(b"* 1 EXPUNGE\r\n", u)
        u = r.ok(b"UID FETCH 1:* (FLAGS BODY.PEEK[TEXT])")
        text = b"".join(u)
        self.assertNotIn(b"version 1\r\n", text)
        self.assertIn(b"version 1, edited", text)
        self.assertRegex(text, rb"UID 3 FLAGS \(\\Draft[ )]")
        # UID REPLACE into another mailbox, with a message past the
        # spooling threshold.
        big = b"Subject: big\r\n\r\n" + b"x" * 400000 + b"\r\n"
        u, t = r.cmd(b"UID REPLACE 2 RepOther {%d+}\r\n%s" % (len(big), big))
        self.assertRegex(t, rb"^t\d+ OK ")
        self.assertTrue(any(b"EXPUNGE" in ln for ln in u), u)
        self.assertEqual(self.count(r, b"RepOther"), 1)
        self.assertEqual(self.count(r, b"Rep"), 1)
        # Refusals leave both mailboxes as they were.
        small = b"Subject: no\r\n\r\nno\r\n"
        lit = b"{%d+}\r\n%s" % (len(small), small)
        _, t = r.cmd(b"UID REPLACE 999 RepOther " + lit)
        self.assertRegex(t, rb"^t\d+ NO ")
        _, t = r.cmd(b"REPLACE 1 NoSuchBox " + lit)
        self.assertRegex(t, rb"^t\d+ NO \[TRYCREATE\]")
        for bad in (b"REPLACE 5 RepOther ", b"REPLACE 1:2 RepOther ", b"REPLACE 1,2 RepOther ",
                    b"REPLACE 1 RepOther (\\Bogus ) "):
            _, t = r.cmd(bad + lit)
            self.assertIn(b"BAD", t, bad)
        _, t = r.cmd(b"REPLACE 1 RepOther")
        self.assertIn(b"BAD", t)
        r.ok(b"EXAMINE Rep")
        _, t = r.cmd(b"REPLACE 1 RepOther " + lit)
        self.assertRegex(t, rb"^t\d+ NO \[READ-ONLY\]")
        self.assertEqual(self.count(r, b"RepOther"), 1)
        self.assertEqual(self.count(r, b"Rep"), 1)


backend_classes(globals(), ExtBase, "TestImapExt_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
