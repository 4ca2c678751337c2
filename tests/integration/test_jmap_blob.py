"""JMAP Blob/copy (RFC 8620 6.3) and the edge cases of Email/import (RFC
8621 4.8) against the real server, on both backends: uploaded blobs, whole
messages and body parts are found, others are blobNotFound; another
account is fromAccountNotFound; an import of something that is no message,
of a missing or oversized blob, with a stale ifInState or bad properties
gets its SetError, and an import that works is what IMAP then reads."""
import imaplib
import smtplib
import unittest

from jmapclient import Jmap
from roosttest import BACKENDS, DEFAULT_USERS, RoostServer

MULTI = (b"From: Carol <carol@example.org>\r\nTo: alice@example.org\r\nSubject: parts\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
         b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
         b"--b\r\nContent-Type: application/octet-stream\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n")


class Blobs:
    backend = "lmdb"

    def setUp(self):
        self.srv = RoostServer(backend=self.backend, listeners=("http", "smtp", "imap"),
                               users=dict(DEFAULT_USERS),
                               conf={"limits": {"max_message_size": "200000"}})
        self.srv.start()
        self.addCleanup(self.srv.stop)
        self.j = Jmap(self.srv.port("http"), "alice@example.org", "alice-secret")
        self.addCleanup(self.j.close)

    def test_blob_copy(self):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=20) as s:
            s.sendmail("carol@example.org", ["alice@example.org"], MULTI)
        [eid] = self.j.query()
        e = self.j.call("Email/get", {"ids": [eid], "properties": ["blobId", "attachments"]})
        e = e["list"][0]
        part = e["attachments"][0]["blobId"]
        up = self.j.upload(b"some bytes")["blobId"]
        acc = self.j.acc
        r = self.j.call("Blob/copy", {"fromAccountId": acc,
                                      "blobIds": [up, e["blobId"], part, "Unope",
                                                  "U" + "0" * 40, part[:-1] + "9",
                                                  "B" + "0" * 16, "../etc/passwd", ""]})
        self.assertEqual(r["copied"], {up: up, e["blobId"]: e["blobId"], part: part})
        self.assertEqual(sorted(r["notCopied"]), sorted(["Unope", "U" + "0" * 40,
                                                         part[:-1] + "9", "B" + "0" * 16,
                                                         "../etc/passwd", ""]))
        self.assertTrue(all(v["type"] == "blobNotFound" for v in r["notCopied"].values()))
        # the copied blob is usable in the account
        st, body = self.j.get("/jmap/download/%s/%s/a.bin" % (acc, r["copied"][part]))
        self.assertEqual((st, body), (200, b"\x00\x01\x02\x03"))
        b = Jmap(self.srv.port("http"), "bob@example.org", "bob-secret")
        self.addCleanup(b.close)
        resp = self.j.api([
            ["Blob/copy", {"accountId": acc, "fromAccountId": b.acc, "blobIds": [up]}, "x"],
            ["Blob/copy", {"accountId": b.acc, "fromAccountId": acc, "blobIds": [up]}, "y"],
            ["Blob/copy", {"accountId": acc, "fromAccountId": acc, "blobIds": "U1"}, "z"],
            ["Blob/copy", {"accountId": acc, "fromAccountId": acc, "blobIds": [1]}, "w"],
            ["Blob/copy", {"accountId": acc, "fromAccountId": acc,
                           "blobIds": ["U"] * 501}, "v"],
            ["Blob/copy", {"accountId": acc, "fromAccountId": acc, "blobIds": []}, "u"],
        ], using=["urn:ietf:params:jmap:core"])
        out = {x[2]: x for x in resp}
        self.assertEqual(out["x"][1]["type"], "fromAccountNotFound")
        self.assertEqual(out["y"][1]["type"], "accountNotFound")
        self.assertEqual(out["z"][1]["type"], "invalidArguments")
        self.assertEqual(out["w"][1]["type"], "invalidArguments")
        self.assertEqual(out["v"][1]["type"], "requestTooLarge")
        self.assertEqual((out["u"][1]["copied"], out["u"][1]["notCopied"]), (None, None))
        # bob cannot name alice's blob in his own account
        r = b.call("Blob/copy", {"fromAccountId": b.acc, "blobIds": [up]})
        self.assertEqual(list(r["notCopied"]), [up])

    def test_import_edge_cases(self):
        boxes = self.j.mailboxes()
        inbox = {boxes["inbox"]["id"]: True}
        good = self.j.upload(b"Subject: imported\r\nMessage-ID: <imp@x>\r\n\r\nbody\r\n",
                             "message/rfc822")["blobId"]
        png = self.j.upload(b"\x89PNG\r\n\x1a\n\x00\x00", "image/png")["blobId"]
        empty = self.j.upload(b"")["blobId"]
        mbox = self.j.upload(b"From bob Tue Oct  1 10:00:00 2024\r\nSubject: x\r\n\r\n")["blobId"]
        # a blob past max_message_size cannot be uploaded at all
        st, _, _ = self.j.request("POST", "/jmap/upload/%s/" % self.j.acc, b"x" * 300000,
                                  {"Content-Type": "text/plain"})
        self.assertEqual(st, 413)
        state = self.j.call("Email/get", {"ids": []})["state"]
        r = self.j.call("Email/import", {"emails": {
            "ok": {"blobId": good, "mailboxIds": inbox, "keywords": {"$flagged": True},
                   "receivedAt": "2020-02-29T12:00:00+01:00"},
            "png": {"blobId": png, "mailboxIds": inbox},
            "empty": {"blobId": empty, "mailboxIds": inbox},
            "mbox": {"blobId": mbox, "mailboxIds": inbox},
            "noblob": {"mailboxIds": inbox},
            "gone": {"blobId": "U" + "f" * 40, "mailboxIds": inbox},
            "nobox": {"blobId": good, "mailboxIds": {}},
            "badbox": {"blobId": good, "mailboxIds": {"Mnope": True}},
            "twoboxes": {"blobId": good, "mailboxIds": {boxes["inbox"]["id"]: True,
                                                        boxes["archive"]["id"]: True}},
            "badkw": {"blobId": good, "mailboxIds": inbox, "keywords": {"a b": True}},
            "baddate": {"blobId": good, "mailboxIds": inbox, "receivedAt": "yesterday"},
            "notobj": "x"}})
        self.assertEqual(list(r["created"]), ["ok"])
        nc = {k: v["type"] for k, v in r["notCreated"].items()}
        self.assertEqual(nc, {"png": "invalidEmail", "empty": "invalidEmail",
                              "mbox": "invalidEmail", "noblob": "invalidProperties",
                              "gone": "blobNotFound", "nobox": "invalidProperties",
                              "badbox": "invalidProperties", "twoboxes": "invalidProperties",
                              "badkw": "invalidProperties", "baddate": "invalidProperties",
                              "notobj": "invalidProperties"})
        self.assertEqual(r["oldState"], state)
        got = self.j.call("Email/get", {"ids": [r["created"]["ok"]["id"]],
                                        "properties": ["receivedAt", "keywords", "subject"]})
        self.assertEqual(got["list"][0]["receivedAt"], "2020-02-29T11:00:00Z")
        self.assertEqual(got["list"][0]["keywords"], {"$flagged": True})
        # IMAP reads what was imported
        m = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=20)
        m.login("alice@example.org", "alice-secret")
        self.addCleanup(m.logout)
        m.select("INBOX")
        typ, data = m.fetch("1", "(FLAGS BODY[HEADER.FIELDS (SUBJECT)])")
        self.assertIn(b"\\Flagged", data[0][0])
        self.assertIn(b"imported", data[0][1])
        # a stale ifInState changes nothing
        resp = self.j.api([["Email/import", {"accountId": self.j.acc, "ifInState": state,
                                             "emails": {"again": {"blobId": good,
                                                                  "mailboxIds": inbox}}},
                            "0"]])
        self.assertEqual(resp[0][1]["type"], "stateMismatch")
        self.assertEqual(len(self.j.query()), 1)


class BlobsLmdb(Blobs, unittest.TestCase):
    backend = "lmdb"


class BlobsMaildir(Blobs, unittest.TestCase):
    backend = "maildir"


for _cls in (BlobsLmdb, BlobsMaildir):
    if _cls.backend not in BACKENDS:
        del globals()[_cls.__name__]
del _cls

if __name__ == "__main__":
    unittest.main()
