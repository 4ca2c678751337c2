"""IMAP4rev2 (RFC 9051) and UTF8=ACCEPT (RFC 6855): a session that enabled
them drops \\Recent (RECENT responses, FETCH FLAGS, SELECT's UNSEEN code),
gets SELECT's LIST line, ESEARCH for SEARCH, UTF-8 mailbox names (while an
IMAP4rev1 session beside it still sees modified UTF-7), STATUS DELETED,
and APPEND's UTF8 (literal8) form; hostile names (bad UTF-8, controls) are
refused. Raw protocol and imaplib, both backends."""
import imaplib
import re
import unittest

import test_imap_raw
from roosttest import BACKENDS, SharedServer, backend_classes

USER = "alice@example.org"
PASS = "alice-secret"


def msg(i, subject="hello"):
    return ("From: bob@example.org\r\nTo: alice@example.org\r\nSubject: %s %d\r\n\r\n"
            "body %d\r\n" % (subject, i, i)).encode()


class Raw(test_imap_raw.Raw):
    """test_imap_raw's client with ok(): a command that must answer OK,
    its untagged lines returned."""

    def ok(self, text):
        u, r = self.cmd(text)
        assert r.split()[1] == b"OK", (text, r)
        return u


class Rev2Base(SharedServer):
    def raw(self):
        r = Raw(self.srv.port("imap"))
        self.addCleanup(r.close)
        r.login()
        return r

    def fill(self, box, n):
        c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"))
        c.login(USER, PASS)
        c.create(box)
        for i in range(n):
            c.append(box, None, None, msg(i))
        c.logout()

    def test_capability_and_enable(self):
        r = self.raw()
        u = r.ok(b"CAPABILITY")
        self.assertIn(b" IMAP4rev1 IMAP4rev2 ", u[0])
        self.assertIn(b" UTF8=ACCEPT", u[0])
        u = r.ok(b"ENABLE IMAP4rev2")
        self.assertEqual(u, [b"* ENABLED IMAP4rev2\r\n"])
        # Once only (RFC 5161: ENABLED lists what this command enabled).
        u = r.ok(b"ENABLE IMAP4rev2 UTF8=ACCEPT")
        self.assertEqual(u, [b"* ENABLED UTF8=ACCEPT\r\n"])
        u = r.ok(b"ENABLE X-UNKNOWN")
        self.assertEqual(u, [b"* ENABLED\r\n"])

    def test_no_recent(self):
        self.fill("RecentBox", 3)
        old = self.raw()
        new = self.raw()
        new.ok(b"ENABLE IMAP4rev2")
        u = new.ok(b"SELECT RecentBox")
        text = b"".join(u)
        self.assertIn(b"* 3 EXISTS", text)
        self.assertNotIn(b"RECENT", text)
        self.assertNotIn(b"[UNSEEN", text)
        self.assertIn(b'* LIST () "/" "RecentBox"\r\n', u)
        self.assertIn(b"[UIDVALIDITY", text)
        self.assertIn(b"[UIDNEXT", text)
        self.assertIn(b"[PERMANENTFLAGS", text)
        u = new.ok(b"FETCH 1:* FLAGS")
        self.assertEqual(len(u), 3)
        for ln in u:
            self.assertNotIn(b"\\Recent", ln)
        # The rev1 session beside it keeps the old rules.
        u = old.ok(b"EXAMINE RecentBox")
        self.assertTrue(any(re.match(rb"\* \d+ RECENT", ln) for ln in u), u)
        # A new message: EXISTS without RECENT.
        c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"))
        c.login(USER, PASS)
        c.append("RecentBox", None, None, msg(9))
        c.logout()
        u = new.ok(b"NOOP")
        self.assertIn(b"* 4 EXISTS\r\n", u)
        self.assertFalse(any(b"RECENT" in ln for ln in u), u)
        u = new.ok(b"FETCH 4 FLAGS")
        self.assertNotIn(b"\\Recent", u[0])
        # STORE of \Recent is refused as in rev1; SEARCH RECENT still parses.
        _, r = new.cmd(b"STORE 1 +FLAGS (\\Recent)")
        self.assertIn(b"BAD", r)
        new.ok(b"SEARCH RECENT")

    def test_esearch(self):
        self.fill("SearchBox", 4)
        r = self.raw()
        r.ok(b"ENABLE IMAP4rev2")
        r.ok(b"SELECT SearchBox")
        r.ok(b"STORE 2,4 +FLAGS.SILENT (\\Flagged)")
        u, t = r.cmd(b"SEARCH FLAGGED")
        tag = t.split()[0]
        self.assertEqual(u, [b'* ESEARCH (TAG "%s") ALL 2,4\r\n' % tag])
        u, t = r.cmd(b"UID SEARCH ALL")
        tag = t.split()[0]
        self.assertRegex(u[0], rb'^\* ESEARCH \(TAG "%s"\) UID ALL \d+:\d+\r\n$' % tag)
        u, t = r.cmd(b"SEARCH SUBJECT nothing-matches-this")
        tag = t.split()[0]
        self.assertEqual(u, [b'* ESEARCH (TAG "%s")\r\n' % tag])
        self.assertFalse(any(ln.startswith(b"* SEARCH") for ln in u))
        # Explicit RETURN options still apply.
        u, t = r.cmd(b"SEARCH RETURN (COUNT) ALL")
        self.assertIn(b" COUNT 4", u[0])
        # SORT is not SEARCH: its answer is unchanged.
        u = r.ok(b"SORT (SUBJECT) UTF-8 ALL")
        self.assertTrue(u[0].startswith(b"* SORT"), u)

    def test_utf8_names(self):
        rev1 = self.raw()
        r = self.raw()
        r.ok(b"ENABLE IMAP4rev2")
        name = "Entwürfe-ß".encode()
        r.ok(b'CREATE "%s"' % name)
        u = r.ok(b'LIST "" "Entw*"')
        self.assertIn(b'* LIST (\\HasNoChildren) "/" "%s"\r\n' % name, u)
        # The same mailbox in modified UTF-7 for the rev1 session.
        u = rev1.ok(b'LIST "" "Entw*"')
        self.assertIn(b"Entw&APw-rfe-&AN8-", b"".join(u))
        # '&' is an ordinary character in a UTF-8 name.
        r.ok(b'CREATE "A&B"')
        self.assertIn(b'"A&B"', b"".join(r.ok(b'LIST "" "A&B"')))
        self.assertIn(b'"A&-B"', b"".join(rev1.ok(b'LIST "" "A&-B"')))
        u = r.ok(b'SELECT "%s"' % name)
        self.assertIn(b'* LIST () "/" "%s"\r\n' % name, u)
        u = r.ok(b'STATUS "%s" (MESSAGES)' % name)
        self.assertEqual(u, [b'* STATUS "%s" (MESSAGES 0)\r\n' % name])
        # Hostile names: invalid UTF-8, a control character.
        _, t = r.cmd(b'CREATE "bad\xc3\x28name"')
        self.assertRegex(t, rb"^t\d+ NO ")
        _, t = r.cmd(b'CREATE "bad\xff"')
        self.assertRegex(t, rb"^t\d+ NO ")
        _, t = r.cmd(b"CREATE {4+}\r\nab\x01c")
        self.assertRegex(t, rb"^t\d+ (NO|BAD) ")
        # The session still works.
        r.ok(b"NOOP")

    def test_status_deleted(self):
        self.fill("DelBox", 3)
        r = self.raw()
        r.ok(b"SELECT DelBox")
        r.ok(b"STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        r.ok(b"UNSELECT")
        u = r.ok(b"STATUS DelBox (MESSAGES DELETED SIZE)")
        self.assertRegex(u[0], rb"^\* STATUS \"DelBox\" \(MESSAGES 3 SIZE \d+ DELETED 2\)\r\n$")
        _, t = r.cmd(b"STATUS DelBox (DELETED BOGUS)")
        self.assertIn(b"BAD", t)

    def test_append_utf8(self):
        r = self.raw()
        body = "From: Jürgen <j@example.org>\r\nSubject: Grüße\r\n\r\nHallo\r\n".encode()
        # Without ENABLE UTF8=ACCEPT the UTF8 form is refused.
        _, t = r.cmd(b"APPEND INBOX UTF8 (~{%d+}\r\n%s)" % (len(body), body))
        self.assertIn(b"BAD", t)
        r.ok(b"ENABLE UTF8=ACCEPT")
        _, t = r.cmd(b"APPEND INBOX (\\Seen) UTF8 (~{%d+}\r\n%s)" % (len(body), body))
        m = re.search(rb"\[APPENDUID \d+ (\d+)\]", t)
        self.assertTrue(m, t)
        uid = m.group(1)
        r.ok(b"SELECT INBOX")
        u = r.ok(b"UID FETCH %s (FLAGS BODY.PEEK[])" % uid)
        self.assertIn(body, u[0])
        self.assertIn(b"\\Seen", u[0])
        # Malformed: UTF8 with a plain literal, with two, with none.
        for bad in (b"APPEND INBOX UTF8 ({5+}\r\nhello)",
                    b"APPEND INBOX UTF8 (~{1+}\r\na ~{1+}\r\nb)",
                    b"APPEND INBOX UTF8 ()",
                    b"APPEND INBOX UTF8"):
            _, t = r.cmd(bad)
            self.assertIn(b"BAD", t, bad)

    def test_imaplib_rev2(self):
        self.fill("LibBox", 2)
        c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"))
        c.login(USER, PASS)
        typ, _ = c.enable("IMAP4rev2")
        self.assertEqual(typ, "OK")
        self.assertIn(b"IMAP4rev2", c.untagged_responses["ENABLED"][0])
        typ, _ = c.select("LibBox")
        self.assertEqual(typ, "OK")
        self.assertNotIn("RECENT", c.untagged_responses)
        typ, data = c.search(None, "ALL")
        self.assertEqual(typ, "OK")
        typ, es = c._untagged_response(typ, data, "ESEARCH")
        self.assertRegex(es[0], rb'\(TAG "\w+"\) ALL 1:2')
        c.logout()

    def test_imaplib_utf8_accept(self):
        c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"))
        c.login(USER, PASS)
        typ, _ = c.enable("UTF8=ACCEPT")  # imaplib then speaks UTF-8
        self.assertEqual(typ, "OK")
        typ, _ = c.create('"Größe"')
        self.assertEqual(typ, "OK")
        typ, data = c.list('""', '"Gr*"')
        self.assertEqual(typ, "OK")
        self.assertIn('"Größe"', data[0].decode())
        typ, _ = c.append('"Größe"', None, None, "Subject: Tschüß\r\n\r\nx\r\n".encode())
        self.assertEqual(typ, "OK")
        typ, data = c.status('"Größe"', "(MESSAGES)")
        self.assertIn("MESSAGES 1", data[0].decode())
        c.logout()


backend_classes(globals(), Rev2Base, "TestImapRev2_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
