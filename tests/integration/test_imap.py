"""IMAP with Python's imaplib: every command and its error cases, on both
storage backends."""
import imaplib
import re
import socket
import ssl
import time
import unittest

from roosttest import BACKENDS, SharedServer, backend_classes

ALICE = ("alice@example.org", "alice-secret")

MSG1 = (b"From: Ann Example <ann@example.org>\r\n"
        b"To: Alice <alice@example.org>\r\n"
        b"Cc: carol@example.org\r\n"
        b"Subject: Hello there\r\n"
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
        b"Message-ID: <1@example.org>\r\n"
        b"\r\n"
        b"Plain body with the word banana.\r\n")

MSG2 = (b"From: Bob <bob@example.org>\r\n"
        b"To: alice@example.org\r\n"
        b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"Date: Tue, 1 Mar 2022 10:00:00 +0000\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
        b"\r\n"
        b"preamble\r\n"
        b"--XX\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"first part cherry\r\n"
        b"--XX\r\n"
        b"Content-Type: text/html\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        b"PGI+a2l3aTwvYj4=\r\n"
        b"--XX--\r\n")


def connect(srv, login=True):
    c = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=20)
    if login:
        c.login(*ALICE)
    return c


def status_of(c, *args):
    """Run a command; return its tagged status even when imaplib raises on BAD."""
    try:
        return c._simple_command(*args)[0]
    except imaplib.IMAP4.error as e:
        m = re.search(r"(BAD|NO)", str(e))
        return m.group(1) if m else "ERROR"


