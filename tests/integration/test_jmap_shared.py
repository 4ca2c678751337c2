"""Shared and other users' mailboxes over JMAP (RFC 8620 1.6.2, RFC 8621):
alice shares mailboxes with bob over IMAP SETACL; bob's Session lists
alice's account (not personal), Mailbox/get there tells his rights, his
Email/query, Email/get, Thread/get, SearchSnippet/get and downloads work,
his $seen is his own, a change his rights lack is forbidden; revoking the
right takes the account away; the shared namespace ("Shared/", carol its
administrator) is an account too; accounts nobody shared and hostile
accountIds answer accountNotFound; submission stays personal. On every
backend (lmdb, maildir; pgsql when it is in ROOST_BACKENDS, in a
PostgreSQL of the class's own)."""
import json
import unittest
import urllib.parse

from jmapclient import EventStream, Jmap, Raw, basic, wait_for
from roosttest import PrivatePgsql, SharedServer, backend_classes, imap_session

ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"
DAVE, ERIN, FRED = "dave@example.org", "erin@example.org", "fred@example.org"
USERS = {ALICE: "alice-secret", BOB: "bob-secret", CAROL: "carol-secret",
         DAVE: "dave-secret", ERIN: "erin-secret", FRED: "fred-secret"}
MAIL = "urn:ietf:params:jmap:mail"
PREFIX = "Other Users/" + ALICE + "/"


def message(subject, body="hello world"):
    return ("From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\n"
            "Message-ID: <%s@example.org>\r\n\r\n%s %s\r\n"
            % (subject, subject.replace(" ", "."), body, subject)).encode()


