"""Small IMAP extensions on the wire: UNAUTHENTICATE (RFC 8437) and
CREATE-SPECIAL-USE (RFC 6154), with their refusals. Both backends."""
import re
import unittest

from roosttest import BACKENDS, SharedServer
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


for _backend in BACKENDS:
    _name = "TestImapExt_" + _backend
    globals()[_name] = type(_name, (ExtBase, unittest.TestCase), {"backend": _backend})


if __name__ == "__main__":
    unittest.main()
