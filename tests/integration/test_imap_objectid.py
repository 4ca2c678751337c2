"""OBJECTID (RFC 8474) over raw IMAP on every backend: MAILBOXID from CREATE,
SELECT and STATUS, stable across RENAME and a restart, new for a mailbox made
again under its old name; EMAILID kept by COPY and MOVE and across a restart;
THREADID shared by a thread's messages; SEARCH EMAILID/THREADID; hostile
object ids answered BAD."""
import imaplib
import re
import unittest

from roosttest import BACKENDS, backend_classes, own_server

ALICE = ("alice@example.org", "alice-secret")

ROOT = (b"Message-ID: <root@example.org>\r\nSubject: plan\r\n\r\nfirst\r\n")
REPLY = (b"Message-ID: <r1@example.org>\r\nIn-Reply-To: <root@example.org>\r\n"
         b"References: <root@example.org>\r\nSubject: Re: plan\r\n\r\nsecond\r\n")
REPLY2 = (b"Message-ID: <r2@example.org>\r\nIn-Reply-To: <r1@example.org>\r\n"
          b"References: <root@example.org>\r\n <r1@example.org>\r\nSubject: Re: plan\r\n\r\n"
          b"third\r\n")
OTHER = b"Message-ID: <else@example.org>\r\nSubject: other\r\n\r\nfourth\r\n"
NOIDS = b"Subject: no ids\r\n\r\nfifth\r\n"


