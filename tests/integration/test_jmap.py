"""JMAP (RFC 8620, 8621) against the real server: the session resource,
request-level and method-level errors, result references (the RFC's
examples), mailboxes, email get/query/set, blobs, submission, and the
interplay with IMAP and SMTP through the storage layer (a change made over
IMAP shows in Email/changes and is pushed over EventSource, and the
reverse), on both backends."""
import email
import imaplib
import json
import smtplib
import unittest

from jmapclient import USING, EventStream, basic, wait_for
from roosttest import DEFAULT_USERS, JmapMailTest, backend_classes

PLAIN = (b"From: Bob <bob@example.org>\r\nTo: Alice <alice@example.org>\r\n"
         b"Subject: =?UTF-8?Q?caf=C3=A9?= plans\r\nDate: Tue, 1 Oct 2024 10:00:00 +0200\r\n"
         b"Message-ID: <plain-1@example.org>\r\n\r\nHello Alice,\r\nlunch at noon?\r\n")

MULTI = (b"From: Carol <carol@example.org>\r\nTo: alice@example.org, \"Dan D.\" <dan@example.org>\r\n"
         b"Cc: team: eve@example.org, fred@example.org;\r\n"
         b"Subject: report\r\nMessage-ID: <multi-1@example.org>\r\n"
         b"In-Reply-To: <plain-1@example.org>\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"out\"\r\n\r\n"
         b"--out\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
         b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe report is attached.\r\n"
         b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
         b"<p>The <b>report</b> is attached.<img src=\"http://tracker.example/x.png\"></p>\r\n"
         b"--alt--\r\n"
         b"--out\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n"
         b"Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IK\r\n--out--\r\n")


class JmapBase(JmapMailTest):
    # carol is a user here too (Bcc in the submission test)
    server_options = {"users": dict(DEFAULT_USERS, **{"carol@example.org": "carol-secret"})}

    def setUp(self):
        super().setUp()
        self.port = self.srv.port("http")

    def deliver(self, msg, to="alice@example.org", sender="bob@example.org"):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=20) as s:
            s.sendmail(sender, [to], msg)

    def imap(self, user="alice@example.org", password="alice-secret"):
        m = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=20)
        m.login(user, password)
        self.addCleanup(m.logout)
        return m


