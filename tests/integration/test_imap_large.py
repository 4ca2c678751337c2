"""A multi-megabyte message over IMAP on LMDB, whose large bodies live in
files beside the environment: APPEND stores it (one body file, synced
before the commit), FETCH returns every byte, COPY shares the file, EXPUNGE
of the last copy removes it, and `roost check` finds the store consistent
at each step, also while the server runs."""
import imaplib
import os
import random
import unittest

from roosttest import SharedServer

USER = "alice@example.org"
PASS = "alice-secret"
SIZE = 8 * 1024 * 1024


def make_message(size, seed):
    rnd = random.Random(seed)
    head = (b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\n"
            b"Subject: large\r\n\r\n")
    lines = []
    n = len(head)
    while n < size:
        line = b"%064x\r\n" % rnd.getrandbits(256)
        lines.append(line)
        n += len(line)
    return head + b"".join(lines)


class LargeMessageLmdb(SharedServer, unittest.TestCase):
    server_options = {"backend": "lmdb", "listeners": ("imap",),
                      "conf": {"limits": {"max_message_size": "40M"},
                               "server": {"log_level": "info"}}}

    def body_files(self):
        blobs = os.path.join(self.srv.data_dir, "lmdb", "blobs")
        return sorted(f for f in os.listdir(blobs) if len(f) == 64 + 1 + 16)

    def check(self):
        res = self.srv.cli("check", check=False)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)

    def test_append_fetch_copy_expunge(self):
        msg = make_message(SIZE, 1)
        before = self.body_files()
        c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=120)
        try:
            c.login(USER, PASS)
            typ, _ = c.create("Large")
            self.assertEqual(typ, "OK")
            typ, data = c.append("Large", None, None, msg)
            self.assertEqual(typ, "OK", data)
            files = self.body_files()
            self.assertEqual(len(files), len(before) + 1)
            with open(os.path.join(self.srv.data_dir, "lmdb", "blobs",
                                   (set(files) - set(before)).pop()), "rb") as f:
                self.assertEqual(f.read(), msg)
            self.check()

            typ, _ = c.select("Large")
            self.assertEqual(typ, "OK")
            typ, data = c.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            self.assertIn(b"RFC822.SIZE %d" % len(msg), data[0][0])
            self.assertEqual(data[0][1], msg)
            typ, data = c.fetch("1", "(BODY.PEEK[]<4000000.100>)")
            self.assertEqual(typ, "OK")
            self.assertEqual(data[0][1], msg[4000000:4000100])

            # A copy refers to the same file.
            typ, _ = c.copy("1", "INBOX")
            self.assertEqual(typ, "OK")
            self.assertEqual(len(self.body_files()), len(before) + 1)
            typ, _ = c.store("1", "+FLAGS.SILENT", "(\\Deleted)")
            self.assertEqual(typ, "OK")
            typ, _ = c.expunge()
            self.assertEqual(typ, "OK")
            self.assertEqual(len(self.body_files()), len(before) + 1)

            typ, _ = c.select("INBOX")
            self.assertEqual(typ, "OK")
            typ, data = c.search(None, "SUBJECT", "large")
            self.assertEqual(typ, "OK")
            seq = data[0].split()[-1]
            typ, data = c.fetch(seq, "(BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            self.assertEqual(data[0][1], msg)
            # The last reference takes the file with it.
            typ, _ = c.store(seq, "+FLAGS.SILENT", "(\\Deleted)")
            self.assertEqual(typ, "OK")
            typ, _ = c.expunge()
            self.assertEqual(typ, "OK")
            self.assertEqual(self.body_files(), before)
            self.check()
            c.logout()
        finally:
            try:
                c.shutdown()
            except OSError:
                pass


if __name__ == "__main__":
    unittest.main()