class JmapSharedBase(SharedServer):
    backend = "lmdb"

    @classmethod
    def setUpClass(cls):
        conf = {"acl": {"shared_admins": CAROL}}
        conf.update(getattr(cls, "extra_conf", {}))
        cls.server_options = {"users": USERS, "listeners": ("http", "imap"),
                              "backend": cls.backend, "conf": conf}
        super().setUpClass()

    # ---- helpers ----

    def imap(self, user):
        return imap_session(self, self.srv.port("imap"), user, USERS[user], 30)

    def jmap(self, user):
        j = Jmap(self.srv.port("http"), user, USERS[user])
        self.addCleanup(j.close)
        return j

    def mailbox(self, owner, name, n=2):
        """owner's mailbox name with n messages; the IMAP session."""
        m = self.imap(owner)
        self.assertEqual(m.create('"%s"' % name)[0], "OK")
        for i in range(n):
            self.assertEqual(m.append('"%s"' % name, None, None,
                                      message("%s %d" % (name, i)))[0], "OK")
        return m

    @staticmethod
    def account_of(j, name):
        """The id of the account called name in j's Session (fetched
        again), or None."""
        status, body = j.get("/jmap/session")
        assert status == 200, status
        for aid, a in json.loads(body)["accounts"].items():
            if a["name"] == name:
                return aid
        return None

    def call(self, j, name, args, acc):
        args = dict(args, accountId=acc)
        resp = j.api([[name, args, "0"]])
        return resp[0]

    def boxes(self, j, acc):
        r = self.call(j, "Mailbox/get", {}, acc)
        self.assertEqual(r[0], "Mailbox/get", r)
        return {m["name"]: m for m in r[1]["list"]}

    def emails(self, j, acc, box_id):
        r = self.call(j, "Email/query", {"filter": {"inMailbox": box_id},
                                         "sort": [{"property": "receivedAt",
                                                   "isAscending": True}]}, acc)
        self.assertEqual(r[0], "Email/query", r)
        return r[1]["ids"]

    def keywords(self, j, acc, eid):
        r = self.call(j, "Email/get", {"ids": [eid], "properties": ["keywords"]}, acc)
        self.assertEqual(r[0], "Email/get", r)
        return r[1]["list"][0]["keywords"]

    # ---- tests ----

    def test_session_lists_the_owner(self):
        # fred shares only here (the other tests share alice's mailboxes)
        a = self.mailbox(FRED, "Sess", 1)
        b = self.jmap(BOB)
        self.assertIsNone(self.account_of(b, FRED))
        self.assertEqual(a.setacl("Sess", BOB, "lr")[0], "OK")
        acc = wait_for(lambda: self.account_of(b, FRED), 60)
        status, body = b.get("/jmap/session")
        s = json.loads(body)
        a_acc = s["accounts"][acc]
        self.assertFalse(a_acc["isPersonal"])
        self.assertTrue(a_acc["isReadOnly"])
        self.assertIn(MAIL, a_acc["accountCapabilities"])
        self.assertNotIn("urn:ietf:params:jmap:submission", a_acc["accountCapabilities"])
        self.assertFalse(a_acc["accountCapabilities"][MAIL]["mayCreateTopLevelMailbox"])
        self.assertTrue(s["accounts"][b.acc]["isPersonal"])
        self.assertFalse(s["accounts"][b.acc]["isReadOnly"])
        self.assertEqual(s["primaryAccounts"][MAIL], b.acc)
        self.assertNotEqual(acc, b.acc)
        # the id is fred's: the same as his own account's, for everyone
        self.assertEqual(acc, self.jmap(FRED).acc)
        # more rights: not read-only any more
        self.assertEqual(a.setacl("Sess", BOB, "lrs")[0], "OK")
        status, body = b.get("/jmap/session")
        self.assertFalse(json.loads(body)["accounts"][acc]["isReadOnly"])
        # bob's own account does not show alice's mailboxes
        self.assertNotIn("Sess", self.boxes(b, b.acc))
        # the API's sessionState is the Session's
        out = b.raw_api({"using": ["urn:ietf:params:jmap:core"],
                         "methodCalls": [["Core/echo", {}, "0"]]})[1]
        self.assertEqual(out["sessionState"], s["state"])

    def test_mailbox_rights(self):
        a = self.mailbox(ALICE, "RoBox", 1)
        self.assertEqual(a.create("FullBox")[0], "OK")
        self.assertEqual(a.create("FullBox/Child")[0], "OK")
        self.assertEqual(a.create("Hidden")[0], "OK")
        self.assertEqual(a.setacl("RoBox", BOB, "lr")[0], "OK")
        self.assertEqual(a.setacl("FullBox", BOB, "lrswitekx")[0], "OK")
        self.assertEqual(a.setacl("FullBox/Child", BOB, "lrsi")[0], "OK")
        b = self.jmap(BOB)
        acc = wait_for(lambda: self.account_of(b, ALICE), 60)
        boxes = self.boxes(b, acc)
        self.assertNotIn("Hidden", boxes)
        ro, full, child = boxes["RoBox"], boxes["FullBox"], boxes["Child"]
        self.assertEqual(ro["myRights"], {
            "mayReadItems": True, "mayAddItems": False, "mayRemoveItems": False,
            "maySetSeen": False, "maySetKeywords": False, "mayCreateChild": False,
            "mayRename": False, "mayDelete": False, "maySubmit": False})
        self.assertEqual(full["myRights"], {
            "mayReadItems": True, "mayAddItems": True, "mayRemoveItems": True,
            "maySetSeen": True, "maySetKeywords": True, "mayCreateChild": True,
            "mayRename": False, "mayDelete": True, "maySubmit": False})
        self.assertEqual(child["myRights"]["mayAddItems"], True)
        self.assertEqual(child["myRights"]["maySetKeywords"], False)
        self.assertEqual(child["parentId"], full["id"])
        self.assertIsNone(full["parentId"])
        self.assertEqual(ro["totalEmails"], 1)
        self.assertEqual(ro["unreadEmails"], 1)
        # alice's own view: every right on her own mailbox
        mine = self.boxes(self.jmap(ALICE), acc)["RoBox"]["myRights"]
        self.assertTrue(all(v for k, v in mine.items() if k != "mayRename"), mine)
        # Mailbox/query and /changes work in the account
        r = self.call(b, "Mailbox/query", {"filter": {"name": "Box"}}, acc)
        self.assertEqual(r[0], "Mailbox/query", r)
        self.assertIn(ro["id"], r[1]["ids"])
        self.assertIn(full["id"], r[1]["ids"])
        state = self.call(b, "Mailbox/get", {"ids": []}, acc)[1]["state"]
        self.assertEqual(a.append("RoBox", None, None, message("RoBox new"))[0], "OK")
        r = self.call(b, "Mailbox/changes", {"sinceState": state}, acc)
        self.assertEqual(r[0], "Mailbox/changes", r)
        self.assertIn(ro["id"], r[1]["updated"])
        # a child bob may create (k on FullBox), not at the top
        r = self.call(b, "Mailbox/set", {"create": {
            "c1": {"name": "Made", "parentId": full["id"]},
            "c2": {"name": "Top"}}}, acc)
        self.assertEqual(r[0], "Mailbox/set", r)
        self.assertIn("c1", r[1]["created"], r)
        self.assertEqual(r[1]["notCreated"]["c2"]["type"], "forbidden", r)
        self.assertIn(b'FullBox/Made', b"".join(x for x in a.list()[1] if x))

    def test_emails(self):
        a = self.mailbox(ALICE, "Mails", 2)
        self.assertEqual(a.setacl("Mails", BOB, "lrs")[0], "OK")
        b = self.jmap(BOB)
        al = self.jmap(ALICE)
        acc = wait_for(lambda: self.account_of(b, ALICE), 60)
        box = self.boxes(b, acc)["Mails"]
        ids = self.emails(b, acc, box["id"])
        self.assertEqual(len(ids), 2)
        self.assertEqual(ids, self.emails(al, acc, box["id"]))
        r = self.call(b, "Email/get", {"ids": ids, "properties": [
            "subject", "threadId", "blobId", "mailboxIds", "keywords", "preview"]}, acc)
        self.assertEqual(r[0], "Email/get", r)
        got = r[1]["list"]
        self.assertEqual([e["subject"] for e in got], ["Mails 0", "Mails 1"])
        self.assertEqual(got[0]["mailboxIds"], {box["id"]: True})
        # Thread/get, SearchSnippet/get
        r = self.call(b, "Thread/get", {"ids": [got[0]["threadId"]]}, acc)
        self.assertEqual(r[0], "Thread/get", r)
        self.assertIn(ids[0], r[1]["list"][0]["emailIds"])
        r = self.call(b, "SearchSnippet/get", {"emailIds": ids[:1],
                                               "filter": {"text": "hello"}}, acc)
        self.assertEqual(r[0], "SearchSnippet/get", r)
        self.assertEqual(r[1]["list"][0]["emailId"], ids[0])
        # the download of the message, through the account's id
        status, body = b.get("/jmap/download/%s/%s/m.eml" % (acc, got[0]["blobId"]))
        self.assertEqual(status, 200)
        self.assertIn(b"Subject: Mails 0", body)
        # not through bob's own account, nor through dave's
        status, _ = b.get("/jmap/download/%s/%s/m.eml" % (b.acc, got[0]["blobId"]))
        self.assertEqual(status, 404)
        status, _ = self.jmap(DAVE).get("/jmap/download/%s/%s/m.eml" % (acc, got[0]["blobId"]))
        self.assertEqual(status, 404)

        # $seen is bob's own (he has s)
        state = self.call(b, "Email/get", {"ids": []}, acc)[1]["state"]
        r = self.call(b, "Email/set", {"update": {ids[0]: {"keywords/$seen": True}}}, acc)
        self.assertEqual(r[0], "Email/set", r)
        self.assertIn(ids[0], r[1]["updated"], r)
        self.assertEqual(self.keywords(b, acc, ids[0]), {"$seen": True})
        self.assertEqual(self.keywords(al, acc, ids[0]), {})
        self.assertEqual(self.boxes(b, acc)["Mails"]["unreadEmails"], 1)
        self.assertEqual(self.boxes(al, acc)["Mails"]["unreadEmails"], 2)
        r = self.call(b, "Email/changes", {"sinceState": state}, acc)
        self.assertEqual(r[0], "Email/changes", r)
        self.assertIn(ids[0], r[1]["updated"])
        # alice's $seen is hers
        r = self.call(al, "Email/set", {"update": {ids[1]: {"keywords/$seen": True}}}, acc)
        self.assertIn(ids[1], r[1]["updated"], r)
        self.assertEqual(self.keywords(b, acc, ids[1]), {})

        # what bob's rights lack is forbidden: keywords (w), removal (t e),
        # a move into his own account is not a mailbox of this one
        r = self.call(b, "Email/set", {"update": {ids[0]: {"keywords/$flagged": True}},
                                       "destroy": [ids[1]]}, acc)
        self.assertEqual(r[0], "Email/set", r)
        self.assertEqual(r[1]["notUpdated"][ids[0]]["type"], "forbidden", r)
        self.assertEqual(r[1]["notDestroyed"][ids[1]]["type"], "forbidden", r)
        self.assertEqual(self.keywords(al, acc, ids[0]), {})
        own_inbox = self.boxes(b, b.acc)["Inbox"]["id"]
        r = self.call(b, "Email/set", {"update": {ids[0]: {"mailboxIds": {own_inbox: True}}}},
                      acc)
        self.assertIn(ids[0], r[1]["notUpdated"], r)
        self.assertEqual(len(self.emails(al, acc, box["id"])), 2)
        # with w, keywords are allowed and everyone's
        self.assertEqual(a.setacl("Mails", BOB, "lrsw")[0], "OK")
        r = self.call(b, "Email/set", {"update": {ids[0]: {"keywords/$flagged": True}}}, acc)
        self.assertIn(ids[0], r[1]["updated"], r)
        self.assertEqual(self.keywords(al, acc, ids[0]), {"$flagged": True})

    def test_import_and_create(self):
        a = self.mailbox(ALICE, "Drop", 0)
        self.assertEqual(a.create("NoInsert")[0], "OK")
        self.assertEqual(a.setacl("Drop", BOB, "lri")[0], "OK")
        self.assertEqual(a.setacl("NoInsert", BOB, "lr")[0], "OK")
        b = self.jmap(BOB)
        acc = wait_for(lambda: self.account_of(b, ALICE), 60)
        boxes = self.boxes(b, acc)
        drop, noins = boxes["Drop"]["id"], boxes["NoInsert"]["id"]
        # an upload to bob's own account, imported into alice's
        blob = b.upload(message("Imported"), "message/rfc822")["blobId"]
        r = self.call(b, "Email/import", {"emails": {
            "i1": {"blobId": blob, "mailboxIds": {drop: True}},
            "i2": {"blobId": blob, "mailboxIds": {noins: True}}}}, acc)
        self.assertEqual(r[0], "Email/import", r)
        self.assertIn("i1", r[1]["created"], r)
        self.assertEqual(r[1]["notCreated"]["i2"]["type"], "forbidden", r)
        r = self.call(b, "Email/set", {"create": {
            "c1": {"mailboxIds": {drop: True}, "subject": "Made by bob",
                   "from": [{"email": BOB}], "textBody": [{"partId": "1"}],
                   "bodyValues": {"1": {"value": "hi"}}},
            "c2": {"mailboxIds": {noins: True}, "subject": "Refused",
                   "from": [{"email": BOB}], "textBody": [{"partId": "1"}],
                   "bodyValues": {"1": {"value": "hi"}}}}}, acc)
        self.assertEqual(r[0], "Email/set", r)
        self.assertIn("c1", r[1]["created"], r)
        self.assertEqual(r[1]["notCreated"]["c2"]["type"], "forbidden", r)
        typ, dat = a.select("Drop")
        self.assertEqual(dat[0], b"2")
        # an upload to alice's account id is not bob's to make
        status, _, _ = b.request("POST", "/jmap/upload/%s/" % acc, b"x",
                                 {"Content-Type": "text/plain"})
        self.assertEqual(status, 404)

    def test_subscribe_and_destroy(self):
        a = self.mailbox(ALICE, "SubMe", 1)
        self.assertEqual(a.create("Doomed")[0], "OK")
        self.assertEqual(a.create("Kept")[0], "OK")
        self.assertEqual(a.setacl("SubMe", BOB, "lr")[0], "OK")
        self.assertEqual(a.setacl("Doomed", BOB, "lrx")[0], "OK")
        self.assertEqual(a.setacl("Kept", BOB, "lr")[0], "OK")
        b = self.jmap(BOB)
        acc = wait_for(lambda: self.account_of(b, ALICE), 60)
        boxes = self.boxes(b, acc)
        sub = boxes["SubMe"]
        self.assertFalse(sub["isSubscribed"])
        r = self.call(b, "Mailbox/set", {"update": {sub["id"]: {"isSubscribed": True}}}, acc)
        self.assertIn(sub["id"], r[1]["updated"], r)
        self.assertTrue(self.boxes(b, acc)["SubMe"]["isSubscribed"])
        # bob's subscription is bob's: IMAP LSUB of his shows it
        typ, dat = self.imap(BOB).lsub('""', '"%sSubMe"' % PREFIX)
        self.assertEqual(typ, "OK")
        self.assertIn(b"SubMe", b"".join(x for x in dat if x))
        r = self.call(b, "Mailbox/set", {"destroy": [boxes["Doomed"]["id"],
                                                     boxes["Kept"]["id"]]}, acc)
        self.assertEqual(r[0], "Mailbox/set", r)
        self.assertIn(boxes["Doomed"]["id"], r[1]["destroyed"], r)
        self.assertEqual(r[1]["notDestroyed"][boxes["Kept"]["id"]]["type"], "forbidden", r)
        names = b"".join(x for x in a.list()[1] if x)
        self.assertNotIn(b"Doomed", names)
        self.assertIn(b"Kept", names)
        # Blob/get of a message there
        eid = self.emails(b, acc, sub["id"])[0]
        blob = self.call(b, "Email/get", {"ids": [eid], "properties": ["blobId"]},
                         acc)[1]["list"][0]["blobId"]
        r = b.api([["Blob/get", {"accountId": acc, "ids": [blob],
                                 "properties": ["data:asText", "size"]}, "0"]],
                  using=["urn:ietf:params:jmap:core", MAIL, "urn:ietf:params:jmap:blob"])
        self.assertEqual(r[0][0], "Blob/get", r)
        self.assertIn("Subject: SubMe 0", r[0][1]["list"][0]["data:asText"])

    def test_copy_between_accounts(self):
        a = self.mailbox(ALICE, "CopyFrom", 1)
        self.assertEqual(a.create("CopyRo")[0], "OK")
        self.assertEqual(a.setacl("CopyFrom", BOB, "lrs")[0], "OK")
        self.assertEqual(a.setacl("CopyRo", BOB, "lr")[0], "OK")
        b = self.jmap(BOB)
        acc = wait_for(lambda: self.account_of(b, ALICE), 60)
        boxes = self.boxes(b, acc)
        src = self.emails(b, acc, boxes["CopyFrom"]["id"])[0]
        r = self.call(b, "Email/set", {"update": {src: {"keywords/$seen": True}}}, acc)
        self.assertIn(src, r[1]["updated"], r)
        inbox = self.boxes(b, b.acc)["Inbox"]["id"]
        before = len(self.emails(b, b.acc, inbox))
        # from alice's account into bob's own: his \Seen goes along
        r = b.api([["Email/copy", {"fromAccountId": acc, "accountId": b.acc, "create": {
            "k1": {"id": src, "mailboxIds": {inbox: True}}}}, "0"]])
        self.assertEqual(r[0][0], "Email/copy", r)
        self.assertIn("k1", r[0][1]["created"], r)
        new = r[0][1]["created"]["k1"]["id"]
        self.assertEqual(len(self.emails(b, b.acc, inbox)), before + 1)
        self.assertEqual(self.keywords(b, b.acc, new), {"$seen": True})
        r = self.call(b, "Email/get", {"ids": [new], "properties": ["subject"]}, b.acc)
        self.assertEqual(r[1]["list"][0]["subject"], "CopyFrom 0")
        # back into a mailbox of alice's where bob may not insert
        r = b.api([["Email/copy", {"fromAccountId": b.acc, "accountId": acc, "create": {
            "k2": {"id": new, "mailboxIds": {boxes["CopyRo"]["id"]: True}}}}, "0"]])
        self.assertEqual(r[0][1]["notCreated"]["k2"]["type"], "forbidden", r)
        # Blob/copy of the message from alice's account into bob's: an
        # upload of bob's that Blob/get and Email/import take
        blob = self.call(b, "Email/get", {"ids": [src], "properties": ["blobId"]},
                         acc)[1]["list"][0]["blobId"]
        r = b.api([["Blob/copy", {"fromAccountId": acc, "accountId": b.acc,
                                  "blobIds": [blob, "Bffffffffffffffff"]}, "0"]])
        self.assertEqual(r[0][0], "Blob/copy", r)
        self.assertIn("Bffffffffffffffff", r[0][1]["notCopied"], r)
        mine = r[0][1]["copied"][blob]
        self.assertTrue(mine.startswith("U"), mine)
        r = b.api([["Blob/get", {"accountId": b.acc, "ids": [mine],
                                 "properties": ["data:asText"]}, "0"]],
                  using=["urn:ietf:params:jmap:core", MAIL, "urn:ietf:params:jmap:blob"])
        self.assertIn("Subject: CopyFrom 0", r[0][1]["list"][0]["data:asText"], r)
        r = self.call(b, "Email/import", {"emails": {
            "i1": {"blobId": mine, "mailboxIds": {inbox: True}}}}, b.acc)
        self.assertIn("i1", r[1]["created"], r)
        # from an account nobody shared
        r = b.api([["Blob/copy", {"fromAccountId": self.jmap(DAVE).acc, "accountId": b.acc,
                                  "blobIds": [blob]}, "0"]])
        self.assertEqual(r[0][1]["type"], "fromAccountNotFound", r)
        r = b.api([["Email/copy", {"fromAccountId": self.jmap(DAVE).acc, "accountId": b.acc,
                                   "create": {"k3": {"id": new, "mailboxIds": {inbox: True}}}},
                    "0"]])
        self.assertEqual(r[0][1]["type"], "fromAccountNotFound", r)

    def test_not_found_and_hostile_accounts(self):
        b = self.jmap(BOB)
        dave_acc = self.jmap(DAVE).acc  # dave shares nothing with bob
        hostile = [dave_acc, "a" + "0" * 16, "x" * 100000, "../../etc/passwd",
                   "a../../../../..", "", "a\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
                   "a\U0001f600" * 4, b.acc + "/", b.acc.upper(), b.acc[:-1] + "\u00e9"]
        for acc in hostile:
            for method in ("Mailbox/get", "Email/query", "Email/get", "Thread/get"):
                args = {"ids": []} if method.endswith("/get") else {}
                r = self.call(b, method, args, acc)
                self.assertEqual(r, ["error", {"type": "accountNotFound"}, "0"],
                                 (method, acc[:40]))
        # not a string
        r = b.api([["Mailbox/get", {"accountId": 5}, "0"]])
        self.assertEqual(r[0][1]["type"], "accountNotFound")
        # NUL and bad UTF-8 are not I-JSON at all
        status, out = b.raw_api({"using": ["urn:ietf:params:jmap:core", MAIL],
                                 "methodCalls": [["Mailbox/get", {"accountId": "a\u0000b"},
                                                  "0"]]})
        self.assertEqual(status, 400)
        status, body, _ = b.request(
            "POST", "/jmap/api/",
            b'{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],'
            b'"methodCalls":[["Mailbox/get",{"accountId":"a\xff\xfe"},"0"]]}',
            {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        # downloads: an account nobody shared, ../ in the path
        for path in ("/jmap/download/%s/Bx/m" % dave_acc, "/jmap/download/../%s/Bx/m" % b.acc,
                     "/jmap/download/%s/m" % ("a" * 5000),
                     "/jmap/download/" + urllib.parse.quote("a\xff/x/y")):
            status, _ = b.get(path)
            self.assertIn(status, (400, 404), path)
        # the server still answers
        self.assertIn("Inbox", self.boxes(b, b.acc))

    def test_submission_stays_personal(self):
        a = self.mailbox(ALICE, "Subm", 1)
        self.assertEqual(a.setacl("Subm", BOB, "lrswipkxte")[0], "OK")
        b = self.jmap(BOB)
        acc = wait_for(lambda: self.account_of(b, ALICE), 60)
        for method in ("EmailSubmission/get", "Identity/get", "VacationResponse/get"):
            r = b.api([[method, {"accountId": acc}, "0"]],
                      using=["urn:ietf:params:jmap:core", MAIL,
                             "urn:ietf:params:jmap:submission",
                             "urn:ietf:params:jmap:vacationresponse"])
            self.assertEqual(r[0][1]["type"], "accountNotSupportedByMethod", method)
            r = b.api([[method, {"accountId": b.acc}, "0"]],
                      using=["urn:ietf:params:jmap:core", MAIL,
                             "urn:ietf:params:jmap:submission",
                             "urn:ietf:params:jmap:vacationresponse"])
            self.assertEqual(r[0][0], method, r)
        # one request over two accounts: each call answers for its own
        r = b.api([["Mailbox/get", {"accountId": acc, "ids": None}, "0"],
                   ["Mailbox/get", {"accountId": b.acc, "ids": None}, "1"],
                   ["Mailbox/get", {"accountId": acc, "ids": None}, "2"]])
        self.assertEqual(r[0][1]["accountId"], acc)
        self.assertEqual(r[1][1]["accountId"], b.acc)
        self.assertIn("Subm", [m["name"] for m in r[0][1]["list"]])
        self.assertNotIn("Subm", [m["name"] for m in r[1][1]["list"]])
        self.assertEqual(r[0][1]["list"], r[2][1]["list"])

    def test_revoke_removes_the_account(self):
        e = self.mailbox(ERIN, "Tmp", 1)
        b = self.jmap(BOB)
        self.assertEqual(e.setacl("Tmp", BOB, "lr")[0], "OK")
        acc = wait_for(lambda: self.account_of(b, ERIN), 60)
        self.assertIn("Tmp", self.boxes(b, acc))
        self.assertEqual(e.deleteacl("Tmp", BOB)[0], "OK")
        wait_for(lambda: self.account_of(b, ERIN) is None, 60)
        r = self.call(b, "Mailbox/get", {}, acc)
        self.assertEqual(r[1]["type"], "accountNotFound", r)

    def test_push_names_the_account(self):
        a = self.mailbox(ALICE, "Pushed", 1)
        self.assertEqual(a.setacl("Pushed", BOB, "lr")[0], "OK")
        b = self.jmap(BOB)
        acc = wait_for(lambda: self.account_of(b, ALICE), 60)
        ev = EventStream(self.srv.port("http"), basic(BOB, USERS[BOB]))
        self.addCleanup(ev.close)
        self.assertEqual(ev.status, 200)
        first = ev.state_event(60)
        self.assertEqual(first["@type"], "StateChange")
        self.assertIn(b.acc, first["changed"])
        self.assertIn(acc, first["changed"])
        old = first["changed"][acc]["Email"]
        # alice's change wakes bob's stream, naming her account only
        self.assertEqual(a.append("Pushed", None, None, message("Pushed new"))[0], "OK")
        while True:
            data = ev.state_event(60)
            if acc in data["changed"]:
                break
        self.assertNotIn(b.acc, data["changed"])
        self.assertNotEqual(data["changed"][acc]["Email"], old)
        r = self.call(b, "Email/changes", {"sinceState": old}, acc)
        self.assertEqual(r[0], "Email/changes", r)
        self.assertEqual(len(r[1]["created"]), 1)

    def test_shared_namespace(self):
        c = self.imap(CAROL)
        self.assertEqual(c.create("Shared/jsupport")[0], "OK")
        self.assertEqual(c.append("Shared/jsupport", None, None, message("Ticket 1"))[0], "OK")
        b = self.jmap(BOB)
        self.assertEqual(c.setacl("Shared/jsupport", BOB, "lrs")[0], "OK")
        acc = wait_for(lambda: self.account_of(b, "Shared"), 60)
        status, body = b.get("/jmap/session")
        self.assertFalse(json.loads(body)["accounts"][acc]["isPersonal"])
        box = self.boxes(b, acc)["jsupport"]
        self.assertTrue(box["myRights"]["maySetSeen"])
        self.assertFalse(box["myRights"]["maySetKeywords"])
        ids = self.emails(b, acc, box["id"])
        self.assertEqual(len(ids), 1)
        r = self.call(b, "Email/set", {"update": {ids[0]: {"keywords/$seen": True}}}, acc)
        self.assertIn(ids[0], r[1]["updated"], r)
        # carol (an administrator, with every right) keeps her own \Seen
        cj = self.jmap(CAROL)
        cacc = wait_for(lambda: self.account_of(cj, "Shared"), 60)
        self.assertEqual(cacc, acc)
        self.assertEqual(self.keywords(cj, acc, ids[0]), {})
        self.assertEqual(self.keywords(b, acc, ids[0]), {"$seen": True})


class JmapSharedPgsql(PrivatePgsql, JmapSharedBase):
    """The same on the pgsql backend (skipped without PostgreSQL, or when
    ROOST_BACKENDS is set without pgsql)."""
    pg_database = "roost_jmapshared"


TestJmapShared_pgsql = type("TestJmapShared_pgsql", (JmapSharedPgsql, unittest.TestCase), {})

backend_classes(globals(), JmapSharedBase, "TestJmapShared_%s")

if __name__ == "__main__":
    unittest.main()