class JmapCore(JmapBase):
    def test_session_and_well_known(self):
        s = self.j.session
        self.assertIn("urn:ietf:params:jmap:core", s["capabilities"])
        core = s["capabilities"]["urn:ietf:params:jmap:core"]
        self.assertEqual(core["maxCallsInRequest"], 32)
        self.assertEqual(s["username"], "alice@example.org")
        self.assertTrue(s["apiUrl"].endswith("/jmap/api/"))
        self.assertIn("{blobId}", s["downloadUrl"])
        self.assertIn("{closeafter}", s["eventSourceUrl"])
        acc = s["accounts"][self.j.acc]
        self.assertTrue(acc["isPersonal"])
        self.assertIn("urn:ietf:params:jmap:mail", acc["accountCapabilities"])
        status, _, r = self.j.request("GET", "/.well-known/jmap")
        self.assertEqual((status, r.getheader("Location")), (302, "/jmap/session"))

    def test_request_errors(self):
        """RFC 8620 3.6.1: request-level errors are problem details."""
        st, body, r = self.j.request("POST", "/jmap/api/", b"{nope", {"Content-Type":
                                                                     "application/json"})
        self.assertEqual(st, 400)
        self.assertEqual(json.loads(body)["type"], "urn:ietf:params:jmap:error:notJSON")
        st, out = self.j.raw_api({"using": [], "methodCalls": {}})
        self.assertEqual(out["type"], "urn:ietf:params:jmap:error:notRequest")
        st, out = self.j.raw_api({"using": ["urn:example:nope"], "methodCalls": []})
        self.assertEqual(out["type"], "urn:ietf:params:jmap:error:unknownCapability")
        st, out = self.j.raw_api({"using": USING, "methodCalls": [["Core/echo", {}, "x"]] * 33})
        self.assertEqual((out["type"], out["limit"]),
                         ("urn:ietf:params:jmap:error:limit", "maxCallsInRequest"))
        st, out = self.j.raw_api({"using": USING, "methodCalls": []}, ctype="text/plain")
        self.assertEqual(out["type"], "urn:ietf:params:jmap:error:notJSON")

    def test_echo_and_method_errors(self):
        """RFC 8620 4: Core/echo returns its arguments; unknown methods and
        methods of capabilities not in "using" are unknownMethod."""
        resp = self.j.api([["Core/echo", {"hello": True, "high": 5}, "b3ff"]])
        self.assertEqual(resp, [["Core/echo", {"hello": True, "high": 5}, "b3ff"]])
        resp = self.j.api([["Foo/bar", {}, "c1"], ["Mailbox/get", {"accountId": self.j.acc}, "c2"]],
                          using=["urn:ietf:params:jmap:core"])
        self.assertEqual(resp[0], ["error", {"type": "unknownMethod"}, "c1"])
        self.assertEqual(resp[1], ["error", {"type": "unknownMethod"}, "c2"])
        resp = self.j.api([["Mailbox/get", {"accountId": "nope"}, "c3"]])
        self.assertEqual(resp[0], ["error", {"type": "accountNotFound"}, "c3"])

    def test_result_references(self):
        """The example of RFC 8620 3.7: query, then get with #ids, then
        threads by a path with "*"."""
        self.deliver(PLAIN)
        self.deliver(MULTI)
        acc = self.j.acc
        resp = self.j.api([
            ["Email/query", {"accountId": acc, "sort": [{"property": "receivedAt",
                                                        "isAscending": False}],
                             "limit": 10}, "t0"],
            ["Email/get", {"accountId": acc, "#ids": {"resultOf": "t0", "name": "Email/query",
                                                     "path": "/ids"},
                           "properties": ["threadId"]}, "t1"],
            ["Thread/get", {"accountId": acc, "#ids": {"resultOf": "t1", "name": "Email/get",
                                                      "path": "/list/*/threadId"}}, "t2"],
            ["Email/get", {"accountId": acc, "#ids": {"resultOf": "t2", "name": "Thread/get",
                                                     "path": "/list/*/emailIds"},
                           "properties": ["subject"]}, "t3"],
        ])
        ids = resp[0][1]["ids"]
        self.assertEqual(len(ids), 2)
        self.assertEqual([e["id"] for e in resp[1][1]["list"]], ids)
        # MULTI replies to PLAIN: one thread, named once though asked twice
        # (RFC 8620 5.1), and so its Emails once each
        self.assertEqual(len(resp[2][1]["list"]), 1)
        self.assertEqual(sorted(resp[2][1]["list"][0]["emailIds"]), sorted(ids))
        self.assertEqual(sorted(e["subject"] for e in resp[3][1]["list"]),
                         ["caf\u00e9 plans", "report"])
        resp = self.j.api([
            ["Email/get", {"accountId": acc, "#ids": {"resultOf": "zz", "name": "Email/query",
                                                     "path": "/ids"}}, "r1"],
            ["Email/get", {"accountId": acc, "ids": [], "#ids": {"resultOf": "r1",
                                                                "name": "Email/get",
                                                                "path": "/ids"}}, "r2"],
        ])
        self.assertEqual(resp[0][1]["type"], "invalidResultReference")
        self.assertEqual(resp[1][1]["type"], "invalidArguments")


