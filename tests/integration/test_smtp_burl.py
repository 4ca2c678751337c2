"""BURL (RFC 4468) on submission, both backends: a draft APPENDed over IMAP,
GENURLAUTH with submit+user, BURL to a local recipient, read back over IMAP
byte for byte; BURL mixed with BDAT, in pieces, and every refusal."""
import re
import smtplib
import unittest

from roosttest import BACKENDS, backend_classes
from test_imap_raw import Raw, RawClients

ALICE = ("alice@example.org", "alice-secret")
BOB = ("bob@example.org", "bob-secret")

DRAFT = (b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: sent by BURL\r\n"
         b"Message-ID: <burl-1@example.org>\r\n\r\nHello Bob,\r\n\r\n"
         b"this message was never uploaded twice.\r\n.leading dot\r\n")


def quoted(b):
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class BurlBase(RawClients):
    backend = "lmdb"
    server_options = {"listeners": ("imap", "submission", "smtp")}

    def imap(self, who):
        return Raw(self.srv.port("imap")).login(who[0].encode(), who[1].encode())

    def draft_url(self, draft=DRAFT, access=b"submit+alice%40example.org", section=b"",
                  who=ALICE):
        """APPEND draft to who's Drafts and sign a URL to it."""
        r = self.imap(who)
        try:
            r.send(b"ap APPEND Drafts (\\Draft) {%d}\r\n" % len(draft))
            self.assertTrue(r.line().startswith(b"+"))
            r.send(draft + b"\r\n")
            _, tagged = r.until(b"ap")
            m = re.match(rb"ap OK \[APPENDUID (\d+) (\d+)\]", tagged)
            self.assertIsNotNone(m, tagged)
            user = who[0].replace("@", "%40").encode()
            rump = (b"imap://%s@roost.test/Drafts;UIDVALIDITY=%s/;UID=%s%s;URLAUTH=%s"
                    % (user, m.group(1), m.group(2), section, access))
            lines = self.ok(r, b"GENURLAUTH " + quoted(rump) + b" INTERNAL")
            return re.match(rb'\* GENURLAUTH "(.*)"\r\n', lines[0]).group(1).decode()
        finally:
            r.close()

    def inbox(self, who):
        """Every message in who's INBOX, as stored."""
        r = self.imap(who)
        try:
            lines = self.ok(r, b"EXAMINE INBOX")
            n = int([l for l in lines if l.endswith(b" EXISTS\r\n")][0].split()[1])
            if n == 0:
                return []
            out = []
            for l in self.ok(r, b"FETCH 1:* BODY.PEEK[]"):
                m = re.search(rb"BODY\[\] \{(\d+)\}\r\n", l)
                if m:
                    out.append(l[m.end():m.end() + int(m.group(1))])
            return out
        finally:
            r.close()

    def submission(self, who=ALICE):
        s = smtplib.SMTP("127.0.0.1", self.srv.port("submission"), timeout=15)
        s.ehlo("client.example")
        if who is not None:
            s.login(*who)
        return s

    def assert_delivered(self, before, body):
        after = self.inbox(BOB)
        self.assertEqual(len(after), len(before) + 1)
        got = after[-1]
        # our trace headers, then the draft exactly as stored in Drafts
        self.assertTrue(got.endswith(body), got)
        head = got[:-len(body)]
        self.assertTrue(head.endswith(b"\r\n"), head)
        for line in head.split(b"\r\n")[:-1]:
            self.assertRegex(line, rb"^([A-Za-z-]+:|[ \t])", head)

    def test_ehlo(self):
        with self.submission(None) as s:
            self.assertEqual(s.esmtp_features.get("burl"), "imap")
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.ehlo("mx.example")
            self.assertNotIn("burl", s.esmtp_features)
            s.mail("x@elsewhere.example")
            s.rcpt(BOB[0])
            code, _ = s.docmd("BURL", "imap://alice%40example.org@roost.test/INBOX/;UID=1 LAST")
            self.assertEqual(code, 502)

    def test_burl_last(self):
        url = self.draft_url()
        before = self.inbox(BOB)
        with self.submission() as s:
            s.mail(ALICE[0])
            self.assertEqual(s.rcpt(BOB[0])[0], 250)
            code, resp = s.docmd("BURL", url + " LAST")
            self.assertEqual(code, 250, resp)
        self.assert_delivered(before, DRAFT)

    def test_burl_pieces_and_bdat(self):
        head = self.draft_url(section=b"/;SECTION=HEADER")
        text = self.draft_url(section=b"/;SECTION=TEXT")
        before = self.inbox(BOB)
        with self.submission() as s:
            s.mail(ALICE[0])
            s.rcpt(BOB[0])
            code, resp = s.docmd("BURL", head)
            self.assertEqual(code, 250, resp)
            code, resp = s.docmd("BURL", text)
            self.assertEqual(code, 250, resp)
            code, resp = s.docmd("BDAT", "0 LAST")
            self.assertEqual(code, 250, resp)
        self.assert_delivered(before, DRAFT)
        # BDAT first, then BURL LAST
        before = self.inbox(BOB)
        extra = b"X-Added: by BDAT\r\n"
        with self.submission() as s:
            s.mail(ALICE[0])
            s.rcpt(BOB[0])
            s.send(b"BDAT %d\r\n" % len(extra) + extra)
            self.assertEqual(s.getreply()[0], 250)
            code, resp = s.docmd("BURL", self.draft_url() + " LAST")
            self.assertEqual(code, 250, resp)
        self.assert_delivered(before, extra + DRAFT)

    def test_refusals(self):
        url = self.draft_url()
        before = self.inbox(BOB)
        # not authenticated
        with self.submission(None) as s:
            code, _ = s.docmd("BURL", url + " LAST")
            self.assertEqual(code, 530)
        with self.submission() as s:
            # no transaction
            code, _ = s.docmd("BURL", url + " LAST")
            self.assertEqual(code, 503)
            s.mail(ALICE[0])
            code, _ = s.docmd("BURL", url + " LAST")
            self.assertEqual(code, 554)  # no recipients
            s.rcpt(BOB[0])
            # syntax
            for bad in ("", url + " LAST NOW", url + " FIRST"):
                code, _ = s.docmd("BURL", bad)
                self.assertEqual(code, 501, bad)
            # tampered, another server's, a user+ URL, a rump, garbage: 554
            flip = url[:-1] + ("0" if url[-1] != "0" else "1")
            foreign = url.replace("@roost.test/", "@elsewhere.example/")
            for bad, enh in ((flip, "5.6.6"), (foreign, "5.7.0"),
                             (url.rsplit(":", 2)[0], "5.6.6"),
                             ("imap://x/%00;UID=1", "5.6.6"), ("x" * 5000, "5.6.6")):
                code, resp = s.docmd("BURL", bad + " LAST")
                self.assertEqual(code, 554, bad)
                self.assertIn(enh.encode(), resp, bad)
                s.rset()
                s.mail(ALICE[0])
                s.rcpt(BOB[0])
        # user+alice is for alice's IMAP sessions, not for submission
        mine = self.draft_url(access=b"user+alice%40example.org")
        with self.submission() as s:
            s.mail(ALICE[0])
            s.rcpt(BOB[0])
            self.assertEqual(s.docmd("BURL", mine + " LAST")[0], 554)
        # bob cannot send alice's draft with her submit+alice URL
        with self.submission(BOB) as s:
            s.mail(BOB[0])
            s.rcpt(BOB[0])
            self.assertEqual(s.docmd("BURL", url + " LAST")[0], 554)
        self.assertEqual(len(self.inbox(BOB)), len(before))

    def test_sender_checks(self):
        """The message is checked as DATA's would be: a draft whose From:
        is someone else's is refused for alice."""
        forged = DRAFT.replace(b"From: alice@example.org", b"From: bob@example.org")
        url = self.draft_url(draft=forged)
        before = self.inbox(BOB)
        with self.submission() as s:
            s.mail(ALICE[0])
            s.rcpt(BOB[0])
            code, _ = s.docmd("BURL", url + " LAST")
            self.assertEqual(code, 553)
        self.assertEqual(len(self.inbox(BOB)), len(before))


backend_classes(globals(), BurlBase, "TestSmtpBurl_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
