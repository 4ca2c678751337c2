"""JMAP /queryChanges (RFC 8620 5.6) for Email and Mailbox against the real
server, on both backends: a client that applies removed and added to the
results it cached gets the results of running the query again, whatever
changed meanwhile over JMAP, IMAP or SMTP; queries whose results depend on
other Emails (threads) and hostile arguments get the RFC's errors."""
import unittest

from roosttest import JmapMailTest, backend_classes

ASC = [{"property": "receivedAt", "isAscending": True}]


def msg(n, refs=None):
    h = ("From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: note %d\r\n"
         "Message-ID: <n%d@example.org>\r\n" % (n, n))
    if refs:
        h += "References: <%s>\r\n" % refs
    return (h + "\r\nbody %d\r\n" % n).encode()


def apply_changes(cached, ch):
    """What a client does with a /queryChanges response (RFC 8620 5.6)."""
    out = [i for i in cached if i not in set(ch["removed"])]
    for item in sorted(ch["added"], key=lambda a: a["index"]):
        out.insert(item["index"], item["id"])
    return out


class QueryChanges(JmapMailTest):

    def equery(self, **args):
        args.setdefault("sort", ASC)
        return self.j.call("Email/query", args)

    def echanges(self, since, **args):
        args.setdefault("sort", ASC)
        args["sinceQueryState"] = since
        return self.j.call("Email/queryChanges", args)

    def check_follows(self, q0, **args):
        """The cached results of q0 plus the changes are the results now."""
        ch = self.echanges(q0["queryState"], calculateTotal=True, **args)
        now = self.equery(**args)
        self.assertEqual(ch["oldQueryState"], q0["queryState"])
        self.assertEqual(ch["newQueryState"], now["queryState"])
        self.assertEqual(apply_changes(q0["ids"], ch), now["ids"])
        self.assertEqual(ch["total"], len(now["ids"]))
        return ch, now

    def test_email_query_changes(self):
        for n in range(1, 5):
            self.deliver(msg(n))
        q0 = self.equery()
        self.assertTrue(q0["canCalculateChanges"])
        a, b, c, d = q0["ids"]
        qf = self.equery(filter={"hasKeyword": "$flagged"})
        qd = self.equery(sort=[{"property": "receivedAt", "isAscending": False}])
        # nothing changed: nothing to tell
        ch = self.echanges(q0["queryState"])
        self.assertEqual((ch["removed"], ch["added"]), ([], []))
        # a new message, a flag over IMAP, a destroy over JMAP, a move
        self.deliver(msg(5))
        m = self.imap()
        m.select("INBOX")
        self.assertEqual(m.store("1", "+FLAGS", "(\\Flagged)")[0], "OK")
        self.assertEqual(self.j.call("Email/set", {"destroy": [b]})["destroyed"], [b])
        boxes = self.j.mailboxes()
        r = self.j.call("Email/set", {"update": {c: {"mailboxIds":
                                                     {boxes["archive"]["id"]: True}}}})
        self.assertIn(c, r["updated"])
        ch, now = self.check_follows(q0)
        self.assertIn(b, ch["removed"])
        self.assertNotIn(b, now["ids"])
        self.assertEqual(len(now["ids"]), 4)
        self.check_follows(qd, sort=[{"property": "receivedAt", "isAscending": False}])
        # a filter on a keyword: the flagged one comes in, at its place
        ch, now = self.check_follows(qf, filter={"hasKeyword": "$flagged"})
        self.assertEqual(now["ids"], [a])
        self.assertEqual(ch["added"], [{"id": a, "index": 0}])
        # and goes out again
        q1 = self.equery(filter={"hasKeyword": "$flagged"})
        self.j.call("Email/set", {"update": {a: {"keywords/$flagged": None}}})
        ch, now = self.check_follows(q1, filter={"hasKeyword": "$flagged"})
        self.assertEqual((now["ids"], ch["removed"], ch["added"]), ([], [a], []))
        # inMailbox, with the move back
        inbox = boxes["inbox"]["id"]
        q2 = self.equery(filter={"inMailbox": inbox})
        self.j.call("Email/set", {"update": {c: {"mailboxIds": {inbox: True}}}})
        self.check_follows(q2, filter={"inMailbox": inbox})
        # other sorts hold too
        q3 = self.equery(sort=[{"property": "subject", "isAscending": False}])
        self.deliver(msg(0))
        self.check_follows(q3, sort=[{"property": "subject", "isAscending": False}])

    def test_email_query_changes_refused(self):
        self.deliver(msg(1))
        self.deliver(msg(2, refs="n1@example.org"))
        acc = self.j.acc
        q = self.equery()
        st = q["queryState"]
        self.assertFalse(self.equery(collapseThreads=True)["canCalculateChanges"])
        self.deliver(msg(3))
        self.deliver(msg(4))
        resp = self.j.api([
            ["Email/queryChanges", {"accountId": acc, "sinceQueryState": st,
                                    "collapseThreads": True}, "collapse"],
            ["Email/queryChanges", {"accountId": acc, "sinceQueryState": st,
                                    "filter": {"operator": "NOT", "conditions": [
                                        {"someInThreadHaveKeyword": "$seen"}]}}, "thread"],
            ["Email/queryChanges", {"accountId": acc, "sinceQueryState": st,
                                    "maxChanges": 1}, "max"],
            ["Email/queryChanges", {"accountId": acc, "sinceQueryState": "garbage"}, "bad"],
            ["Email/queryChanges", {"accountId": acc, "sinceQueryState": "s" + "_" * 5000},
             "underscores"],
            ["Email/queryChanges", {"accountId": acc}, "missing"],
            ["Email/queryChanges", {"accountId": acc, "sinceQueryState": st,
                                    "maxChanges": 0}, "zero"],
            ["Email/queryChanges", {"accountId": acc, "sinceQueryState": st,
                                    "sort": [{"property": "nope"}]}, "sort"],
            ["Email/queryChanges", {"accountId": acc, "sinceQueryState": st,
                                    "filter": {"unknownCondition": 1}}, "filter"],
            ["Email/queryChanges", {"accountId": "other", "sinceQueryState": st}, "acct"],
            ["Email/queryChanges", {"accountId": acc, "sinceQueryState": st,
                                    "maxChanges": 2}, "fits"],
        ])
        out = {r[2]: r for r in resp}
        for t in ("collapse", "thread", "bad", "underscores"):
            self.assertEqual(out[t][1]["type"], "cannotCalculateChanges", t)
        self.assertEqual(out["max"][1]["type"], "tooManyChanges")
        self.assertEqual(out["missing"][1]["type"], "invalidArguments")
        self.assertEqual(out["zero"][1]["type"], "invalidArguments")
        self.assertEqual(out["sort"][1]["type"], "unsupportedSort")
        self.assertEqual(out["filter"][1]["type"], "unsupportedFilter")
        self.assertEqual(out["acct"][1]["type"], "accountNotFound")
        self.assertEqual(out["fits"][0], "Email/queryChanges")
        self.assertEqual(len(out["fits"][1]["added"]), 2)

    def test_up_to_id(self):
        """upToId: a client holding the first results gets the changes up to
        its last id only when the query looks at nothing that can change;
        else (and for Mailboxes, whose every sort and filter can change)
        every change is told."""
        for n in range(1, 6):
            self.deliver(msg(n))
        q0 = self.equery()
        a, b, c, d, e = q0["ids"]
        cached = [a, b]  # the client fetched the first two only
        inbox = self.j.mailboxes()["inbox"]["id"]
        qm = self.equery(filter={"inMailbox": inbox})
        self.deliver(msg(6))
        self.deliver(msg(7))
        m = self.imap()
        m.select("INBOX")
        self.assertEqual(m.store("2,3", "+FLAGS", "(\\Flagged)")[0], "OK")
        self.assertEqual(self.j.call("Email/set", {"destroy": [a]})["destroyed"], [a])
        now = self.equery()
        full = self.echanges(q0["queryState"])
        ch = self.echanges(q0["queryState"], upToId=b)
        self.assertEqual(ch["newQueryState"], now["queryState"])
        # up to b (now first): b's own update is told, nothing after it
        self.assertEqual(ch["added"], [{"id": b, "index": 0}])
        self.assertEqual(apply_changes(cached, ch), now["ids"][:1])
        self.assertEqual(sorted(ch["removed"]), sorted(full["removed"]))
        self.assertGreater(len(full["added"]), len(ch["added"]))
        self.assertEqual(apply_changes(q0["ids"], full), now["ids"])
        # a condition on a mailbox (mutable): upToId is ignored
        args = {"filter": {"inMailbox": inbox}}
        ch = self.echanges(qm["queryState"], upToId=b, **args)
        self.assertEqual(ch["added"], self.echanges(qm["queryState"], **args)["added"])
        self.assertEqual(apply_changes(qm["ids"], ch), self.equery(**args)["ids"])
        # an immutable filter honours it
        args = {"filter": {"from": "bob"}}
        ch = self.echanges(q0["queryState"], upToId=b, **args)
        self.assertEqual(ch["added"], [{"id": b, "index": 0}])
        # an id not in the results: every change
        ch = self.echanges(q0["queryState"], upToId="E" + "0" * 16)
        self.assertEqual(ch["added"], full["added"])
        ch = self.echanges(q0["queryState"], upToId=None)
        self.assertEqual(ch["added"], full["added"])
        acc = self.j.acc
        resp = self.j.api([
            ["Email/queryChanges", {"accountId": acc, "sinceQueryState": q0["queryState"],
                                    "upToId": 5}, "e"],
            ["Mailbox/queryChanges", {"accountId": acc, "sinceQueryState": "s0",
                                      "upToId": ["x"]}, "m"],
        ])
        self.assertEqual(resp[0][1]["type"], "invalidArguments")
        self.assertEqual(resp[1][1]["type"], "invalidArguments")
        # Mailbox/queryChanges: upToId is taken and every change told
        mq = self.j.call("Mailbox/query", {})
        self.assertEqual(m.create("Aaa")[0], "OK")
        self.assertEqual(m.create("Zzz")[0], "OK")
        ch = self.j.call("Mailbox/queryChanges", {"sinceQueryState": mq["queryState"],
                                                  "upToId": mq["ids"][0]})
        full = self.j.call("Mailbox/queryChanges", {"sinceQueryState": mq["queryState"]})
        self.assertEqual(ch["added"], full["added"])
        self.assertEqual(len(ch["added"]), 2)
        self.assertEqual(apply_changes(mq["ids"], ch), self.j.call("Mailbox/query", {})["ids"])

    def test_mailbox_query_changes(self):
        q0 = self.j.call("Mailbox/query", {})
        self.assertTrue(q0["canCalculateChanges"])
        m = self.imap()
        self.assertEqual(m.create("Zeta")[0], "OK")
        self.assertEqual(m.create("Alpha/Beta")[0], "OK")
        self.assertEqual(m.delete("Junk")[0], "OK")
        self.assertEqual(m.rename("Archive", "Old/Archive")[0], "OK")
        ch = self.j.call("Mailbox/queryChanges", {"sinceQueryState": q0["queryState"],
                                                  "calculateTotal": True})
        now = self.j.call("Mailbox/query", {})
        self.assertEqual(apply_changes(q0["ids"], ch), now["ids"])
        self.assertEqual(ch["total"], len(now["ids"]))
        self.assertEqual(ch["newQueryState"], now["queryState"])
        # a filter on the parent
        alpha = [b for b in self.j.call("Mailbox/get", {})["list"] if b["name"] == "Alpha"][0]
        qp = self.j.call("Mailbox/query", {"filter": {"parentId": alpha["id"]}})
        self.assertEqual(m.create("Alpha/Gamma")[0], "OK")
        ch = self.j.call("Mailbox/queryChanges", {"sinceQueryState": qp["queryState"],
                                                  "filter": {"parentId": alpha["id"]}})
        now = self.j.call("Mailbox/query", {"filter": {"parentId": alpha["id"]}})
        self.assertEqual(apply_changes(qp["ids"], ch), now["ids"])
        self.assertEqual(len(now["ids"]), 2)
        acc = self.j.acc
        resp = self.j.api([
            ["Mailbox/queryChanges", {"accountId": acc, "sinceQueryState": q0["queryState"],
                                      "filter": {"isSubscribed": True}}, "sub"],
            ["Mailbox/queryChanges", {"accountId": acc, "sinceQueryState": "s0"}, "bad"],
            ["Mailbox/queryChanges", {"accountId": acc, "sinceQueryState": 7}, "type"],
            ["Mailbox/queryChanges", {"accountId": acc, "sinceQueryState": q0["queryState"],
                                      "maxChanges": 1}, "max"],
            ["Mailbox/queryChanges", {"accountId": acc, "sinceQueryState": q0["queryState"],
                                      "filter": []}, "filter"],
        ])
        out = {r[2]: r for r in resp}
        self.assertEqual(out["sub"][1]["type"], "cannotCalculateChanges")
        self.assertEqual(out["bad"][1]["type"], "cannotCalculateChanges")
        self.assertEqual(out["type"][1]["type"], "invalidArguments")
        self.assertEqual(out["max"][1]["type"], "tooManyChanges")
        self.assertEqual(out["filter"][1]["type"], "invalidArguments")
        self.assertFalse(self.j.call("Mailbox/query", {"filter": {"isSubscribed": True}})
                         ["canCalculateChanges"])


backend_classes(globals(), QueryChanges, "QueryChanges")

if __name__ == "__main__":
    unittest.main()