class JmapMail(JmapBase):
    def test_mailboxes(self):
        boxes = self.j.mailboxes()
        for role in ("inbox", "drafts", "sent", "trash", "junk", "archive"):
            self.assertIn(role, boxes)
        self.assertEqual(boxes["inbox"]["name"], "Inbox")
        self.deliver(PLAIN)
        self.assertEqual(self.j.mailboxes()["inbox"]["unreadEmails"], 1)
        r = self.j.call("Mailbox/set", {"create": {"k": {"name": "Projects", "parentId": None}}})
        pid = r["created"]["k"]["id"]
        r = self.j.call("Mailbox/set", {"create": {"c": {"name": "Roost", "parentId": pid}}})
        cid = r["created"]["c"]["id"]
        got = self.j.call("Mailbox/get", {"ids": [cid]})["list"][0]
        self.assertEqual((got["name"], got["parentId"]), ("Roost", pid))
        m = self.imap()
        typ, data = m.list()
        self.assertTrue(any(b"Projects/Roost" in x for x in data), data)
        q = self.j.call("Mailbox/query", {"filter": {"role": "trash"}})
        self.assertEqual(q["ids"], [boxes["trash"]["id"]])
        r = self.j.call("Mailbox/set", {"destroy": [pid]})
        self.assertEqual(r["notDestroyed"][pid]["type"], "mailboxHasChild")
        r = self.j.call("Mailbox/set", {"destroy": [cid, boxes["inbox"]["id"]]})
        self.assertEqual(r["destroyed"], [cid])
        self.assertEqual(r["notDestroyed"][boxes["inbox"]["id"]]["type"], "mailboxHasEmail")

    def test_set_preamble(self):
        """Every /set method starts alike: more than maxObjectsInSet objects
        is requestTooLarge (Mailbox/set and EmailSubmission/set too), a
        stale ifInState is stateMismatch, and neither changes anything."""
        many = {"k%d" % i: {"name": "Box%d" % i, "parentId": None} for i in range(501)}
        for method, args in (("Mailbox/set", {"create": many}),
                             ("Email/set", {"destroy": ["x%d" % i for i in range(501)]}),
                             ("EmailSubmission/set",
                              {"destroy": ["x%d" % i for i in range(501)]})):
            resp = self.j.api([[method, dict(args, accountId=self.j.acc), "t"]])
            self.assertEqual(resp[0][0], "error", resp)
            self.assertEqual(resp[0][1]["type"], "requestTooLarge")
            resp = self.j.api([[method, {"accountId": self.j.acc, "ifInState": "stale",
                                         "create": {}}, "t"]])
            self.assertEqual((resp[0][0], resp[0][1]["type"]), ("error", "stateMismatch"))
        self.assertNotIn("Box0", [m["name"] for m in self.j.mailboxes().values()])

    def test_email_get_structure(self):
        self.deliver(MULTI)
        [eid] = self.j.query()
        e = self.j.call("Email/get", {
            "ids": [eid], "fetchTextBodyValues": True, "fetchHTMLBodyValues": True,
            "properties": ["subject", "from", "to", "cc", "messageId", "inReplyTo", "keywords",
                           "mailboxIds", "hasAttachment", "preview", "textBody", "htmlBody",
                           "attachments", "bodyValues", "bodyStructure", "header:Subject:asText",
                           "header:To:asAddresses", "header:Cc:asGroupedAddresses",
                           "header:X-None", "size", "receivedAt", "blobId"]})["list"][0]
        self.assertEqual(e["subject"], "report")
        self.assertEqual(e["from"], [{"name": "Carol", "email": "carol@example.org"}])
        self.assertEqual(e["to"], [{"name": None, "email": "alice@example.org"},
                                   {"name": "Dan D.", "email": "dan@example.org"}])
        self.assertEqual([a["email"] for a in e["cc"]], ["eve@example.org", "fred@example.org"])
        self.assertEqual(e["header:Cc:asGroupedAddresses"][0]["name"], "team")
        self.assertEqual(e["messageId"], ["multi-1@example.org"])
        self.assertEqual(e["inReplyTo"], ["plain-1@example.org"])
        self.assertEqual(e["keywords"], {})
        self.assertEqual(list(e["mailboxIds"]), [self.j.mailboxes()["inbox"]["id"]])
        self.assertTrue(e["hasAttachment"])
        self.assertEqual(e["preview"], "The report is attached.")
        self.assertEqual(e["header:Subject:asText"], "report")
        self.assertIsNone(e["header:X-None"])
        self.assertEqual([p["type"] for p in e["textBody"]], ["text/plain"])
        self.assertEqual([p["type"] for p in e["htmlBody"]], ["text/html"])
        [att] = e["attachments"]
        self.assertEqual((att["type"], att["name"], att["disposition"]),
                         ("application/pdf", "report.pdf", "attachment"))
        self.assertEqual(e["bodyValues"][e["textBody"][0]["partId"]]["value"],
                         "The report is attached.")
        bs = e["bodyStructure"]
        self.assertEqual(bs["type"], "multipart/mixed")
        self.assertEqual([p["type"] for p in bs["subParts"]],
                         ["multipart/alternative", "application/pdf"])
        # the attachment's blob is its decoded content
        st, body = self.j.get("/jmap/download/%s/%s/report.pdf?accept=application/pdf" %
                              (self.j.acc, att["blobId"]))
        self.assertEqual((st, body[:5]), (200, b"%PDF-"))
        # the message's blob is the raw message
        st, body = self.j.get("/jmap/download/%s/%s/m.eml" % (self.j.acc, e["blobId"]))
        self.assertEqual(st, 200)
        self.assertTrue(body.endswith(MULTI))
        self.assertEqual(len(body), e["size"])

    def test_query_filters_and_snippets(self):
        self.deliver(PLAIN)
        self.deliver(MULTI)
        ids = self.j.query()
        self.assertEqual(len(ids), 2)
        self.assertEqual(self.j.query(text="lunch"), [ids[0]])
        self.assertEqual(self.j.query(**{"from": "carol"}), [ids[1]])
        self.assertEqual(self.j.query(hasAttachment=True), [ids[1]])
        self.assertEqual(self.j.query(subject="caf\u00e9"), [ids[0]])
        self.assertEqual(self.j.call("Email/query", {"filter": {"operator": "NOT", "conditions": [
            {"text": "lunch"}]}})["ids"], [ids[1]])
        r = self.j.call("Email/query", {"sort": [{"property": "subject", "isAscending": True}],
                                        "position": 1, "limit": 1, "calculateTotal": True})
        self.assertEqual((r["ids"], r["total"], r["position"]), ([ids[1]], 2, 1))
        r = self.j.api([["Email/query", {"accountId": self.j.acc, "filter": {"nope": 1}}, "0"],
                        ["Email/query", {"accountId": self.j.acc,
                                         "sort": [{"property": "nope"}]}, "1"]])
        self.assertEqual([x[1]["type"] for x in r], ["unsupportedFilter", "unsupportedSort"])
        s = self.j.call("SearchSnippet/get", {"filter": {"text": "lunch"}, "emailIds": [ids[0]]})
        self.assertIn("<mark>lunch</mark>", s["list"][0]["preview"])

    def test_set_keywords_move_destroy_seen_over_imap(self):
        self.deliver(PLAIN)
        [eid] = self.j.query()
        boxes = self.j.mailboxes()
        r = self.j.call("Email/set", {"update": {eid: {"keywords/$seen": True,
                                                        "keywords/$flagged": True,
                                                        "keywords/work": True}}})
        self.assertIn(eid, r["updated"])
        m = self.imap()
        m.select("INBOX")
        typ, data = m.fetch("1", "(FLAGS)")
        self.assertIn(b"\\Seen", data[0])
        self.assertIn(b"\\Flagged", data[0])
        self.assertIn(b"work", data[0])
        r = self.j.call("Email/set", {"update": {eid: {"mailboxIds": {boxes["archive"]["id"]:
                                                                       True}}}})
        self.assertIn(eid, r["updated"])
        self.assertEqual(self.j.query(inMailbox=boxes["inbox"]["id"]), [])
        [moved] = self.j.query(inMailbox=boxes["archive"]["id"])
        typ, data = m.status("Archive", "(MESSAGES)")
        self.assertIn(b"MESSAGES 1", data[0])
        r = self.j.call("Email/set", {"destroy": [moved, "Enope"]})
        self.assertEqual(r["destroyed"], [moved])
        self.assertEqual(r["notDestroyed"]["Enope"]["type"], "notFound")
        typ, data = m.status("Archive", "(MESSAGES)")
        self.assertIn(b"MESSAGES 0", data[0])

    def test_ids_survive_move_and_rename(self):
        """RFC 8621 ids are immutable: an Email keeps its id through an IMAP
        MOVE (and a JMAP one), a Mailbox through an IMAP RENAME; the same
        EMAILID is what IMAP's OBJECTID shows; Email/changes calls a move an
        update, not a destroy and a create."""
        self.deliver(PLAIN)
        [eid] = self.j.query()
        blob = self.j.call("Email/get", {"ids": [eid], "properties": ["blobId"]})["list"][0]
        state = self.j.call("Email/get", {"ids": [], "properties": ["id"]})["state"]
        m = self.imap()
        self.assertEqual(m.create("Projects")[0], "OK")
        boxes = self.j.mailboxes()
        pid = boxes["Projects"]["id"]
        # IMAP's EMAILID is the JMAP id's digits
        m.select("INBOX")
        typ, data = m.fetch("1", "(EMAILID)")
        self.assertIn(("EMAILID (M%s)" % eid[1:]).encode(), data[0])
        self.assertEqual(m.uid("MOVE", "1:*", "Projects")[0], "OK")
        self.assertEqual(self.j.query(inMailbox=pid), [eid])
        got = self.j.call("Email/get", {"ids": [eid], "properties": ["mailboxIds", "blobId"]})
        self.assertEqual(got["list"][0]["mailboxIds"], {pid: True})
        self.assertEqual(got["list"][0]["blobId"], blob["blobId"])
        ch = self.j.call("Email/changes", {"sinceState": state})
        self.assertEqual((ch["created"], ch["updated"], ch["destroyed"]), ([], [eid], []))
        # the mailbox renamed over IMAP keeps its id, and shows as updated
        mstate = self.j.call("Mailbox/get", {"ids": []})["state"]
        self.assertEqual(m.rename("Projects", "Work/Projects")[0], "OK")
        got = self.j.call("Mailbox/get", {"ids": [pid]})
        self.assertEqual(got["notFound"], [])
        self.assertEqual(got["list"][0]["name"], "Projects")
        mch = self.j.call("Mailbox/changes", {"sinceState": mstate})
        self.assertIn(pid, mch["updated"])
        self.assertNotIn(pid, mch["destroyed"] + mch["created"])
        self.assertEqual(self.j.query(inMailbox=pid), [eid])
        # moved back by JMAP: still the same id, and IMAP agrees
        inbox = boxes["inbox"]["id"]
        r = self.j.call("Email/set", {"update": {eid: {"mailboxIds": {inbox: True}}}})
        self.assertIn(eid, r["updated"])
        self.assertEqual(self.j.query(inMailbox=inbox), [eid])
        m.select("INBOX")
        typ, data = m.fetch("1", "(EMAILID)")
        self.assertIn(("EMAILID (M%s)" % eid[1:]).encode(), data[0])
        # an IMAP COPY keeps the EMAILID: one Email in two mailboxes
        self.assertEqual(m.copy("1", "Archive")[0], "OK")
        got = self.j.call("Email/get", {"ids": [eid], "properties": ["mailboxIds"]})
        self.assertEqual(got["list"][0]["mailboxIds"],
                         {inbox: True, boxes["archive"]["id"]: True})
        self.assertEqual(self.j.query(), [eid])
        r = self.j.call("Email/set", {"destroy": [eid]})
        self.assertEqual(r["destroyed"], [eid])
        self.assertEqual(self.j.query(), [])

    def test_changes_follow_imap_and_push(self):
        """A flag set over IMAP shows in Email/changes and is pushed over
        EventSource; a keyword set over JMAP reaches an IMAP session."""
        self.deliver(PLAIN)
        [eid] = self.j.query()
        state = self.j.call("Email/get", {"ids": [], "properties": ["id"]})["state"]
        mstate = self.j.call("Mailbox/get", {"ids": []})["state"]
        es = EventStream(self.port, self.j.auth)
        self.addCleanup(es.close)
        self.assertEqual(es.status, 200)
        self.assertEqual(es.headers["content-type"], "text/event-stream")
        first = es.state_event()
        self.assertEqual(first["@type"], "StateChange")
        self.assertEqual(first["changed"][self.j.acc]["Email"], state)
        # types= picks the types an event names
        some = EventStream(self.port, self.j.auth,
                           "types=Thread,Mailbox,Nope&closeafter=no&ping=0")
        self.addCleanup(some.close)
        self.assertEqual(set(some.state_event()["changed"][self.j.acc]), {"Mailbox", "Thread"})
        m = self.imap()
        m.select("INBOX")
        m.store("1", "+FLAGS", "(\\Flagged)")
        pushed = es.state_event()
        self.assertNotEqual(pushed["changed"][self.j.acc]["Email"], state)
        ch = self.j.call("Email/changes", {"sinceState": state})
        self.assertEqual((ch["created"], ch["updated"], ch["destroyed"]), ([], [eid], []))
        self.assertEqual(ch["newState"], pushed["changed"][self.j.acc]["Email"])
        # a new message by SMTP: created, and pushed
        self.deliver(MULTI)
        pushed2 = es.state_event()
        ch = self.j.call("Email/changes", {"sinceState": ch["newState"]})
        self.assertEqual(len(ch["created"]), 1)
        self.assertEqual(ch["newState"], pushed2["changed"][self.j.acc]["Email"])
        mch = self.j.call("Mailbox/changes", {"sinceState": mstate})
        self.assertEqual(mch["updated"], [self.j.mailboxes()["inbox"]["id"]])
        # expunged over IMAP: destroyed
        m.store("1", "+FLAGS", "(\\Deleted)")
        m.expunge()
        es.state_event()
        ch = self.j.call("Email/changes", {"sinceState": ch["newState"]})
        self.assertEqual(ch["destroyed"], [eid])
        # maxChanges: whole mailboxes, with hasMoreChanges and a middle state
        m.copy("1", "Archive")
        ch = self.j.call("Email/changes", {"sinceState": "s", "maxChanges": 1})
        self.assertTrue(ch["hasMoreChanges"])
        self.assertEqual(len(ch["created"]), 1)
        first = ch["created"]
        ch = self.j.call("Email/changes", {"sinceState": ch["newState"], "maxChanges": 1})
        self.assertFalse(ch["hasMoreChanges"])
        # the copy is the Email the first page created: only its mailboxIds changed
        self.assertEqual((ch["created"], ch["updated"]), ([], first))
        # JMAP -> IMAP: IDLE sees the keyword set over JMAP
        m.send(b"a1 IDLE\r\n")
        self.assertTrue(m.readline().startswith(b"+"))
        [left] = self.j.query(inMailbox=self.j.mailboxes()["inbox"]["id"])
        self.j.call("Email/set", {"update": {left: {"keywords/$seen": True}}})
        line = m.readline()
        self.assertIn(b"FETCH", line)
        self.assertIn(b"\\Seen", line)
        m.send(b"DONE\r\n")
        m.readline()
        r = self.j.api([["Email/changes", {"accountId": self.j.acc, "sinceState": "bogus"}, "0"]])
        self.assertEqual(r[0][1]["type"], "cannotCalculateChanges")

    def test_upload_import_parse(self):
        blob = self.j.upload(PLAIN, "message/rfc822")
        self.assertEqual(blob["size"], len(PLAIN))
        self.assertTrue(blob["blobId"].startswith("U"))
        st, body = self.j.get("/jmap/download/%s/%s/x.eml" % (self.j.acc, blob["blobId"]))
        self.assertEqual((st, body), (200, PLAIN))
        parsed = self.j.call("Email/parse", {"blobIds": [blob["blobId"], "Unope"]})
        self.assertEqual(parsed["parsed"][blob["blobId"]]["subject"], "caf\u00e9 plans")
        self.assertEqual(parsed["notFound"], ["Unope"])
        boxes = self.j.mailboxes()
        r = self.j.call("Email/import", {"emails": {"i1": {
            "blobId": blob["blobId"], "mailboxIds": {boxes["archive"]["id"]: True},
            "keywords": {"$seen": True}, "receivedAt": "2024-10-01T08:00:00Z"}}})
        created = r["created"]["i1"]
        e = self.j.call("Email/get", {"ids": [created["id"]],
                                      "properties": ["receivedAt", "keywords"]})["list"][0]
        self.assertEqual(e["receivedAt"], "2024-10-01T08:00:00Z")
        self.assertEqual(e["keywords"], {"$seen": True})
        # a large upload arrives in pieces and comes back whole
        big = bytes(range(256)) * 4096
        blob = self.j.upload(big)
        st, body = self.j.get("/jmap/download/%s/%s/big" % (self.j.acc, blob["blobId"]))
        self.assertEqual(body, big)

    def test_create_and_submit(self):
        boxes = self.j.mailboxes()
        ident = self.j.call("Identity/get", {})["list"][0]
        self.assertEqual(ident["email"], "alice@example.org")
        blob = self.j.upload(b"attached bytes\n", "text/plain")
        draft = {"mailboxIds": {boxes["drafts"]["id"]: True}, "keywords": {"$draft": True},
                 "from": [{"name": "Alice", "email": "alice@example.org"}],
                 "to": [{"name": "Bob", "email": "bob@example.org"}],
                 "bcc": [{"email": "carol@example.org"}],
                 "subject": "h\u00e9llo", "textBody": [{"partId": "1", "type": "text/plain"}],
                 "bodyValues": {"1": {"value": "Hi Bob \u263a\nsee attached"}},
                 "attachments": [{"blobId": blob["blobId"], "type": "text/plain",
                                  "name": "notes.txt"}]}
        resp = self.j.api([
            ["Email/set", {"accountId": self.j.acc, "create": {"d": draft}}, "0"],
            ["EmailSubmission/set", {"accountId": self.j.acc, "create": {"s": {
                "identityId": ident["id"], "emailId": "#d"}},
                "onSuccessUpdateEmail": {"#s": {"mailboxIds/" + boxes["drafts"]["id"]: None,
                                                "mailboxIds/" + boxes["sent"]["id"]: True,
                                                "keywords/$draft": None}}}, "1"]])
        self.assertIn("d", resp[0][1]["created"], resp)
        self.assertIn("s", resp[1][1]["created"], resp)
        self.assertEqual(resp[2][0], "Email/set")
        self.assertEqual(len(self.j.query(inMailbox=boxes["sent"]["id"])), 1)
        self.assertEqual(self.j.query(inMailbox=boxes["drafts"]["id"]), [])
        # bob reads it over IMAP, without the Bcc
        m = self.imap("bob@example.org", "bob-secret")
        m.select("INBOX")
        typ, data = m.fetch("1", "(RFC822)")
        msg = email.message_from_bytes(data[0][1])
        self.assertEqual(str(email.header.make_header(email.header.decode_header(
            msg["Subject"]))), "h\u00e9llo")
        self.assertIsNone(msg["Bcc"])
        parts = list(msg.walk())
        self.assertIn("Hi Bob \u263a", parts[1].get_payload(decode=True).decode())
        self.assertEqual(parts[2].get_filename(), "notes.txt")
        # carol (Bcc) got it too
        c = self.imap("carol@example.org", "carol-secret")
        self.assertEqual(c.select("INBOX")[1], [b"1"])
        # somebody else's From is refused, as over SMTP submission
        forged = dict(draft, **{"from": [{"email": "bob@example.org"}]})
        del forged["attachments"]
        resp = self.j.api([
            ["Email/set", {"accountId": self.j.acc, "create": {"f": forged}}, "0"],
            ["EmailSubmission/set", {"accountId": self.j.acc, "create": {"s": {
                "identityId": ident["id"], "emailId": "#f"}}}, "1"]])
        self.assertEqual(resp[1][1]["notCreated"]["s"]["type"], "forbiddenMailFrom")
        resp = self.j.api([["EmailSubmission/set", {"accountId": self.j.acc, "create": {"s": {
            "identityId": ident["id"], "emailId": resp[0][1]["created"]["f"]["id"],
            "envelope": {"mailFrom": {"email": "alice@example.org"},
                         "rcptTo": [{"email": "bob@example.org"}]}}}}, "0"]])
        self.assertEqual(resp[0][1]["notCreated"]["s"]["type"], "forbiddenFrom")

    def test_submission_set_reply(self):
        """EmailSubmission/set answers as every /set does: the state "1"
        (submissions are final and not kept, so update and destroy find
        nothing), the created submission under its creation id, and the
        implicit Email/set of onSuccessDestroyEmail under the same call id;
        a failed submission leaves the email alone."""
        boxes = self.j.mailboxes()
        ident = self.j.call("Identity/get", {})["list"][0]
        draft = {"mailboxIds": {boxes["drafts"]["id"]: True},
                 "from": [{"email": "alice@example.org"}], "to": [{"email": "bob@example.org"}],
                 "subject": "gone", "textBody": [{"partId": "1", "type": "text/plain"}],
                 "bodyValues": {"1": {"value": "sent and gone"}}}
        resp = self.j.api([
            ["Email/set", {"accountId": self.j.acc, "create": {"d": draft, "e": draft}}, "0"],
            ["EmailSubmission/set", {"accountId": self.j.acc, "create": {
                "s": {"identityId": ident["id"], "emailId": "#d"},
                "t": {"identityId": "nobody", "emailId": "#e"}},
                "update": {"u1": {}}, "destroy": ["x1", 7],
                "onSuccessDestroyEmail": ["#s", "#t"]}, "1"]])
        kept = resp[0][1]["created"]["e"]["id"]
        sub = resp[1][1]
        self.assertEqual(resp[1][0], "EmailSubmission/set")
        self.assertEqual((sub["accountId"], sub["oldState"], sub["newState"]),
                         (self.j.acc, "1", "1"))
        self.assertEqual(sub["created"]["s"]["undoStatus"], "final")
        self.assertTrue(sub["created"]["s"]["id"])
        self.assertEqual(sub["notCreated"]["t"]["type"], "invalidProperties")
        self.assertEqual((sub["updated"], sub["destroyed"]), ({}, []))
        self.assertEqual(sub["notUpdated"]["u1"]["type"], "notFound")
        self.assertEqual(list(sub["notDestroyed"]), ["x1"])
        self.assertEqual(sub["notDestroyed"]["x1"]["type"], "notFound")
        self.assertEqual(len(resp), 3, resp)
        self.assertEqual((resp[2][0], resp[2][2]), ("Email/set", "1"))
        self.assertEqual(resp[2][1]["destroyed"], [resp[0][1]["created"]["d"]["id"]])
        self.assertEqual(self.j.query(inMailbox=boxes["drafts"]["id"]), [kept])
        # nothing created, nothing implied
        resp = self.j.api([["EmailSubmission/set", {"accountId": self.j.acc, "create": {
            "s": {"identityId": ident["id"], "emailId": "Mnone"}},
            "onSuccessDestroyEmail": ["#s"]}, "0"]])
        self.assertEqual(len(resp), 1, resp)
        self.assertEqual(resp[0][1]["notCreated"]["s"]["type"], "invalidProperties")
        self.assertEqual(self.j.query(inMailbox=boxes["drafts"]["id"]), [kept])


class JmapCoreLmdb(JmapCore, unittest.TestCase):
    backend = "lmdb"


backend_classes(globals(), JmapMail, "JmapMail")

if __name__ == "__main__":
    unittest.main()
