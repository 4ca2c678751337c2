"""SEARCH over encoded messages (quoted-printable, base64, encoded words) and
its work bounds: a key count cap and [imap] search_budget, both answering
NO [LIMIT], with the server's CPU time read from /proc. Both backends."""
import base64
import imaplib
import os
import re
import unittest

from roosttest import BACKENDS, SharedServer, backend_classes

ALICE = ("alice@example.org", "alice-secret")
BUDGET_MB = 64


def b64_lines(data, width=16):
    enc = base64.b64encode(data)
    return b"".join(enc[i:i + width] + b"\r\n" for i in range(0, len(enc), width))


# Latin-1 quoted-printable; a soft line break splits "Bananen=\r\nbrot".
M_QP = (b"From: Ann <ann@example.org>\r\n"
        b"To: alice@example.org\r\n"
        b"Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?=\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n"
        b"Gr=FC=DFe aus K=F6ln, mit einem St=FCck Bananen=\r\n"
        b"brot und =3D Zeichen.\r\n")

# UTF-8 base64, cut into short lines so words straddle them.
M_B64 = (b"From: Bob <bob@example.org>\r\n"
         b"To: alice@example.org\r\n"
         b"Subject: plain subject\r\n"
         b"MIME-Version: 1.0\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\n"
         b"Content-Transfer-Encoding: base64\r\n"
         b"\r\n"
         + b64_lines("Ein Gruß aus Zürich: Kirschkuchen für alle.\r\n".encode()))

# Multipart: a QP text part, a base64 HTML part, and an attachment whose
# words are not text and must not be found by BODY or TEXT.
M_MULTI = (b"From: Carol <carol@example.org>\r\n"
           b"To: alice@example.org\r\n"
           b"Subject: =?UTF-8?B?w4RwZmVs?=\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"B\"\r\n"
           b"\r\n"
           b"--B\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n"
           b"\r\n"
           b"Sch=C3=B6ne Gr=C3=BC=C3=9Fe, Pflaumen=\r\nmus\r\n"
           b"--B\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: base64\r\n"
           b"\r\n"
           + b64_lines("<p>Heidelbeeren und KÖLN</p>".encode()) +
           b"--B\r\n"
           b"Content-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: base64\r\n"
           b"\r\n"
           + b64_lines(b"geheimwort in a binary file") +
           b"--B--\r\n")


