"""Real IMAP clients against roost: curl (imap:// and imaps://, fetch by
UID and section) and mbsync (two-way sync with flags, moves and deletions,
then a sync that transfers nothing)."""
import glob
import imaplib
import os
import re
import shutil
import subprocess
import unittest

from roosttest import Mbsync, SharedServer

USER, PASS = "alice@example.org", "alice-secret"


def msg(i, subject=None):
    return (b"From: sender%d@example.org\r\nTo: alice@example.org\r\n"
            b"Subject: %s\r\nMessage-ID: <m%d@example.org>\r\n"
            b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nBody number %d\r\n"
            % (i, (subject or ("message %d" % i)).encode(), i, i))


class TestImapClients(SharedServer, unittest.TestCase):
    server_options = {"listeners": ("imap", "imaps")}

    def imap(self):
        c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=20)
        c.login(USER, PASS)
        return c

    @unittest.skipIf(shutil.which("curl") is None, "curl not installed")
    def test_curl_fetch_by_uid_and_section(self):
        c = self.imap()
        c.create("CurlBox")
        body = (b"From: a@example.org\r\nSubject: curl\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                b"Content-Type: text/plain\r\n\r\npart one\r\n--b\r\n"
                b"Content-Type: text/plain\r\n\r\npart two\r\n--b--\r\n")
        typ, data = c.append("CurlBox", None, None, body)
        uid = re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1).decode()
        c.logout()
        for scheme, port, extra in (("imap", self.srv.port("imap"), []),
                                    ("imaps", self.srv.port("imaps"), ["-k"])):
            base = "%s://127.0.0.1:%d/CurlBox" % (scheme, port)
            out = subprocess.run(["curl", "-s", "-S", "--max-time", "20", "-u",
                                  "%s:%s" % (USER, PASS)] + extra + [base + ";UID=" + uid],
                                 capture_output=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout, body)
            out = subprocess.run(["curl", "-s", "-S", "--max-time", "20", "-u",
                                  "%s:%s" % (USER, PASS)] + extra
                                 + [base + ";UID=" + uid + ";SECTION=2"],
                                 capture_output=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout, b"part two")
            # listing with curl (LIST)
            out = subprocess.run(["curl", "-s", "-S", "--max-time", "20", "-u",
                                  "%s:%s" % (USER, PASS)] + extra
                                 + ["%s://127.0.0.1:%d/" % (scheme, port)],
                                 capture_output=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn(b"CurlBox", out.stdout)

    @unittest.skipIf(shutil.which("mbsync") is None, "mbsync (isync) not installed")
    def test_mbsync_two_way(self):
        c = self.imap()
        c.create("Sync")
        c.create("Sync/Archive")
        for i in range(1, 6):
            c.append("Sync", "(\\Seen)" if i == 1 else None, None, msg(i))
        c.logout()
        mb = Mbsync(self, self.srv.port("imap"), USER, PASS,
                    "Patterns Sync Sync/*\nCreate Both\nExpunge Both\nSyncState *\n"
                    "CopyArrivalDate yes\n", store="SubFolders Verbatim\n")
        maildir = mb.maildir

        def sync():
            rc, out = mb.run()
            self.assertEqual(rc, 0, out)
            return out

        sync()
        local = os.path.join(maildir, "Sync")
        files = sorted(glob.glob(os.path.join(local, "cur", "*"))
                       + glob.glob(os.path.join(local, "new", "*")))
        self.assertEqual(len(files), 5, files)
        seen = [f for f in files if re.search(r":2,[A-Z]*S", f)]
        self.assertEqual(len(seen), 1)

        def find(i):
            for f in glob.glob(os.path.join(local, "cur", "*")) + \
                    glob.glob(os.path.join(local, "new", "*")):
                with open(f, "rb") as fh:
                    if b"<m%d@example.org>" % i in fh.read():
                        return f
            raise AssertionError("message %d not found locally" % i)

        # local changes: flag 2, delete 3 (trashed), move 4 to Archive
        f2 = find(2)
        os.rename(f2, os.path.join(local, "cur", os.path.basename(f2).split(":")[0]
                                   + ":2,F"))
        f3 = find(3)
        os.rename(f3, os.path.join(local, "cur", os.path.basename(f3).split(":")[0]
                                   + ":2,T"))
        f4 = find(4)
        arch = os.path.join(maildir, "Sync", "Archive")
        if not os.path.isdir(os.path.join(arch, "cur")):
            arch = os.path.join(maildir, "Sync/Archive")
        # mbsync keeps its UID in the file name (,U=n); a moved file
        # must lose it to be treated as new
        newname = re.sub(r",U=\d+", "", os.path.basename(f4))
        os.rename(f4, os.path.join(arch, "cur", newname))
        # remote changes: a new message, and \Answered on 5
        c = self.imap()
        c.append("Sync", None, None, msg(6))
        c.select("Sync")
        typ, data = c.search(None, "HEADER", "Message-ID", "<m5@example.org>")
        c.store(data[0].decode(), "+FLAGS", "(\\Answered)")
        c.logout()

        sync()
        c = self.imap()
        c.select("Sync")

        def server_has(i, box="Sync"):
            c.select(box)
            typ, data = c.search(None, "HEADER", "Message-ID", "<m%d@example.org>" % i)
            return data[0].split()

        self.assertEqual(server_has(3), [])          # deleted locally -> gone
        self.assertEqual(server_has(4), [])          # moved away
        self.assertEqual(len(server_has(4, "Sync/Archive")), 1)
        n2 = server_has(2)
        typ, data = c.fetch(n2[0].decode(), "(FLAGS)")
        self.assertIn(b"\\Flagged", data[0])
        c.logout()
        self.assertIn("R", os.path.basename(find(5)).split(":2,")[1])
        find(6)

        # a third sync transfers nothing: both sides stay exactly as they are
        def snapshot():
            files = sorted(os.path.relpath(f, maildir)
                           for f in glob.glob(os.path.join(maildir, "**", "*"), recursive=True)
                           if os.path.isfile(f) and re.search(r"/(cur|new)/", f))
            c = self.imap()
            boxes = {}
            for box in ("Sync", "Sync/Archive"):
                c.select(box)
                typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
                boxes[box] = sorted(d.replace(b"\\Recent", b"") for d in data if d)
            c.logout()
            return files, boxes

        before = snapshot()
        out = sync()
        self.assertEqual(snapshot(), before, out)


if __name__ == "__main__":
    unittest.main()
