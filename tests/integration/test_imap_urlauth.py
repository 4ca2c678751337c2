"""URLAUTH (RFC 4467), URLAUTH=BINARY (RFC 5524), CATENATE (RFC 4469) with
MULTIAPPEND (RFC 3502), raw protocol, both backends: GENURLAUTH, URLFETCH,
RESETKEY; URLs of the wrong user, expired, tampered or foreign fetch NIL;
hostile URLs."""
import re
import unittest

from roosttest import BACKENDS, SharedServer, backend_classes
from test_imap_raw import Raw

ALICE = (b"alice@example.org", b"alice-secret")
BOB = (b"bob@example.org", b"bob-secret")

DRAFT = (b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: draft\r\n"
         b"MIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
         b"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nHello Bob.\r\n"
         b"--b1\r\nContent-Type: application/octet-stream\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\nAAECA/8=\r\n--b1--\r\n")


def quoted(b):
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def echoed(b):
    """A URL as the server writes it back: quoted, or a literal past 1 KiB."""
    return b"{%d}\r\n" % len(b) + b if len(b) > 1024 else quoted(b)


class UrlauthBase(SharedServer):
    backend = "lmdb"
    server_options = {"listeners": ("imap",), "conf": {"imap": {"max_literal": "1M"}}}

    def setUp(self):
        self.r = self.client(ALICE)

    def tearDown(self):
        self.r.close()

    def client(self, who):
        return Raw(self.srv.port("imap")).login(*who)

    def ok(self, text, r=None):
        lines, tagged = (r or self.r).cmd(text)
        self.assertRegex(tagged, rb"^t\d+ OK", (text, lines, tagged))
        return lines

    def append(self, mailbox, msg, r=None):
        """APPEND with a synchronizing literal; the new UID."""
        r = r or self.r
        r.send(b"ap APPEND " + mailbox + b" {%d}\r\n" % len(msg))
        self.assertTrue(r.line().startswith(b"+"))
        r.send(msg + b"\r\n")
        _, tagged = r.until(b"ap")
        m = re.match(rb"ap OK \[APPENDUID (\d+) (\d+)\]", tagged)
        self.assertIsNotNone(m, tagged)
        return int(m.group(1)), int(m.group(2))

    def genurlauth(self, rump, r=None):
        lines = self.ok(b"GENURLAUTH " + quoted(rump) + b" INTERNAL", r)
        found = [l for l in lines if l.startswith(b"* GENURLAUTH ")]
        self.assertEqual(len(found), 1, lines)
        m = re.match(rb'\* GENURLAUTH "(.*)"\r\n$', found[0])
        self.assertIsNotNone(m, found[0])
        return m.group(1)

    def urlfetch(self, url, r=None):
        """The data of one URL, or None for NIL."""
        lines = self.ok(b"URLFETCH " + quoted(url), r)
        found = [l for l in lines if l.startswith(b"* URLFETCH ")]
        self.assertEqual(len(found), 1, lines)
        head = b"* URLFETCH " + echoed(url) + b" "
        self.assertTrue(found[0].startswith(head), found[0])
        rest = found[0][len(head):]
        if rest == b"NIL\r\n":
            return None
        m = re.match(rb"\{(\d+)\}\r\n", rest)
        self.assertIsNotNone(m, rest)
        data = rest[m.end():m.end() + int(m.group(1))]
        self.assertEqual(rest[m.end() + len(data):], b"\r\n")
        return data

    def draft(self, name=b"Drafts"):
        uv, uid = self.append(name, DRAFT)
        return b"imap://alice%40example.org@roost.test/" + name + b";UIDVALIDITY=%d/;UID=%d" % (
            uv, uid)

    # ---- GENURLAUTH / URLFETCH ----

    def test_capabilities(self):
        lines = self.ok(b"CAPABILITY")
        caps = lines[0].split()
        for c in (b"URLAUTH", b"URLAUTH=BINARY", b"MULTIAPPEND", b"CATENATE"):
            self.assertIn(c, caps)
        lines = self.ok(b"EXAMINE INBOX")
        self.assertIn(b"* OK [URLMECH INTERNAL] URLAUTH mechanisms\r\n", lines)

    def test_generate_and_fetch(self):
        base = self.draft()
        url = self.genurlauth(base + b";URLAUTH=user+alice%40example.org")
        self.assertRegex(url, rb";URLAUTH=user\+alice%40example\.org:internal:[0-9a-f]{64}$")
        self.assertEqual(self.urlfetch(url), DRAFT)
        # a section, a MIME header, a partial
        url = self.genurlauth(base + b"/;SECTION=1;URLAUTH=user+alice%40example.org")
        self.assertEqual(self.urlfetch(url), b"Hello Bob.")
        url = self.genurlauth(base + b"/;SECTION=2.MIME;URLAUTH=user+alice%40example.org")
        self.assertEqual(self.urlfetch(url),
                         b"Content-Type: application/octet-stream\r\n"
                         b"Content-Transfer-Encoding: base64\r\n\r\n")
        url = self.genurlauth(base + b"/;SECTION=HEADER/;PARTIAL=6.17"
                              b";URLAUTH=user+alice%40example.org")
        self.assertEqual(self.urlfetch(url), b"alice@example.org")
        # several URLs in one command, a bad one among them
        good = self.genurlauth(base + b"/;SECTION=1;URLAUTH=authuser")
        bad = good[:-1] + (b"0" if good[-1:] != b"0" else b"1")
        lines = self.ok(b"URLFETCH " + quoted(good) + b" " + quoted(bad) + b" " + quoted(good))
        self.assertEqual(lines[-1], b"* URLFETCH " + quoted(good) + b" {10}\r\nHello Bob. " +
                         quoted(bad) + b" NIL " + quoted(good) +
                         b" {10}\r\nHello Bob.\r\n")

    def test_keys_hidden_from_metadata(self):
        """The URLAUTH keys are metadata entries the server keeps for
        itself: GETMETADATA never shows them, SETMETADATA cannot set them."""
        url = self.genurlauth(self.draft() + b";URLAUTH=authuser")
        for mbox, entry in ((b'""', b"master"), (b'"Drafts"', b"key")):
            lines = self.ok(b"GETMETADATA (DEPTH infinity) " + mbox + b" /private")
            self.assertNotIn(b"vendor.roost", b"".join(lines), lines)
            # asked by name: no value, as for an entry that is not there
            name = b"/private/vendor/vendor.roost/urlauth/" + entry
            lines = self.ok(b"GETMETADATA " + mbox + b" " + name)
            self.assertEqual(lines, [b"* METADATA " + mbox + b' ("' + name + b'" NIL)\r\n'])
        _, tagged = self.r.cmd(b'SETMETADATA "" (/private/vendor/VENDOR.roost/urlauth/master '
                               b'"0000")')
        self.assertRegex(tagged, rb"^t\d+ NO \[NOPERM\]")
        self.assertEqual(self.urlfetch(url), DRAFT)

    def test_access_identifiers(self):
        base = self.draft()
        bob = self.client(BOB)
        try:
            mine = self.genurlauth(base + b";URLAUTH=user+alice%40example.org")
            theirs = self.genurlauth(base + b";URLAUTH=user+bob%40example.org")
            anyone = self.genurlauth(base + b";URLAUTH=authuser")
            anon = self.genurlauth(base + b";URLAUTH=anonymous")
            submit = self.genurlauth(base + b";URLAUTH=submit+alice%40example.org")
            # user+alice: alice only
            self.assertIsNone(self.urlfetch(mine, bob))
            # user+bob: bob only, alice's own mail notwithstanding
            self.assertEqual(self.urlfetch(theirs, bob), DRAFT)
            self.assertIsNone(self.urlfetch(theirs))
            self.assertEqual(self.urlfetch(anyone, bob), DRAFT)
            self.assertEqual(self.urlfetch(anon, bob), DRAFT)
            # submit+: the submission server's alone, never over IMAP
            self.assertIsNone(self.urlfetch(submit))
            self.assertIsNone(self.urlfetch(submit, bob))
            # bob cannot sign URLs to alice's mail
            _, tagged = bob.cmd(b"GENURLAUTH " + quoted(base + b";URLAUTH=authuser") +
                                b" INTERNAL")
            self.assertRegex(tagged, rb"^t\d+ NO \[BADURL ")
            # nor reach it by a URL without URLAUTH or with another's name
            other = base.replace(b"alice%40example.org@", b"bob%40example.org@")
            self.assertIsNone(self.urlfetch(other + b";URLAUTH=authuser:internal:" +
                                            anyone[-64:], bob))
        finally:
            bob.close()

    def test_tampered_expired_foreign(self):
        base = self.draft()
        url = self.genurlauth(base + b";URLAUTH=authuser")
        token = url[-64:]
        flip = b"0" if token[-1:] != b"0" else b"1"
        self.assertIsNone(self.urlfetch(url[:-1] + flip))
        self.assertIsNone(self.urlfetch(url[:-64] + token.upper()[:-1] + flip))
        self.assertIsNone(self.urlfetch(url[:-2]))
        # the token signs the whole rump: another UID, section or access fails
        uid = int(re.search(rb";UID=(\d+)", url).group(1))
        self.append(b"Drafts", b"Subject: other\r\n\r\nother\r\n")
        self.assertIsNone(self.urlfetch(url.replace(b";UID=%d" % uid, b";UID=%d" % (uid + 1))))
        self.assertIsNone(self.urlfetch(url.replace(b";URLAUTH=authuser",
                                                    b"/;SECTION=1;URLAUTH=authuser")))
        self.assertIsNone(self.urlfetch(url.replace(b"authuser", b"anonymous")))
        # expired a moment ago, and in the future
        past = self.genurlauth(base + b";EXPIRE=2001-01-01T00:00:00Z;URLAUTH=authuser")
        self.assertIsNone(self.urlfetch(past))
        future = self.genurlauth(base + b";EXPIRE=2999-01-01T00:00:00Z;URLAUTH=authuser")
        self.assertEqual(self.urlfetch(future), DRAFT)
        # a URL of another server: GENURLAUTH refuses it, URLFETCH answers NIL
        foreign = base.replace(b"@roost.test/", b"@elsewhere.example/")
        _, tagged = self.r.cmd(b"GENURLAUTH " + quoted(foreign + b";URLAUTH=authuser") +
                               b" INTERNAL")
        self.assertRegex(tagged, rb"^t\d+ NO \[BADURL ")
        self.assertIsNone(self.urlfetch(foreign + b";URLAUTH=authuser:internal:" + token))
        # a UIDVALIDITY that is not the mailbox's
        uv = re.search(rb"UIDVALIDITY=(\d+)", base).group(1)
        wrong = base.replace(b"UIDVALIDITY=" + uv, b"UIDVALIDITY=%d" % (int(uv) + 1))
        _, tagged = self.r.cmd(b"GENURLAUTH " + quoted(wrong + b";URLAUTH=authuser") +
                               b" INTERNAL")
        self.assertRegex(tagged, rb"^t\d+ NO ")
        # an expunged message
        self.ok(b"SELECT Drafts")
        self.ok(b"UID STORE %d +FLAGS (\\Deleted)" % uid)
        self.ok(b"EXPUNGE")
        self.assertIsNone(self.urlfetch(url))

    def test_resetkey(self):
        base = self.draft()
        uid = self.append(b"INBOX", DRAFT)[1]
        inbox = self.genurlauth(b"imap://alice%%40example.org@roost.test/INBOX/;UID=%d"
                                b";URLAUTH=authuser" % uid)
        drafts = self.genurlauth(base + b";URLAUTH=authuser")
        self.assertEqual(self.urlfetch(drafts), DRAFT)
        # one mailbox's key: its URLs die, the others live
        self.ok(b"RESETKEY Drafts INTERNAL")
        self.assertIsNone(self.urlfetch(drafts))
        self.assertEqual(self.urlfetch(inbox), DRAFT)
        again = self.genurlauth(base + b";URLAUTH=authuser")
        self.assertNotEqual(again, drafts)
        self.assertEqual(self.urlfetch(again), DRAFT)
        # every key: from another session too, and after a restart the
        # new keys still hold (they are on disk)
        self.ok(b"RESETKEY")
        self.assertIsNone(self.urlfetch(inbox))
        self.assertIsNone(self.urlfetch(again))
        kept = self.genurlauth(base + b";URLAUTH=authuser")
        self.assertEqual(self.urlfetch(kept), DRAFT)
        self.r.close()
        self.srv.stop()
        self.srv.launch()
        self.r = self.client(ALICE)
        self.assertEqual(self.urlfetch(kept), DRAFT)
        self.assertIsNone(self.urlfetch(inbox))
        _, tagged = self.r.cmd(b"RESETKEY NoSuchBox")
        self.assertRegex(tagged, rb"^t\d+ NO ")
        _, tagged = self.r.cmd(b"RESETKEY Drafts BOGUS")
        self.assertRegex(tagged, rb"^t\d+ BAD ")

    def test_recreated_mailbox(self):
        """A URL without UIDVALIDITY does not reach the message that has its
        UID in a mailbox deleted and made again under the same name."""
        self.ok(b"CREATE Again")
        uid = self.append(b"Again", DRAFT)[1]
        url = self.genurlauth(b"imap://alice%%40example.org@roost.test/Again/;UID=%d"
                              b";URLAUTH=authuser" % uid)
        self.assertEqual(self.urlfetch(url), DRAFT)
        self.ok(b"DELETE Again")
        self.assertIsNone(self.urlfetch(url))
        self.ok(b"CREATE Again")
        self.assertEqual(self.append(b"Again", b"Subject: new\r\n\r\nnew\r\n")[1], uid)
        self.assertIsNone(self.urlfetch(url))

    def test_large_fetch(self):
        """A part larger than the output budget goes out in slices."""
        body = b"".join(b"line %07d of a long message body.\r\n" % i for i in range(25000))
        msg = b"Subject: big\r\n\r\n" + body
        uv, uid = self.append(b"INBOX", msg)
        url = self.genurlauth(b"imap://alice%%40example.org@roost.test/INBOX/;UID=%d"
                              b"/;SECTION=TEXT;URLAUTH=authuser" % uid)
        self.assertEqual(self.urlfetch(url), body)
        url = self.genurlauth(b"imap://alice%%40example.org@roost.test/INBOX/;UID=%d"
                              b"/;SECTION=1;URLAUTH=authuser" % uid)
        lines = self.ok(b"URLFETCH (" + quoted(url) + b" BODY) (" + quoted(url) + b" BINARY)")
        self.assertEqual(lines[0], b"* URLFETCH " + quoted(url) + b" (BODY {%d}\r\n" % len(body) +
                         body + b") " + quoted(url) + b" (BINARY ~{%d}\r\n" % len(body) +
                         body + b")\r\n")

    def test_binary_and_bodypartstructure(self):
        base = self.draft()
        url = self.genurlauth(base + b"/;SECTION=2;URLAUTH=authuser")
        lines = self.ok(b"URLFETCH (" + quoted(url) + b" BINARY BODYPARTSTRUCTURE)")
        self.assertEqual(len(lines), 1, lines)
        line = lines[0]
        head = b"* URLFETCH " + quoted(url) + b" (BODYPARTSTRUCTURE ("
        self.assertTrue(line.startswith(head), line)
        self.assertIn(b'"APPLICATION" "OCTET-STREAM"', line.upper())
        self.assertTrue(line.endswith(b") (BINARY ~{5}\r\n\x00\x01\x02\x03\xff)\r\n"), line)
        lines = self.ok(b"URLFETCH (" + quoted(url) + b" BODY)")
        self.assertEqual(lines[0], b"* URLFETCH " + quoted(url) +
                         b" (BODY {8}\r\nAAECA/8=)\r\n")
        # a header is no body part: NIL
        hdr = self.genurlauth(base + b"/;SECTION=HEADER;URLAUTH=authuser")
        lines = self.ok(b"URLFETCH (" + quoted(hdr) + b" BINARY)")
        self.assertEqual(lines[0], b"* URLFETCH " + quoted(hdr) + b" NIL\r\n")
        for bad in (b"URLFETCH (" + quoted(url) + b" BOGUS)",
                    b"URLFETCH (" + quoted(url) + b" BODY BINARY)",
                    b"URLFETCH ()", b"URLFETCH"):
            _, tagged = self.r.cmd(bad)
            self.assertRegex(tagged, rb"^t\d+ BAD ", bad)

    def test_hostile_urls(self):
        base = self.draft()
        good = self.genurlauth(base + b";URLAUTH=authuser")
        hostile = [
            b"", b"imap://", b"imap://alice%40example.org@roost.test/",
            base + b";URLAUTH=authuser:internal:" + b"0" * 64,
            base.replace(b"Drafts", b"Dr%00afts") + b";URLAUTH=authuser:internal:" + b"0" * 64,
            base.replace(b"Drafts", b"..%2F..%2Fbob") + b";URLAUTH=authuser:internal:" + b"0" * 64,
            base.replace(b"Drafts", b"%2E%2E") + b";URLAUTH=authuser:internal:" + b"0" * 64,
            base.replace(b"Drafts", b"Dr%zzafts") + b";URLAUTH=authuser:internal:" + b"0" * 64,
            good.replace(b"internal", b"external"),
            good + b"00", good + b"%00", b"imap://" + b"a" * 5000 + b"@roost.test/INBOX/;UID=1",
            b"x" * 7000,
        ]
        for url in hostile:
            self.assertIsNone(self.urlfetch(url), url)
        # a URL with NUL cannot be quoted: as a literal it is a string with
        # NUL, which the parser refuses
        self.r.send(b"n1 URLFETCH {3}\r\n")
        self.assertTrue(self.r.line().startswith(b"+"))
        self.r.send(b"a\x00b\r\n")
        _, tagged = self.r.until(b"n1")
        self.assertRegex(tagged, rb"^n1 (BAD|NO) ")
        for url in (b"", b"/Drafts/;UID=1", good[:-64] + b"0" * 64,
                    b"imap://alice%40example.org@roost.test/Drafts/;UID=1",
                    b"imap://alice%40example.org@roost.test/../x/;UID=1;URLAUTH=authuser"):
            _, tagged = self.r.cmd(b"GENURLAUTH " + quoted(url) + b" INTERNAL")
            self.assertRegex(tagged, rb"^t\d+ NO ", url)
        _, tagged = self.r.cmd(b"GENURLAUTH " + quoted(base + b";URLAUTH=authuser") +
                               b" HMAC")
        self.assertRegex(tagged, rb"^t\d+ NO ")
        _, tagged = self.r.cmd(b"GENURLAUTH " + quoted(base + b";URLAUTH=authuser"))
        self.assertRegex(tagged, rb"^t\d+ BAD ")
        # the session still works
        self.assertEqual(self.urlfetch(good), DRAFT)

    # ---- CATENATE and MULTIAPPEND ----

    def catenate(self, parts, mailbox=b"INBOX", extra=b"", r=None):
        """APPEND mailbox CATENATE (parts) with synchronizing TEXT literals;
        parts: ("TEXT", bytes) or ("URL", bytes). The tagged line."""
        r = r or self.r
        head = b"ca APPEND " + mailbox + b" " + extra + b"CATENATE ("
        first = True
        for kind, val in parts:
            head += b"" if first else b" "
            first = False
            if kind == "URL":
                head += b"URL " + quoted(val)
            else:
                word, marker = {"TEXT": (b"TEXT", b"{%d}"), "TEXT8": (b"TEXT", b"~{%d}"),
                                "URLLIT": (b"URL", b"{%d}")}[kind]
                r.send(head + word + b" " + marker % len(val) + b"\r\n")
                l = r.line()
                if not l.startswith(b"+"):
                    return l
                head = val
        r.send(head + b")\r\n")
        _, tagged = r.until(b"ca")
        return tagged

    def fetch_uid(self, mailbox, uid, r=None):
        r = r or self.r
        self.ok(b"EXAMINE " + mailbox, r)
        lines = self.ok(b"UID FETCH %d BODY.PEEK[]" % uid, r)
        m = re.search(rb"BODY\[\] \{(\d+)\}\r\n", lines[0])
        return lines[0][m.end():m.end() + int(m.group(1))]

    def test_catenate(self):
        uv, uid = self.append(b"Drafts", DRAFT)
        rel = b"/Drafts;UIDVALIDITY=%d/;UID=%d" % (uv, uid)
        tagged = self.catenate([("URL", rel + b"/;SECTION=HEADER"),
                                ("TEXT", b"--b1\r\nContent-Type: text/plain\r\n\r\nNew text.\r\n"),
                                ("URL", rel + b"/;SECTION=2.MIME"),
                                ("URL", rel + b"/;SECTION=2"),
                                ("TEXT", b"\r\n--b1--\r\n")])
        m = re.match(rb"ca OK \[APPENDUID (\d+) (\d+)\]", tagged)
        self.assertIsNotNone(m, tagged)
        want = (DRAFT[:DRAFT.index(b"\r\n\r\n") + 4] +
                b"--b1\r\nContent-Type: text/plain\r\n\r\nNew text.\r\n"
                b"Content-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\nAAECA/8=\r\n--b1--\r\n")
        self.assertEqual(self.fetch_uid(b"INBOX", int(m.group(2))), want)
        # the whole message by an absolute URL, flags and a date; relative
        # to the selected mailbox
        self.ok(b"SELECT Drafts")
        full = b"imap://alice%%40example.org@roost.test/Drafts/;UID=%d" % uid
        tagged = self.catenate([("URL", full), ("TEXT", b"")], mailbox=b"Sent",
                               extra=b"(\\Seen) \"01-Jan-2020 00:00:00 +0000\" ")
        m = re.match(rb"ca OK \[APPENDUID \d+ (\d+)\]", tagged)
        self.assertIsNotNone(m, tagged)
        self.assertEqual(self.fetch_uid(b"Sent", int(m.group(1))), DRAFT)
        self.ok(b"SELECT Drafts")
        tagged = self.catenate([("URL", b";UID=%d/;SECTION=1" % uid)])
        m = re.match(rb"ca OK \[APPENDUID \d+ (\d+)\]", tagged)
        self.assertEqual(self.fetch_uid(b"INBOX", int(m.group(1))), b"Hello Bob.")
        # a URL sent as a literal, a TEXT part as literal8 holding NUL
        self.ok(b"SELECT Drafts")
        tagged = self.catenate([("URLLIT", b";UID=%d/;SECTION=1" % uid),
                                ("TEXT8", b" and\x00NUL")])
        m = re.match(rb"ca OK \[APPENDUID \d+ (\d+)\]", tagged)
        self.assertIsNotNone(m, tagged)
        self.ok(b"EXAMINE INBOX")
        lines = self.ok(b"UID FETCH %s BINARY.PEEK[]" % m.group(1))
        self.assertTrue(lines[0].endswith(b"BINARY[] ~{18}\r\nHello Bob. and\x00NUL)\r\n"),
                        lines)
        tagged = self.catenate([("TEXT", b"x"), ("URLLIT", b";UID=%d\x00" % uid)])
        self.assertRegex(tagged, rb"^ca BAD ")

    def test_catenate_urls_of_others(self):
        """Another user's message: only through a URLAUTH URL it grants."""
        bob = self.client(BOB)
        try:
            uv, uid = self.append(b"INBOX", DRAFT, bob)
            plain = b"imap://bob%%40example.org@roost.test/INBOX;UIDVALIDITY=%d/;UID=%d" % (uv, uid)
            granted = self.genurlauth(plain + b";URLAUTH=user+alice%40example.org", bob)
            only_bob = self.genurlauth(plain + b";URLAUTH=user+bob%40example.org", bob)
        finally:
            bob.close()
        before = self.ok(b"STATUS INBOX (MESSAGES)")
        for url in (plain, only_bob, b"/../bob%40example.org/INBOX/;UID=1",
                    b"imap://alice%40example.org@elsewhere.example/Drafts/;UID=1",
                    b"/NoSuchBox/;UID=1", b"/INBOX/;UID=4000000", b";UID=1"):
            tagged = self.catenate([("TEXT", b"Subject: x\r\n\r\n"), ("URL", url)])
            self.assertTrue(tagged.startswith(b"ca NO [BADURL " + url + b"] "), (url, tagged))
        self.assertEqual(self.ok(b"STATUS INBOX (MESSAGES)"), before)
        tagged = self.catenate([("URL", granted)])
        m = re.match(rb"ca OK \[APPENDUID \d+ (\d+)\]", tagged)
        self.assertIsNotNone(m, tagged)
        self.assertEqual(self.fetch_uid(b"INBOX", int(m.group(1))), DRAFT)

    def test_catenate_bounds(self):
        uv, uid = self.append(b"Drafts", DRAFT)
        url = b"/Drafts/;UID=%d" % uid
        # past APPENDLIMIT (1M here): TOOBIG, nothing stored
        before = self.ok(b"STATUS INBOX (MESSAGES)")
        big = b"x" * (600 * 1024)
        # the framer bounds the command's literals; CATENATE the result
        tagged = self.catenate([("TEXT", big), ("TEXT", big)])
        self.assertRegex(tagged, rb"^ca NO \[TOOBIG\]")
        tagged = self.catenate([("URL", url), ("TEXT", b"y" * (1024 * 1024 - 10))])
        self.assertRegex(tagged, rb"^ca NO \[TOOBIG\]")
        parts = [("URL", url)] * 257
        tagged = self.catenate(parts)
        self.assertRegex(tagged, rb"^ca BAD ")
        for bad in (b"CATENATE ()", b"CATENATE (TEXT)", b"CATENATE (URL)",
                    b"CATENATE (TEXT \"x\")", b"CATENATE (BOGUS \"x\")", b"CATENATE",
                    b"CATENATE URL \"/Drafts/;UID=1\""):
            _, tagged = self.r.cmd(b"APPEND INBOX " + bad)
            self.assertRegex(tagged, rb"^t\d+ BAD ", bad)
        # an empty result is no message
        tagged = self.catenate([("TEXT", b"")])
        self.assertRegex(tagged, rb"^ca NO ")
        self.assertEqual(self.ok(b"STATUS INBOX (MESSAGES)"), before)
        # a spooled TEXT literal (past 256 KiB) joined with a URL
        tagged = self.catenate([("URL", url + b"/;SECTION=HEADER"), ("TEXT", big)])
        m = re.match(rb"ca OK \[APPENDUID \d+ (\d+)\]", tagged)
        self.assertIsNotNone(m, tagged)
        got = self.fetch_uid(b"INBOX", int(m.group(1)))
        self.assertEqual(got, DRAFT[:DRAFT.index(b"\r\n\r\n") + 4] + big)

    def test_multiappend_all_or_nothing(self):
        uv, uid = self.append(b"Drafts", DRAFT)
        before = self.ok(b"STATUS Sent (MESSAGES UIDNEXT)")
        msg = b"Subject: one\r\n\r\none\r\n"
        # literal, CATENATE, then a CATENATE whose URL fails: none stored
        self.r.send(b"m1 APPEND Sent {%d}\r\n" % len(msg))
        self.assertTrue(self.r.line().startswith(b"+"))
        self.r.send(msg + b" CATENATE (URL \"/Drafts/;UID=%d\") (\\Seen) CATENATE "
                    b"(URL \"/Drafts/;UID=%d\")\r\n" % (uid, uid + 1000))
        _, tagged = self.r.until(b"m1")
        self.assertTrue(tagged.startswith(b"m1 NO [BADURL /Drafts/;UID=%d] " % (uid + 1000)),
                        tagged)
        after = self.ok(b"STATUS Sent (MESSAGES UIDNEXT)")
        self.assertEqual(re.search(rb"MESSAGES (\d+)", after[0]).group(1),
                         re.search(rb"MESSAGES (\d+)", before[0]).group(1))
        # the same without the bad part: all three, in order
        self.r.send(b"m2 APPEND Sent {%d}\r\n" % len(msg))
        self.assertTrue(self.r.line().startswith(b"+"))
        self.r.send(msg + b" CATENATE (URL \"/Drafts/;UID=%d\") (\\Seen) CATENATE "
                    b"(URL \"/Drafts/;UID=%d/;SECTION=1\" TEXT {2}\r\n" % (uid, uid))
        self.assertTrue(self.r.line().startswith(b"+"))
        self.r.send(b"!!)\r\n")
        _, tagged = self.r.until(b"m2")
        m = re.match(rb"m2 OK \[APPENDUID \d+ (\d+):(\d+)\]", tagged)
        self.assertIsNotNone(m, tagged)
        lo, hi = int(m.group(1)), int(m.group(2))
        self.assertEqual(hi - lo, 2)
        self.assertEqual(self.fetch_uid(b"Sent", lo), msg)
        self.assertEqual(self.fetch_uid(b"Sent", lo + 1), DRAFT)
        self.assertEqual(self.fetch_uid(b"Sent", hi), b"Hello Bob.!!")


backend_classes(globals(), UrlauthBase, "TestImapUrlauth_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