class ImapBase(SharedServer):
    backend = "lmdb"
    server_options = {"listeners": ("imap", "imaps")}

    def fresh_box(self, c, name, msgs=(MSG1, MSG2)):
        typ, _ = c.create(name)
        self.assertEqual(typ, "OK")
        for m in msgs:
            typ, _ = c.append(name, None, None, m)
            self.assertEqual(typ, "OK")
        return name

    # -- any state --
    def test_greeting_capability_noop_logout(self):
        c = connect(self.srv, login=False)
        self.assertIn(b"[CAPABILITY", c.welcome)
        typ, data = c.capability()
        caps = data[0].split()
        for cap in (b"IMAP4rev1", b"IDLE", b"UIDPLUS", b"MOVE", b"LITERAL+", b"SASL-IR",
                    b"STARTTLS", b"AUTH=PLAIN", b"NAMESPACE", b"ESEARCH", b"SPECIAL-USE",
                    b"LIST-EXTENDED", b"LIST-STATUS", b"STATUS=SIZE", b"MULTIAPPEND",
                    b"UNSELECT", b"ENABLE", b"CHILDREN", b"ID"):
            self.assertIn(cap, caps)
        self.assertTrue(any(x.startswith(b"APPENDLIMIT=") for x in caps))
        self.assertEqual(c.noop()[0], "OK")
        typ, data = c.logout()
        self.assertEqual(typ, "BYE")

    def test_login_failures_and_state_errors(self):
        c = connect(self.srv, login=False)
        with self.assertRaises(imaplib.IMAP4.error):
            c.select("INBOX")
        c2 = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=20)
        with self.assertRaises(imaplib.IMAP4.error) as e:
            c2.login("alice@example.org", "wrong-password")
        self.assertIn("AUTHENTICATIONFAILED", str(e.exception))
        c2.shutdown()
        c.login(*ALICE)
        # already authenticated (imaplib refuses to send it: go raw)
        c.state = "NONAUTH"
        self.assertEqual(status_of(c, "LOGIN", "a", "b"), "BAD")
        self.assertEqual(status_of(c, "STARTTLS"), "BAD")
        c.state = "AUTH"
        # not selected
        c.state = "SELECTED"
        self.assertEqual(status_of(c, "FETCH", "1", "FLAGS"), "BAD")
        self.assertEqual(status_of(c, "UID", "FETCH", "1", "FLAGS"), "BAD")
        c.state = "AUTH"
        c.logout()

    def test_authenticate_plain_and_sasl_ir(self):
        c = connect(self.srv, login=False)
        typ, _ = c.authenticate("PLAIN", lambda _: b"\0alice@example.org\0alice-secret")
        self.assertEqual(typ, "OK")
        self.assertEqual(c.state, "AUTH")
        c.logout()
        # SASL-IR, raw
        import base64
        s = socket.create_connection(("127.0.0.1", self.srv.port("imap")), timeout=20)
        f = s.makefile("rwb")
        f.readline()
        ir = base64.b64encode(b"\0alice@example.org\0alice-secret")
        f.write(b"a AUTHENTICATE PLAIN " + ir + b"\r\n")
        f.flush()
        self.assertTrue(f.readline().startswith(b"a OK"))
        # cancelled exchange
        f.write(b"b LOGOUT\r\n")
        f.flush()
        s.close()
        s = socket.create_connection(("127.0.0.1", self.srv.port("imap")), timeout=20)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"a AUTHENTICATE PLAIN\r\n")
        f.flush()
        self.assertTrue(f.readline().startswith(b"+"))
        f.write(b"*\r\n")
        f.flush()
        self.assertTrue(f.readline().startswith(b"a BAD"))
        f.write(b"b AUTHENTICATE FOO\r\n")
        f.flush()
        self.assertTrue(f.readline().startswith(b"b NO"))
        s.close()

    def test_id_enable_namespace(self):
        c = connect(self.srv)
        typ, data = c.xatom("ID", '("name" "test")')
        self.assertEqual(typ, "OK")
        self.assertIn(b"Roost", c.untagged_responses.get("ID", [b""])[0])
        typ, data = c.xatom("ENABLE", "CONDSTORE")
        self.assertEqual(typ, "OK")
        typ, data = c.namespace()
        self.assertEqual(typ, "OK")
        # personal, other users' mailboxes and the shared ones (storage_acl.c)
        self.assertEqual(data[0], b'(("" "/")) (("Other Users/" "/")) (("Shared/" "/"))')
        c.logout()

    # -- mailboxes --
    def test_special_use_folders_and_list(self):
        c = connect(self.srv)
        typ, data = c.list()
        self.assertEqual(typ, "OK")
        text = b"\n".join(data)
        for name, attr in ((b"Drafts", b"\\Drafts"), (b"Sent", b"\\Sent"),
                           (b"Trash", b"\\Trash"), (b"Junk", b"\\Junk"),
                           (b"Archive", b"\\Archive")):
            self.assertRegex(text, re.compile(rb"\([^)]*" + re.escape(attr) + rb"[^)]*\) \"/\" \"?"
                                              + name))
        self.assertIn(b"INBOX", text)
        typ, data = c.list('""', '""')
        self.assertEqual(data[0], b'(\\Noselect) "/" ""')
        # LIST-EXTENDED special-use selection
        typ, data = c._simple_command("LIST", "(SPECIAL-USE)", '""', "*")
        self.assertEqual(typ, "OK")
        lines = c.untagged_responses.pop("LIST", [])
        self.assertEqual(len(lines), 5, lines)
        # LIST-STATUS
        typ, data = c._simple_command("LIST", '""', "INBOX", "RETURN", "(STATUS (MESSAGES UIDNEXT SIZE))")
        self.assertEqual(typ, "OK")
        st = c.untagged_responses.pop("STATUS", [])
        self.assertTrue(st and b"MESSAGES" in st[0] and b"SIZE" in st[0], st)
        c.logout()

    def test_create_delete_rename_subscribe(self):
        c = connect(self.srv)
        self.assertEqual(c.create("Work/Projects/Roost")[0], "OK")
        self.assertEqual(c.create("Work")[0], "NO")           # exists (as parent)
        typ, data = c.list('""', "Work/*")
        self.assertEqual(typ, "OK")
        self.assertTrue(any(b"Work/Projects/Roost" in d for d in data), data)
        typ, data = c.list('""', "Work/%")
        self.assertTrue(any(b"\\HasChildren" in d and b"Work/Projects" in d for d in data), data)
        typ, data = c.rename("Work", "Job")
        self.assertEqual(typ, "OK")
        typ, data = c.list('""', "Job/*")
        self.assertTrue(any(b"Job/Projects/Roost" in d for d in data), data)
        self.assertEqual(c.rename("Nope", "Nope2")[0], "NO")
        self.assertEqual(c.subscribe("Job/Projects")[0], "OK")
        typ, data = c.lsub('""', "Job/*")
        self.assertTrue(any(b"Job/Projects" in d for d in data), data)
        typ, data = c._simple_command("LIST", "(SUBSCRIBED)", '""', '"Job/*"')
        lines = c.untagged_responses.pop("LIST", [])
        self.assertTrue(any(b"\\Subscribed" in d for d in lines), lines)
        self.assertEqual(c.unsubscribe("Job/Projects")[0], "OK")
        self.assertEqual(c.delete("Job/Projects/Roost")[0], "OK")
        self.assertEqual(c.delete("INBOX")[0], "NO")
        self.assertEqual(c.delete("Nope")[0], "NO")
        # international names in modified UTF-7
        self.assertEqual(c.create("&AMk-t&AOk-")[0], "OK")
        typ, data = c.list('""', "&AMk-*")
        self.assertTrue(any(b"&AMk-t&AOk-" in d for d in data), data)
        self.assertEqual(c.create("bad&name")[0], "NO")
        c.logout()

    def test_select_examine_status(self):
        c = connect(self.srv)
        box = self.fresh_box(c, "SelBox")
        typ, data = c.select(box)
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0], b"2")
        for key in ("FLAGS", "UIDVALIDITY", "UIDNEXT", "RECENT", "PERMANENTFLAGS"):
            self.assertIn(key, c.untagged_responses)
        self.assertEqual(c.untagged_responses["RECENT"][-1], b"2")
        self.assertEqual(c.untagged_responses["READ-WRITE"], [b""])
        c.close()
        typ, data = c.select(box, readonly=True)
        self.assertEqual(typ, "OK")
        self.assertIn("READ-ONLY", c.untagged_responses)
        # RECENT claimed by the first SELECT
        self.assertEqual(c.untagged_responses["RECENT"][-1], b"0")
        typ, data = c.store("1", "+FLAGS", "\\Seen")
        self.assertEqual(typ, "NO")
        c.unselect() if hasattr(c, "unselect") else c._simple_command("UNSELECT")
        typ, data = c.status(box, "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE)")
        self.assertEqual(typ, "OK")
        m = re.search(rb"MESSAGES (\d+).*UIDNEXT (\d+).*UNSEEN (\d+) SIZE (\d+)", data[0])
        self.assertIsNotNone(m, data)
        self.assertEqual(int(m.group(1)), 2)
        self.assertEqual(int(m.group(3)), 2)
        self.assertEqual(int(m.group(4)), len(MSG1) + len(MSG2))
        self.assertEqual(c.status("NoSuchBox", "(MESSAGES)")[0], "NO")
        self.assertEqual(status_of(c, "STATUS", box, "(BOGUS)"), "BAD")
        self.assertEqual(c.select("NoSuchBox")[0], "NO")
        self.assertEqual(c.state, "AUTH")
        c.logout()

    def test_append_variants(self):
        c = connect(self.srv)
        c.create("AppBox")
        typ, data = c.append("AppBox", "(\\Flagged $Work)", '"14-Jul-2021 12:34:56 +0200"', MSG1)
        self.assertEqual(typ, "OK")
        m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
        self.assertIsNotNone(m, data)
        uid = m.group(2)
        typ, data = c.append("NoSuchBox", None, None, MSG1)
        self.assertEqual(typ, "NO")
        self.assertIn(b"TRYCREATE", data[0])
        # MULTIAPPEND, non-synchronizing literals
        s = socket.create_connection(("127.0.0.1", self.srv.port("imap")), timeout=20)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"a LOGIN alice@example.org alice-secret\r\n")
        f.flush()
        f.readline()
        f.write(b"b APPEND AppBox (\\Seen) {%d+}\r\n%s {%d+}\r\n%s\r\n"
                % (len(MSG1), MSG1, len(MSG2), MSG2))
        f.flush()
        line = f.readline()
        self.assertRegex(line, rb"^b OK \[APPENDUID \d+ \d+:\d+\]")
        f.write(b"c APPEND AppBox {0}\r\n")
        f.flush()
        line = f.readline()
        if line.startswith(b"+"):
            f.write(b"\r\n")
            f.flush()
            line = f.readline()
        self.assertTrue(line.startswith(b"c NO"), line)
        # MULTIAPPEND is atomic: the empty second message fails them all
        f.write(b"d APPEND AppBox {%d+}\r\n%s {0+}\r\n\r\n" % (len(MSG1), MSG1))
        f.flush()
        self.assertTrue(f.readline().startswith(b"d NO"))
        s.close()
        c.select("AppBox")
        typ, data = c.uid("FETCH", uid, "(FLAGS INTERNALDATE)")
        self.assertIn(b"\\Flagged", data[0])
        self.assertIn(b"$Work", data[0])
        self.assertIn(b'INTERNALDATE "14-Jul-2021 10:34:56 +0000"', data[0])
        typ, data = c.search(None, "ALL")
        self.assertEqual(data[0], b"1 2 3")
        c.logout()

    # -- messages --
    def test_fetch_items(self):
        c = connect(self.srv)
        box = self.fresh_box(c, "FetchBox")
        c.select(box)
        typ, data = c.fetch("1", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)")
        self.assertEqual(typ, "OK")
        head = data[0] if isinstance(data[0], bytes) else data[0][0]
        self.assertIn(b"RFC822.SIZE %d" % len(MSG1), head)
        self.assertIn(b"ENVELOPE (", head)
        self.assertIn(b"Hello there", head)
        typ, data = c.fetch("2", "(BODYSTRUCTURE)")
        self.assertIn(b"MIXED", data[0].upper())
        typ, data = c.fetch("2", "(BODY)")
        self.assertEqual(typ, "OK")
        # sections
        typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
        self.assertEqual(data[0][1], b"From: Ann Example <ann@example.org>\r\n"
                                     b"Subject: Hello there\r\n\r\n")
        typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT FROM TO CC DATE)])")
        self.assertEqual(data[0][1], b"Message-ID: <1@example.org>\r\n\r\n")
        typ, data = c.fetch("1", "(BODY.PEEK[TEXT])")
        self.assertEqual(data[0][1], b"Plain body with the word banana.\r\n")
        typ, data = c.fetch("1", "(BODY.PEEK[]<6.3>)")
        self.assertIn(b"BODY[]<6>", data[0][0])
        self.assertEqual(data[0][1], b"Ann")
        typ, data = c.fetch("2", "(BODY.PEEK[1])")
        self.assertEqual(data[0][1], b"first part cherry")
        typ, data = c.fetch("2", "(BODY.PEEK[2.MIME])")
        self.assertIn(b"Content-Transfer-Encoding: base64", data[0][1])
        typ, data = c.fetch("1", "(FLAGS)")
        self.assertNotIn(b"\\Seen", data[0])
        # BODY[] sets \Seen and reports FLAGS
        typ, data = c.fetch("1", "(BODY[])")
        self.assertEqual(data[0][1], MSG1)
        self.assertTrue(any(b"\\Seen" in (d[0] if isinstance(d, tuple) else d) for d in data), data)
        typ, data = c.fetch("1", "RFC822.HEADER")
        self.assertTrue(data[0][1].startswith(b"From: Ann"))
        typ, data = c.fetch("1:*", "FAST")
        self.assertEqual(len([d for d in data if d]), 2)
        typ, data = c.fetch("1", "FULL")
        self.assertEqual(typ, "OK")
        typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
        self.assertTrue(all(b"UID" in d for d in data), data)
        # errors
        self.assertEqual(status_of(c, "FETCH", "9", "FLAGS"), "BAD")
        self.assertEqual(status_of(c, "FETCH", "1", "(BOGUS)"), "BAD")
        self.assertEqual(status_of(c, "FETCH", "0", "FLAGS"), "BAD")
        self.assertEqual(status_of(c, "FETCH", "1", "BODY[MIME]"), "BAD")
        typ, data = c.uid("FETCH", "999", "(FLAGS)")
        self.assertEqual(typ, "OK")
        c.logout()

    def test_store_copy_move_expunge(self):
        c = connect(self.srv)
        box = self.fresh_box(c, "StoreBox", msgs=(MSG1, MSG2, MSG1, MSG2))
        c.create("StoreDest")
        c.select(box)
        typ, data = c.store("1:2", "+FLAGS", "(\\Flagged $Label1)")
        self.assertEqual(typ, "OK")
        self.assertTrue(all(b"\\Flagged" in d and b"$Label1" in d for d in data), data)
        typ, data = c.store("1", "-FLAGS.SILENT", "(\\Flagged)")
        self.assertEqual(typ, "OK")
        typ, data = c.store("2", "FLAGS", "(\\Answered)")
        self.assertIn(b"\\Answered", data[0])
        self.assertNotIn(b"\\Flagged", data[0])
        self.assertEqual(status_of(c, "STORE", "1", "+FLAGS", "(\\Recent)"), "BAD")
        self.assertEqual(status_of(c, "STORE", "1", "+FLAGS", "(\\Bogus)"), "BAD")
        typ, data = c.uid("STORE", "1", "+FLAGS", "(\\Seen)")
        self.assertIn(b"UID 1", data[0])
        # COPY with COPYUID
        typ, data = c.copy("1:2", "StoreDest")
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0], rb"\[COPYUID \d+ 1:2 \d+:\d+\]")
        self.assertEqual(c.copy("1", "NoSuchBox")[0], "NO")
        # MOVE
        typ, data = c._simple_command("MOVE", "3", "StoreDest")
        self.assertEqual(typ, "OK")
        self.assertIn("EXPUNGE", c.untagged_responses)
        self.assertEqual(c.untagged_responses.pop("EXPUNGE"), [b"3"])
        typ, data = c.search(None, "ALL")
        self.assertEqual(data[0], b"1 2 3")
        # UID EXPUNGE only removes the given \Deleted messages
        c.store("1:3", "+FLAGS", "(\\Deleted)")
        typ, data = c.uid("EXPUNGE", "2")
        self.assertEqual(typ, "OK")
        self.assertEqual(c.untagged_responses.pop("EXPUNGE"), [b"2"])
        typ, data = c.expunge()
        self.assertEqual(len(data), 2, data)   # two EXPUNGEs, any valid order
        typ, data = c.search(None, "ALL")
        self.assertEqual(data[0], b"")
        c.select("StoreDest")
        typ, data = c.search(None, "ALL")
        self.assertEqual(data[0], b"1 2 3")
        # CLOSE expunges silently
        c.store("1", "+FLAGS", "(\\Deleted)")
        self.assertEqual(c.close()[0], "OK")
        self.assertEqual(c.status("StoreDest", "(MESSAGES)")[1][0].split()[-1], b"2)")
        c.logout()

    def test_search(self):
        c = connect(self.srv)
        box = self.fresh_box(c, "SearchBox")
        c.select(box)
        c.store("2", "+FLAGS", "(\\Flagged)")
        cases = {
            "ALL": b"1 2",
            "FLAGGED": b"2",
            "UNFLAGGED": b"1",
            'FROM "ann"': b"1",
            'SUBJECT "grüße"': b"2",
            'HEADER Message-ID "<1@example.org>"': b"1",
            "BODY banana": b"1",
            "BODY cherry": b"2",
            "BODY kiwi": b"2",
            "TEXT Hello": b"1",
            "OR FLAGGED FROM ann": b"1 2",
            "NOT FLAGGED": b"1",
            "(FLAGGED SUBJECT nope)": b"",
            "SENTBEFORE 1-Jan-2000": b"1",
            "SENTSINCE 1-Jan-2000": b"2",
            "SENTON 1-Mar-2022": b"2",
            "SINCE 1-Jan-2000": b"1 2",
            "BEFORE 1-Jan-2000": b"",
            "LARGER 300": b"2",
            "SMALLER 300": b"1",
            "UID 1": b"1",
            "2": b"2",
            "1:*": b"1 2",
            "NEW": b"1 2",
            "RECENT": b"1 2",
            "UNSEEN": b"1 2",
            "KEYWORD $Nope": b"",
            "UNKEYWORD $Nope": b"1 2",
            'CC "CAROL"': b"1",
            "TO alice": b"1 2",
            "BCC x": b"",
        }
        for crit, want in cases.items():
            if "ü" in crit:
                c.literal = "grüße".encode()
                typ, data = c.search("UTF-8", "SUBJECT")
            else:
                try:
                    typ, data = c.search(None, crit)
                except imaplib.IMAP4.error as e:
                    self.fail("%s: %s" % (crit, e))
            self.assertEqual((crit, typ, data[0]), (crit, "OK", want))
        typ, data = c.uid("SEARCH", "FLAGGED")
        self.assertEqual(typ, "OK")
        self.assertEqual(status_of(c, "SEARCH", "BOGUS"), "BAD")
        self.assertEqual(status_of(c, "SEARCH", "CHARSET", "KOI8-R", "ALL"), "NO")
        # ESEARCH
        typ, data = c._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT ALL)", "ALL")
        self.assertEqual(typ, "OK")
        es = c.untagged_responses.pop("ESEARCH")[0]
        self.assertRegex(es, rb'\(TAG "[^"]+"\) MIN 1 MAX 2 COUNT 2 ALL 1:2')
        c.logout()

    def test_session_sees_other_sessions(self):
        a = connect(self.srv)
        b = connect(self.srv)
        box = self.fresh_box(a, "SyncBox")
        a.select(box)
        b.select(box)
        b.append(box, None, None, MSG1)
        b.store("1", "+FLAGS", "(\\Flagged)")
        typ, _ = a.noop()
        self.assertEqual(a.untagged_responses.get("EXISTS", [b""])[-1], b"3")
        fl = a.untagged_responses.get("FETCH", [])
        self.assertTrue(any(b"\\Flagged" in f for f in fl), fl)
        # expunge by b; a's FETCH must not see EXPUNGE, NOOP does
        b.store("2", "+FLAGS", "(\\Deleted)")
        b.expunge()
        a.untagged_responses.clear()
        typ, data = a.fetch("1", "(FLAGS)")
        self.assertNotIn("EXPUNGE", a.untagged_responses)
        a.noop()
        self.assertEqual(a.untagged_responses.get("EXPUNGE"), [b"2"])
        a.logout()
        b.logout()


backend_classes(globals(), ImapBase, "TestImap_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