class ObjectIdBase:
    backend = "lmdb"

    def setUp(self):
        self.srv = own_server(self, backend=self.backend, listeners=("imap",))
        self.c = self.connect()

    def tearDown(self):
        try:
            self.c.logout()
        except Exception:
            pass

    def connect(self):
        c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=30)
        c.login(*ALICE)
        return c

    def expect(self, status, *args):
        """Run a command that must fail with status (imaplib raises on BAD)."""
        try:
            typ, data = self.c._simple_command(*args)
        except imaplib.IMAP4.error as e:
            typ, data = ("BAD" if " BAD " in str(e) else "NO"), [str(e)]
        self.assertEqual(typ, status, (args, data))

    def mailboxid_create(self, name):
        typ, data = self.c._simple_command("CREATE", name)
        self.assertEqual(typ, "OK", data)
        m = re.search(rb"\[MAILBOXID \(([A-Za-z0-9_-]+)\)\]", data[0])
        self.assertIsNotNone(m, data)
        return m.group(1).decode()

    def mailboxid_status(self, name):
        typ, data = self.c.status(name, "(MAILBOXID MESSAGES)")
        self.assertEqual(typ, "OK", data)
        m = re.search(rb"MAILBOXID \(([A-Za-z0-9_-]+)\)", data[0])
        self.assertIsNotNone(m, data)
        return m.group(1).decode()

    def ids(self, name):
        """{uid: (emailid, threadid)} of mailbox name."""
        self.c.select(name)
        typ, data = self.c.uid("FETCH", "1:*", "(EMAILID THREADID)")
        self.assertEqual(typ, "OK", data)
        out = {}
        for line in data:
            if line is None:
                continue
            text = line.decode()
            uid = int(re.search(r"UID (\d+)", text).group(1))
            e = re.search(r"EMAILID \((M[0-9a-f]{16})\)", text).group(1)
            t = re.search(r"THREADID \((T[0-9a-f]{16})\)", text).group(1)
            out[uid] = (e, t)
        return out

    def test_capability(self):
        typ, data = self.c.capability()
        self.assertIn(b"OBJECTID", data[0].split())

    def test_mailboxid(self):
        mid = self.mailboxid_create("Projects")
        self.assertEqual(self.mailboxid_status("Projects"), mid)
        other = self.mailboxid_create("Other")
        self.assertNotEqual(other, mid)
        typ, data = self.c.select("Projects")
        self.assertEqual(typ, "OK")
        self.assertEqual(self.c.untagged_responses.get("OK") and
                         [x for x in self.c.response("MAILBOXID")[1] if x],
                         [b"(" + mid.encode() + b")"])
        self.c.close()
        self.assertEqual(self.c.rename("Projects", "Archive/Projects")[0], "OK")
        self.assertEqual(self.mailboxid_status("Archive/Projects"), mid)
        # made again under the old name: another mailbox, another id
        again = self.mailboxid_create("Projects")
        self.assertNotEqual(again, mid)
        # deleted and made again
        self.assertEqual(self.c.delete("Other")[0], "OK")
        self.assertNotEqual(self.mailboxid_create("Other"), other)
        # across a restart
        self.c.logout()
        self.srv.stop()
        self.srv.launch()
        self.c = self.connect()
        self.assertEqual(self.mailboxid_status("Archive/Projects"), mid)
        self.assertEqual(self.mailboxid_status("Projects"), again)

    def test_emailid_threadid(self):
        for msg in (ROOT, REPLY, REPLY2, OTHER, NOIDS):
            self.assertEqual(self.c.append("INBOX", None, None, msg)[0], "OK")
        self.assertEqual(self.c.append("INBOX", None, None, ROOT)[0], "OK")  # same bytes again
        ids = self.ids("INBOX")
        self.assertEqual(len(ids), 6)
        emails = [ids[u][0] for u in sorted(ids)]
        threads = [ids[u][1] for u in sorted(ids)]
        self.assertEqual(len(set(emails)), 6, emails)     # every message its own EMAILID
        self.assertEqual(threads[0], threads[1])          # root and its replies
        self.assertEqual(threads[0], threads[2])
        self.assertEqual(threads[0], threads[5])
        self.assertNotEqual(threads[0], threads[3])
        self.assertNotIn(threads[4], (threads[0], threads[3]))

        # SEARCH EMAILID / THREADID
        typ, data = self.c.uid("SEARCH", "EMAILID", emails[3])
        self.assertEqual(data[0].split(), [str(sorted(ids)[3]).encode()])
        typ, data = self.c.uid("SEARCH", "THREADID", threads[0])
        self.assertEqual(sorted(int(x) for x in data[0].split()),
                         [sorted(ids)[i] for i in (0, 1, 2, 5)])
        typ, data = self.c.uid("SEARCH", "EMAILID", "Mdoesnotexist")
        self.assertEqual((typ, data[0]), ("OK", b""))
        typ, data = self.c.uid("SEARCH", "NOT", "THREADID", threads[0])
        self.assertEqual(len(data[0].split()), 2)

        # COPY and MOVE keep the EMAILID, and so does a restart
        uids = sorted(ids)
        self.assertEqual(self.c.create("Kept")[0], "OK")
        self.assertEqual(self.c.uid("COPY", str(uids[0]), "Kept")[0], "OK")
        self.c.select("INBOX")
        self.assertEqual(self.c.uid("MOVE", str(uids[3]), "Kept")[0], "OK")
        kept = self.ids("Kept")
        self.assertEqual(sorted(e for e, _ in kept.values()), sorted([emails[0], emails[3]]))
        self.assertEqual(sorted(t for _, t in kept.values()), sorted([threads[0], threads[3]]))
        self.c.logout()
        self.srv.stop()
        self.srv.launch()
        self.c = self.connect()
        self.assertEqual(self.ids("Kept"), kept)
        again = self.ids("INBOX")
        self.assertEqual(again[uids[1]], ids[uids[1]])
        self.assertNotIn(uids[3], again)

    def test_hostile(self):
        self.assertEqual(self.c.append("INBOX", None, None, ROOT)[0], "OK")
        self.c.select("INBOX")
        for bad in ("M%00x", "a" * 256, "M-{}", '""'):
            self.expect("BAD", "SEARCH", "EMAILID", bad)
            self.expect("BAD", "SEARCH", "THREADID", bad)
        self.expect("BAD", "SEARCH", "EMAILID")
        self.expect("BAD", "STATUS", "INBOX", "(MAILBOXID BOGUS)")
        self.expect("NO", "STATUS", "Nope", "(MAILBOXID)")
        # a header with hostile ids: still one answer, the connection fine
        hostile = (b"Message-ID: <" + b"x" * 5000 + b">\r\nReferences: <<<>>> <a\x01b> <"
                   + b"y" * 2000 + b"\r\nIn-Reply-To: \r\n\r\nbody\r\n")
        self.assertEqual(self.c.append("INBOX", None, None, hostile)[0], "OK")
        typ, data = self.c.uid("FETCH", "1:*", "(THREADID EMAILID)")
        self.assertEqual(typ, "OK")
        self.assertEqual(len([d for d in data if d is not None]), 2)
        self.assertEqual(self.c.noop()[0], "OK")


backend_classes(globals(), ObjectIdBase, "TestImapObjectId_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
