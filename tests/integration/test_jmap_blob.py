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
from roosttest import JmapMailTest, backend_classes

MULTI = (b"From: Carol <carol@example.org>\r\nTo: alice@example.org\r\nSubject: parts\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
         b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
         b"--b\r\nContent-Type: application/octet-stream\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n")


class Blobs(JmapMailTest):
    server_options = {"conf": {"limits": {"max_message_size": "200000"}}}

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

    def test_blob_get(self):
        """RFC 9404 Blob/get: bytes as text or base64, ranges, digests, byte
        for byte against what was uploaded and what IMAP reads."""
        import base64
        import hashlib
        blob = "urn:ietf:params:jmap:blob"
        self.assertIn(blob, self.j.session["capabilities"])
        acaps = self.j.session["accounts"][self.j.acc]["accountCapabilities"][blob]
        self.assertEqual(sorted(acaps["supportedDigestAlgorithms"]), ["sha", "sha-256"])
        using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", blob]
        binary = bytes(range(256)) * 40 + b"\xff\xfe"
        text = "h\u00e9llo w\u00f6rld \u2603\n".encode()
        ub = self.j.upload(binary)["blobId"]
        ut = self.j.upload(text, "text/plain")["blobId"]
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=20) as s:
            s.sendmail("carol@example.org", ["alice@example.org"], MULTI)
        [eid] = self.j.query()
        e = self.j.call("Email/get", {"ids": [eid], "properties": ["blobId", "attachments"]})
        e = e["list"][0]
        m = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"))
        m.login("alice@example.org", "alice-secret")
        m.select("INBOX")
        raw = m.fetch("1", "(BODY.PEEK[])")[1][0][1]
        m.logout()

        def get(ids, **kw):
            args = {"accountId": self.j.acc, "ids": ids}
            args.update(kw)
            resp = self.j.api([["Blob/get", args, "0"]], using=using)
            return resp[0][1]

        r = get([ub, ut, e["blobId"], e["attachments"][0]["blobId"], "Unope", ub],
                properties=["data:asBase64", "data:asText", "size", "digest:sha",
                            "digest:sha-256"])
        self.assertEqual(r["notFound"], ["Unope"])
        got = {o["id"]: o for o in r["list"]}
        self.assertEqual(len(r["list"]), 4)
        for bid, want in ((ub, binary), (ut, text), (e["blobId"], raw),
                          (e["attachments"][0]["blobId"], b"\x00\x01\x02\x03")):
            o = got[bid]
            self.assertEqual(base64.b64decode(o["data:asBase64"]), want, bid)
            self.assertEqual(o["size"], len(want))
            self.assertEqual(o["digest:sha"], base64.b64encode(hashlib.sha1(want).digest()).decode())
            self.assertEqual(o["digest:sha-256"],
                             base64.b64encode(hashlib.sha256(want).digest()).decode())
        self.assertEqual(got[ut]["data:asText"], text.decode())
        self.assertIsNone(got[ub]["data:asText"])
        self.assertTrue(got[ub]["isEncodingProblem"])
        # the default properties: data (text when it is UTF-8) and size
        r = get([ut, ub])
        self.assertEqual(r["list"][0], {"id": ut, "data:asText": text.decode(), "size": len(text)})
        self.assertEqual(base64.b64decode(r["list"][1]["data:asBase64"]), binary)
        # ranges
        r = get([ub], offset=250, length=10, properties=["data:asBase64", "digest:sha-256"])
        o = r["list"][0]
        self.assertEqual(base64.b64decode(o["data:asBase64"]), binary[250:260])
        self.assertEqual(o["digest:sha-256"],
                         base64.b64encode(hashlib.sha256(binary[250:260]).digest()).decode())
        self.assertNotIn("isTruncated", o)
        r = get([ut], offset=len(text) - 3, length=100, properties=["data:asBase64", "size"])
        o = r["list"][0]
        self.assertEqual(base64.b64decode(o["data:asBase64"]), text[-3:])
        self.assertTrue(o["isTruncated"])
        r = get([ut], offset=10 ** 12, properties=["data:asBase64"])
        self.assertEqual((r["list"][0]["data:asBase64"], r["list"][0]["isTruncated"]), ("", True))
        # a range that cuts a character in two is not text
        r = get([ut], offset=1, length=1, properties=["data"])
        self.assertEqual(base64.b64decode(r["list"][0]["data:asBase64"]), text[1:2])
        # errors
        acc = self.j.acc
        resp = self.j.api([
            ["Blob/get", {"accountId": acc, "ids": [ub], "properties": ["digest:md5"]}, "a"],
            ["Blob/get", {"accountId": acc, "ids": [ub], "offset": -1}, "b"],
            ["Blob/get", {"accountId": acc, "ids": [ub], "length": "x"}, "c"],
            ["Blob/get", {"accountId": acc, "ids": None}, "d"],
            ["Blob/get", {"accountId": acc, "ids": ["U"] * 1001}, "e"],
            ["Blob/get", {"accountId": "nope", "ids": [ub]}, "f"],
            ["Blob/get", {"accountId": acc, "ids": [7]}, "g"],
        ], using=using)
        out = {x[2]: x[1] for x in resp}
        for tag, typ in (("a", "invalidArguments"), ("b", "invalidArguments"),
                         ("c", "invalidArguments"), ("d", "invalidArguments"),
                         ("e", "requestTooLarge"), ("f", "accountNotFound"),
                         ("g", "invalidArguments")):
            self.assertEqual(out[tag]["type"], typ, tag)
        # without the capability: unknownMethod
        resp = self.j.api([["Blob/get", {"accountId": acc, "ids": [ub]}, "0"]])
        self.assertEqual(resp[0][1]["type"], "unknownMethod")
        # bob cannot read alice's blob
        b = Jmap(self.srv.port("http"), "bob@example.org", "bob-secret")
        self.addCleanup(b.close)
        resp = b.api([["Blob/get", {"accountId": b.acc, "ids": [ub, e["blobId"]]}, "0"]],
                     using=using)
        self.assertEqual(resp[0][1]["notFound"], [ub, e["blobId"]])

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
        m = self.imap()
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


backend_classes(globals(), Blobs, "Blobs")

if __name__ == "__main__":
    unittest.main()
