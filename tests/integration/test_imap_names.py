"""Mailbox names at the edges, over IMAP, on both backends: the length rule
(the same for LMDB and Maildir, NO [CANNOT] past it, no parent left behind)
and control characters hidden in modified UTF-7 ("a&AAA-b" is not "a")."""
import base64
import imaplib
import unittest

from roosttest import BACKENDS, SharedServer, backend_classes

ALICE = ("alice@example.org", "alice-secret")
MAX_STORED = 254    # STORAGE_MAX_NAME_STORED


def mutf7(text):
    """Modified UTF-7 of text made only of non-ASCII characters."""
    b64 = base64.b64encode(text.encode("utf-16-be")).decode().rstrip("=")
    return "&" + b64.replace("/", ",") + "-"


class NamesBase(SharedServer):
    backend = "lmdb"

    server_options = {"listeners": ("imap",)}

    def setUp(self):
        self.c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=30)
        self.c.login(*ALICE)

    def tearDown(self):
        self.c.logout()

    def names(self):
        typ, data = self.c.list('""', "*")
        self.assertEqual(typ, "OK")
        out = []
        for line in data:
            # (attrs) "/" name: the name is the last token, quoted or not
            name = line.decode().split(' "/" ', 1)[1]
            out.append(name.strip('"'))
        return out

    def refused(self, cmd, *args):
        """Run cmd; return its tagged text, asserting NO [CANNOT]."""
        typ, data = self.c._simple_command(cmd, *args)
        self.assertEqual(typ, "NO", (cmd, args, data))
        self.assertIn(b"[CANNOT]", data[0])
        return data[0]

    def test_length_rule(self):
        before = self.names()
        self.refused("CREATE", "a" * 300)
        self.refused("CREATE", "p/" + "c" * 300)         # no "p" left behind
        self.refused("CREATE", "b" * (MAX_STORED + 1))
        self.assertEqual(self.names(), before)
        self.assertNotIn("p", self.names())

        longest = "a" * MAX_STORED
        self.assertEqual(self.c.create(longest)[0], "OK")
        self.assertEqual(self.c.append(longest, None, None, b"Subject: x\r\n\r\nx\r\n")[0], "OK")
        typ, data = self.c.select(longest)
        self.assertEqual((typ, data[0]), ("OK", b"1"))
        self.c.close()
        # Counted as stored: each "\u00e9" alone costs its base64 run.
        self.assertEqual(self.c.create(mutf7("\u00e9" * 94))[0], "OK")   # 253 stored
        self.refused("CREATE", mutf7("\u00e8" * 95))     # 190 bytes of UTF-8, 256 stored
        self.refused("SELECT", "z" * 300)
        self.refused("STATUS", "z" * 300, "(MESSAGES)")

        # A rename that would make a child too long moves nothing.
        child = "r/" + "c" * (MAX_STORED - 2)
        self.assertEqual(self.c.create(child)[0], "OK")
        self.refused("RENAME", "r", "rr")
        self.assertIn(child, self.names())
        self.assertNotIn("rr", self.names())

    def test_control_characters_in_mutf7(self):
        before = self.names()
        for name in ("a&AAA-b", "&AAA-", "x&AB8-", "y&AH8-", "c1&AJ8-"):
            self.refused("CREATE", name)
            self.refused("SELECT", name)
        self.assertEqual(self.names(), before)
        self.assertNotIn("a", self.names())
        # The first character past C1 is a name like any other.
        self.assertEqual(self.c.create("nbsp&AKA-")[0], "OK")
        self.assertIn("nbsp&AKA-", self.names())

    def test_names_with_dots_and_punctuation(self):
        """'.' and '%' are ordinary characters of a name on both backends
        (Maildir++ escapes them on disk): a user files mail under them and
        a migration brings them over."""
        made = ["Mr. Smith", "v1.2", "Projects/2024.Q1", "100%", "a.b", "a/b",
                "Caf\u00e9.Bar", "x!#$'()*+,-;<=>?@[]^_`{|}~y"]
        for name in made:
            wire = name.encode("utf-8") if name.isascii() else mutf7_name(name)
            typ, data = self.c._simple_command("CREATE", quote(wire))
            self.assertEqual(typ, "OK", (name, data))
            typ, data = self.c.append(quote(wire), None, None,
                                      b"Subject: " + wire + b"\r\n\r\nx\r\n")
            self.assertEqual(typ, "OK", (name, data))
        listed = self.names()
        for name in made:
            self.assertIn(name if name.isascii() else mutf7_name(name).decode(), listed)
        self.assertNotIn("Mr", listed)
        self.assertIn("Projects", listed)
        typ, data = self.c.select(quote(b"Mr. Smith"))
        self.assertEqual((typ, data[0]), ("OK", b"1"))
        self.c.close()
        typ, data = self.c._simple_command("RENAME", quote(b"Projects"), quote(b"Proj.2025"))
        self.assertEqual(typ, "OK", data)
        self.assertIn("Proj.2025/2024.Q1", self.names())
        typ, data = self.c.status(quote(b"Proj.2025/2024.Q1"), "(MESSAGES)")
        self.assertEqual(typ, "OK")
        self.assertIn(b"MESSAGES 1", data[0])
        # "." and ".." alone stay refused
        for name in (b".", b"..", b"x/.."):
            typ, data = self.c._simple_command("CREATE", quote(name))
            self.assertEqual(typ, "NO", (name, data))


def quote(name):
    return b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def mutf7_name(text):
    """Modified UTF-7 of a name mixing ASCII and other characters."""
    out, run = b"", ""
    for ch in text + "\0":
        if ch != "\0" and not (0x20 <= ord(ch) < 0x7f):
            run += ch
            continue
        if run:
            out += mutf7(run).encode()
            run = ""
        if ch == "&":
            out += b"&-"
        elif ch != "\0":
            out += ch.encode()
    return out


backend_classes(globals(), NamesBase, "TestImapNames_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
