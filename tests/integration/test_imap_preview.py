"""PREVIEW (RFC 8970) over raw IMAP on every backend, and JMAP's
Email.preview made by the same code: the first text part (plain before HTML
in an alternative, HTML stripped), white space collapsed, at most 256
characters of UTF-8; nothing for a message without text; (LAZY) accepted,
other modifiers BAD; hostile bodies answered and the session kept."""
import imaplib
import re
import unittest

from jmapclient import Jmap
from roosttest import BACKENDS, backend_classes, own_server

ALICE = ("alice@example.org", "alice-secret")

PLAIN = b"Subject: plain\r\n\r\nHello   Alice,\r\n\r\nlunch\tat noon?\r\n"
HTML = (b"Subject: html\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p {color: red}</style></head><body><p>Big &amp; <b>bold</b>"
        b"</p><script>alert(1)</script></body></html>\r\n")
ALT = (b"Subject: alt\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n"
       b"--o\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n"
       b"--a\r\nContent-Type: text/html\r\n\r\n<p>in html</p>\r\n"
       b"--a\r\nContent-Type: text/plain\r\n\r\nin plain\r\n--a--\r\n"
       b"--o\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n\r\nxx\r\n"
       b"--o--\r\n")
NOTEXT = (b"Subject: pdf\r\nMIME-Version: 1.0\r\nContent-Type: application/pdf\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n")
LONG_UTF8 = (b"Subject: long\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
             + b"caf=C3=A9 " * 200 + b"\r\n")
HOSTILE = (b"Subject: hostile\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n"
           b"\r\n" + b"--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" * 300
           + b"--x\r\nContent-Type: text/plain; charset=bogus-charset\r\n\r\n\x01\xff\xfe ok"
           + b"<" * 5000 + b"\r\n--x--\r\n")

EXPECT = {
    "plain": "Hello Alice, lunch at noon?",
    "html": "Big & bold",
    "alt": "in plain",
    "pdf": "",
    "long": ("caf\u00e9 " * 52)[:256],
}


class PreviewBase:
    backend = "lmdb"

    def setUp(self):
        self.srv = own_server(self, backend=self.backend, listeners=("imap", "http"))
        self.c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=30)
        self.addCleanup(self.c.logout)
        self.c.login(*ALICE)
        for msg in (PLAIN, HTML, ALT, NOTEXT, LONG_UTF8):
            self.assertEqual(self.c.append("INBOX", None, None, msg)[0], "OK")
        self.c.select("INBOX")

    def previews(self, item="PREVIEW"):
        """{subject: preview} from one FETCH of every message."""
        typ, data = self.c.fetch("1:*", "(%s BODY.PEEK[HEADER.FIELDS (SUBJECT)])" % item)
        self.assertEqual(typ, "OK", data)
        out = {}
        i = 0
        while i < len(data):
            part = data[i]
            if isinstance(part, tuple):
                head = part[0]
                if re.search(rb"PREVIEW \{\d+\}$", head):
                    pv = part[1].decode()
                    hdr = data[i + 1][1]
                    i += 2
                else:
                    m = re.search(rb'PREVIEW "([^"]*)"', head)
                    pv = m.group(1).decode()
                    hdr = part[1]
                    i += 1
                subject = re.search(rb"Subject: (\w+)", hdr).group(1).decode()
                out[subject] = pv
            else:
                i += 1
        return out

    def test_capability(self):
        typ, data = self.c.capability()
        self.assertIn(b"PREVIEW", data[0].split())

    def test_previews(self):
        got = self.previews()
        self.assertEqual(got, EXPECT)
        self.assertEqual(len(got["long"]), 256)
        # made once, then read from the cache: the same again, LAZY too
        self.assertEqual(self.previews(), EXPECT)
        self.assertEqual(self.previews("PREVIEW (LAZY)"), EXPECT)
        # a COPY carries it
        self.assertEqual(self.c.create("Kept")[0], "OK")
        self.assertEqual(self.c.copy("1:*", "Kept")[0], "OK")
        self.c.select("Kept")
        self.assertEqual(self.previews(), EXPECT)

    def test_jmap_same_preview(self):
        j = Jmap(self.srv.port("http"), *ALICE)
        self.addCleanup(j.close)
        ids = j.call("Email/query", {})["ids"]
        got = j.call("Email/get", {"ids": ids, "properties": ["subject", "preview"]})["list"]
        self.assertEqual({e["subject"]: e["preview"] for e in got}, EXPECT)

    def test_bad_and_hostile(self):
        for bad in ("(PREVIEW (FOO))", "(PREVIEW ())", "(PREVIEW (LAZY FOO))", "PREVIEW.LAZY"):
            try:
                typ, data = self.c._simple_command("FETCH", "1", bad)
            except imaplib.IMAP4.error as e:
                typ = "BAD" if " BAD " in str(e) else "NO"
            self.assertEqual(typ, "BAD", bad)
        self.assertEqual(self.c.append("INBOX", None, None, HOSTILE)[0], "OK")
        typ, data = self.c.fetch("6", "(PREVIEW)")
        self.assertEqual(typ, "OK")
        self.assertIn(b"PREVIEW", data[0][0] if isinstance(data[0], tuple) else data[0])
        self.assertEqual(self.c.noop()[0], "OK")


backend_classes(globals(), PreviewBase, "TestImapPreview_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