def qp_big(size):
    """A quoted-printable text of about size bytes that holds "abc" only at
    its very end, so every key scans all of it and matches."""
    line = b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln, der Text geht weiter und weiter =\r\n"
    return (b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: big\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            + line * (size // len(line)) + b"abc end\r\n")


def server_cpu(pid):
    """User + system CPU seconds of the whole server process (all threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SearchBase(SharedServer):
    backend = "lmdb"

    server_options = {"listeners": ("imap",), "conf": {"imap": {"search_budget": "%dM" % BUDGET_MB}}}

    def connect(self):
        c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=120)
        c.login(*ALICE)
        return c

    def search(self, c, *crit):
        """(tagged status, text, untagged SEARCH numbers) of one SEARCH."""
        c.untagged_responses.pop("SEARCH", None)
        try:
            typ, data = c._simple_command("SEARCH", *crit)
        except imaplib.IMAP4.error as e:
            return "ERR", str(e), None
        found = c.untagged_responses.pop("SEARCH", [None])[0]
        return typ, data[0], found

    def test_decoded_text(self):
        c = self.connect()
        self.assertEqual(c.create("Enc")[0], "OK")
        for m in (M_QP, M_B64, M_MULTI):
            self.assertEqual(c.append("Enc", None, None, m)[0], "OK")
        c.select("Enc")
        cases = [
            ("BODY bananenbrot", b"1"),          # joined across a QP soft break
            ("BODY K\u00f6ln", b"1 3"),          # Latin-1 QP and base64 HTML, folded
            ("BODY K\u00d6LN", b"1 3"),
            ("BODY =F6", b""),                   # the encoded form is not the text
            ("BODY \"= Zeichen\"", b"1"),       # "=3D" decodes to "="
            ("BODY kirschkuchen", b"2"),         # base64 across line breaks
            ("BODY Z\u00dcRICH", b"2"),
            ("BODY pflaumenmus", b"3"),
            ("BODY heidelbeeren", b"3"),
            ("BODY geheimwort", b""),            # not a text part
            ("TEXT geheimwort", b""),
            ("BODY caf\u00e9", b""),             # header only
            ("TEXT CAF\u00c9", b"1"),            # header encoded word, folded
            ("SUBJECT cr\u00e8me", b"1"),
            ("HEADER Subject \u00e4pfel", b"3"),
            ("HEADER Subject plain", b"2"),
            ("HEADER X-Absent \"\"", b""),
            ("HEADER To \"\"", b"1 2 3"),
            ("BODY \"\"", b"1 2 3"),
            ("TEXT ann", b"1"),
            ("BODY bananenbrot BODY k\u00f6ln", b"1"),
            ("OR BODY kirschkuchen BODY pflaumenmus", b"2 3"),
            ("TEXT gr\u00fc\u00dfe", b"1 3"),
            ("NOT BODY bananenbrot TEXT gr\u00fc\u00dfe", b"3"),
            ("NOT TEXT gr\u00fc\u00dfe", b"2"),
        ]
        for crit, want in cases:
            key, _, text = crit.rpartition(" ")
            if text.isascii():
                got = self.search(c, crit)
            else:
                c.literal = text.encode()
                got = self.search(c, "CHARSET", "UTF-8", key)
            self.assertEqual((crit, got[0], got[2]), (crit, "OK", want))
        c.logout()

    def test_key_cap(self):
        c = self.connect()
        c.select("INBOX")
        self.assertEqual(self.search(c, " ".join(["ALL"] * 1000))[0], "OK")
        typ, text, _ = self.search(c, " ".join(["ALL"] * 1001))
        self.assertEqual(typ, "NO")
        self.assertIn(b"[LIMIT]", text)
        typ, text, _ = self.search(c, "NOT (" + " ".join(["ALL"] * 999) + ")")
        self.assertEqual(typ, "NO")                # the list and NOT count too
        self.assertIn(b"[LIMIT]", text)
        # the connection goes on
        self.assertEqual(self.search(c, "ALL")[0], "OK")
        c.logout()

    def test_amplification_bounded(self):
        """One 15 MB quoted-printable message and many TEXT keys: before,
        every key decoded and folded the whole body again (minutes of CPU);
        now the text is made once and the work stops at the budget."""
        c = self.connect()
        self.assertEqual(c.create("Big")[0], "OK")
        self.assertEqual(c.append("Big", None, None, qp_big(15 << 20))[0], "OK")
        c.select("Big")
        pid = self.srv.proc.pid

        # 2,000 keys, an 18 KB line: refused by the key cap at once.
        t0 = server_cpu(pid)
        typ, text, _ = self.search(c, " ".join(["TEXT abc"] * 2000))
        self.assertEqual((typ, b"[LIMIT]" in text), ("NO", True), text)
        self.assertLess(server_cpu(pid) - t0, 5)

        # 500 keys: each scans ~11 MB of text; the 64 MB budget stops it
        # after a few. Without the fix this took over a minute of CPU.
        t0 = server_cpu(pid)
        typ, text, _ = self.search(c, " ".join(["TEXT abc"] * 500))
        used = server_cpu(pid) - t0
        self.assertEqual((typ, b"[LIMIT]" in text), ("NO", True), text)
        self.assertLess(used, 30)

        # Within the budget, several keys over the one decoded copy.
        typ, _, found = self.search(c, "TEXT abc BODY ABC TEXT \"abc end\"")
        self.assertEqual((typ, found), ("OK", b"1"))
        self.assertIn("event=search_limit", self.srv.log())
        c.logout()


backend_classes(globals(), SearchBase, "TestImapSearch_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
