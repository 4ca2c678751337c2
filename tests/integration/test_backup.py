"""`roost backup` / `roost restore` while mail arrives, and `roost check --repair`.

The backup runs while a thread delivers over SMTP; the backup is restored
into a fresh data directory, a server started on it serves every message
acknowledged before the backup started (large bodies included), and
`roost check` passes. Restore never writes into a non-empty data directory.
A corrupted dovecot-uidlist makes SELECT fail; `roost check --repair`
rebuilds it and SELECT works with the same UIDs.
"""
import imaplib
import os
import shutil
import smtplib
import tempfile
import threading
import time
import unittest

from roosttest import BACKENDS, RoostServer, backend_classes, own_server

ALICE = ("alice@example.org", "alice-secret")


def subjects_and_uids(srv, mailbox="INBOX"):
    imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
    imap.login(*ALICE)
    typ, _ = imap.select(mailbox, readonly=True)
    assert typ == "OK"
    uidv = int(imap.response("UIDVALIDITY")[1][0])
    typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
    out = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(item[0].split(b"UID ")[1].split()[0].rstrip(b")"))
            out[uid] = item[1]
    imap.logout()
    return uidv, out


class BackupBase:
    backend = "lmdb"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="roost-backup-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.srv = own_server(self, backend=self.backend)

    def send(self, n, tag, big=False):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=30) as s:
            body = "line\r\n" * (30000 if big else 3)
            msg = "From: x@example.net\r\nSubject: %s %d\r\n\r\n%s" % (tag, n, body)
            s.sendmail("x@example.net", [ALICE[0]], msg)

    def test_backup_while_delivering_and_restore(self):
        for i in range(30):
            self.send(i, "before", big=(i % 10 == 0))
        uidv, before = subjects_and_uids(self.srv)
        self.assertEqual(len(before), 30)
        stop = threading.Event()
        sent = []

        def deliver():
            i = 0
            while not stop.is_set() and i < 2000:
                self.send(i, "during", big=(i % 7 == 0))
                sent.append(i)
                i += 1

        t = threading.Thread(target=deliver)
        t.start()
        try:
            while len(sent) < 5:
                time.sleep(0.01)
            dest = os.path.join(self.tmp, "bk")
            t0 = time.monotonic()
            res = self.srv.cli("backup", dest, timeout=300)
            secs = time.monotonic() - t0
            self.assertIn("copied to", res.stdout)
        finally:
            stop.set()
            t.join()
        self.assertTrue(os.path.exists(os.path.join(dest, "ROOST-BACKUP")))
        print("\n  backup (%s) during %d deliveries: %.2f s" % (self.backend, len(sent), secs))
        # the source is untouched and consistent
        self.assertIn("consistent", self.srv.cli("check").stdout)
        # restore into a fresh data directory and serve it
        new = RoostServer(backend=self.backend, users={})
        new.dir = tempfile.mkdtemp(prefix="roost-restore-")
        try:
            new.write_config()
            res = new.cli("restore", dest)
            self.assertIn("consistent", res.stdout)
            # never over existing data
            res = new.cli("restore", dest, check=False)
            self.assertEqual(res.returncode, 1)
            self.assertIn("not empty", res.stderr)
            new.launch()
            uidv2, after = subjects_and_uids(new)
            self.assertEqual(uidv2, uidv)
            for uid, body in before.items():
                self.assertEqual(after.get(uid), body, "UID %d lost or changed" % uid)
            self.assertGreaterEqual(len(after), len(before))
            # the restored store takes new mail
            with smtplib.SMTP("127.0.0.1", new.port("smtp"), timeout=30) as s:
                s.sendmail("x@example.net", [ALICE[0]], "Subject: after\r\n\r\nx\r\n")
            self.assertEqual(len(subjects_and_uids(new)[1]), len(after) + 1)
            self.assertIn("consistent", new.cli("check").stdout)
            new.stop()
        finally:
            new.kill()
            new.cleanup()

    def test_backup_refuses_non_empty_dir(self):
        dest = os.path.join(self.tmp, "full")
        os.makedirs(dest)
        open(os.path.join(dest, "x"), "w").close()
        res = self.srv.cli("backup", dest, check=False)
        self.assertEqual(res.returncode, 1)
        self.assertIn("not empty", res.stderr)
        res = self.srv.cli("restore", self.tmp, check=False)
        self.assertEqual(res.returncode, 1)
        self.assertIn("not a roost backup", res.stderr)

    def test_repair_healthy_store(self):
        for i in range(5):
            self.send(i, "m")
        res = self.srv.cli("check", "--repair")
        self.assertIn("repair done", res.stdout)
        self.assertIn("consistent", res.stdout)


class RepairMaildir(unittest.TestCase):
    def test_corrupted_uidlist(self):
        srv = own_server(self, backend="maildir")
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as s:
            for i in range(8):
                s.sendmail("x@example.net", [ALICE[0]], "Subject: %d\r\n\r\nx\r\n" % i)
        imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
        imap.login(*ALICE)
        imap.select("INBOX")
        imap.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
        imap.expunge()
        imap.logout()
        uidv, before = subjects_and_uids(srv)
        self.assertEqual(sorted(before), [1, 2, 4, 5, 6, 7, 8])
        path = os.path.join(srv.data_dir, "maildir", ALICE[0], "dovecot-uidlist")
        with open(path, "wb") as f:
            f.write(b"\x00garbage header\nnot a record\n")
        imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
        imap.login(*ALICE)
        typ, _ = imap.select("INBOX")
        self.assertEqual(typ, "NO")
        imap.logout()
        res = srv.cli("check", check=False)
        self.assertEqual(res.returncode, 1)
        res = srv.cli("check", "--repair")
        self.assertIn("dovecot-uidlist rebuilt", res.stdout)
        self.assertIn("0 new", res.stdout)
        self.assertIn("consistent", res.stdout)
        uidv2, after = subjects_and_uids(srv)
        self.assertEqual(uidv2, uidv)
        self.assertEqual(after, before)
        # a missing one too, while the server is up
        os.unlink(path)
        res = srv.cli("check", "--repair")
        self.assertIn("dovecot-uidlist rebuilt", res.stdout)
        self.assertEqual(subjects_and_uids(srv), (uidv, before))


backend_classes(globals(), BackupBase, "TestBackup_%s", BACKENDS)

if __name__ == "__main__":
    unittest.main()
