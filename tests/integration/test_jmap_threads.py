"""JMAP threads (RFC 8621 3) against the real server, on both backends: a
Thread is every Email sharing IMAP's THREADID (the root its header names),
Thread/get lists them oldest first, Thread/changes follows deliveries,
flags and moves made over IMAP, Email/query collapses threads and matches
the thread keyword filters over the whole thread; hostile ids get the
RFC's errors."""
import unittest

from jmapclient import Jmap
from roosttest import JmapMailTest, backend_classes


def msg(mid, subject, refs=None, reply_to=None):
    h = "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: %s\r\n" % subject
    h += "Message-ID: <%s>\r\n" % mid
    if reply_to:
        h += "In-Reply-To: <%s>\r\n" % reply_to
    if refs:
        h += "References: %s\r\n" % " ".join("<%s>" % r for r in refs)
    return (h + "\r\nbody of %s\r\n" % subject).encode()


ROOT = msg("root@example.org", "plans")
REPLY = msg("reply@example.org", "Re: plans", refs=["root@example.org"],
            reply_to="root@example.org")
OTHER = msg("other@example.org", "unrelated")


class Threads(JmapMailTest):

    def by_subject(self):
        ids = self.j.query()
        got = self.j.call("Email/get", {"ids": ids, "properties": ["subject", "threadId",
                                                                  "receivedAt"]})
        return {e["subject"]: e for e in got["list"]}

    def thread_state(self):
        return self.j.call("Thread/get", {"ids": []})["state"]

    def test_threads_get_query_and_imap_agree(self):
        for m in (ROOT, REPLY, OTHER):
            self.deliver(m)
        e = self.by_subject()
        root, reply, other = e["plans"], e["Re: plans"], e["unrelated"]
        self.assertEqual(root["threadId"], reply["threadId"])
        self.assertNotEqual(root["threadId"], other["threadId"])
        got = self.j.call("Thread/get", {"ids": [root["threadId"], other["threadId"],
                                                 "Tffffffffffffffff"]})
        threads = {t["id"]: t["emailIds"] for t in got["list"]}
        self.assertEqual(sorted(threads[root["threadId"]]), sorted([root["id"], reply["id"]]))
        self.assertEqual(threads[other["threadId"]], [other["id"]])
        self.assertEqual(got["notFound"], ["Tffffffffffffffff"])
        # oldest first (RFC 8621 3)
        dates = [e2["receivedAt"] for e2 in self.j.call(
            "Email/get", {"ids": threads[root["threadId"]],
                          "properties": ["receivedAt"]})["list"]]
        self.assertEqual(dates, sorted(dates))
        # the same THREADID IMAP's OBJECTID shows
        m = self.imap()
        m.select("INBOX")
        typ, data = m.fetch("1:3", "(THREADID)")
        tids = {d.decode().split("THREADID (")[1].split(")")[0] for d in data}
        self.assertEqual(tids, {root["threadId"], other["threadId"]})
        # a result reference from Email/get to Thread/get, as RFC 8621 shows
        resp = self.j.api([
            ["Email/get", {"accountId": self.j.acc, "ids": [reply["id"]],
                           "properties": ["threadId"]}, "a"],
            ["Thread/get", {"accountId": self.j.acc,
                            "#ids": {"resultOf": "a", "name": "Email/get",
                                     "path": "/list/*/threadId"}}, "b"]])
        self.assertEqual(sorted(resp[1][1]["list"][0]["emailIds"]),
                         sorted([root["id"], reply["id"]]))
        # collapseThreads: one Email per thread, the first as sorted
        q = self.j.call("Email/query", {"collapseThreads": True, "calculateTotal": True,
                                        "sort": [{"property": "receivedAt",
                                                  "isAscending": False}]})
        self.assertTrue(q["collapseThreads"])
        self.assertEqual(q["total"], 2)
        self.assertEqual(len(q["ids"]), 2)
        tids = {e2["threadId"] for e2 in self.j.call(
            "Email/get", {"ids": q["ids"], "properties": ["threadId"]})["list"]}
        self.assertEqual(tids, {root["threadId"], other["threadId"]})
        full = self.j.call("Email/query", {"calculateTotal": True})
        self.assertEqual(full["total"], 3)
        self.assertFalse(full["collapseThreads"])

    def test_thread_keyword_filters(self):
        for m in (ROOT, REPLY, OTHER):
            self.deliver(m)
        e = self.by_subject()
        root, reply, other = e["plans"], e["Re: plans"], e["unrelated"]
        r = self.j.call("Email/set", {"update": {reply["id"]: {"keywords/$flagged": True}}})
        self.assertIn(reply["id"], r["updated"])
        self.assertEqual(sorted(self.j.query(someInThreadHaveKeyword="$flagged")),
                         sorted([root["id"], reply["id"]]))
        self.assertEqual(self.j.query(allInThreadHaveKeyword="$flagged"), [])
        self.assertEqual(self.j.query(noneInThreadHaveKeyword="$flagged"), [other["id"]])
        self.assertEqual(self.j.query(hasKeyword="$flagged"), [reply["id"]])
        self.j.call("Email/set", {"update": {root["id"]: {"keywords/$flagged": True}}})
        self.assertEqual(sorted(self.j.query(allInThreadHaveKeyword="$flagged")),
                         sorted([root["id"], reply["id"]]))

    def test_thread_changes(self):
        self.deliver(ROOT)
        self.deliver(OTHER)
        e = self.by_subject()
        root, other = e["plans"], e["unrelated"]
        s0 = self.thread_state()
        # a reply updates its thread; a new root creates one
        self.deliver(REPLY)
        self.deliver(msg("new@example.org", "fresh"))
        e = self.by_subject()
        ch = self.j.call("Thread/changes", {"sinceState": s0})
        self.assertEqual(ch["oldState"], s0)
        self.assertEqual(ch["updated"], [root["threadId"]])
        self.assertEqual(ch["created"], [e["fresh"]["threadId"]])
        self.assertEqual(ch["destroyed"], [])
        self.assertFalse(ch["hasMoreChanges"])
        # Email/changes has the Emails themselves
        ech = self.j.call("Email/changes", {"sinceState": s0})
        self.assertEqual(sorted(ech["created"]), sorted([e["Re: plans"]["id"],
                                                         e["fresh"]["id"]]))
        # flags and moves over IMAP change no Thread
        s1 = ch["newState"]
        m = self.imap()
        m.select("INBOX")
        self.assertEqual(m.store("1:*", "+FLAGS", "(\\Seen)")[0], "OK")
        self.assertEqual(m.create("Projects")[0], "OK")
        self.assertEqual(m.uid("MOVE", "1", "Projects")[0], "OK")
        ch = self.j.call("Thread/changes", {"sinceState": s1})
        self.assertEqual((ch["created"], ch["updated"], ch["destroyed"]), ([], [], []))
        ech = self.j.call("Email/changes", {"sinceState": s1})
        self.assertEqual(ech["destroyed"], [])
        self.assertIn(root["id"], ech["updated"])
        # an IMAP COPY is no new Email and no new Thread
        s2 = ch["newState"]
        m.select("INBOX")
        self.assertEqual(m.copy("1", "Archive")[0], "OK")
        ech = self.j.call("Email/changes", {"sinceState": s2})
        self.assertEqual(ech["created"], [])
        self.assertEqual(len(ech["updated"]), 1)
        ch = self.j.call("Thread/changes", {"sinceState": s2})
        self.assertEqual((ch["created"], ch["updated"], ch["destroyed"]), ([], [], []))
        # a destroyed Email's thread: destroyed with its last member...
        s3 = ch["newState"]
        r = self.j.call("Email/set", {"destroy": [other["id"]]})
        self.assertEqual(r["destroyed"], [other["id"]])
        ch = self.j.call("Thread/changes", {"sinceState": s3})
        self.assertEqual((ch["created"], ch["updated"], ch["destroyed"]),
                         ([], [], [other["threadId"]]))
        self.assertEqual(self.j.call("Thread/get", {"ids": [other["threadId"]]})["notFound"],
                         [other["threadId"]])
        # ... updated while members remain (over IMAP: the same), and a
        # reply arriving in the same span leaves it updated, not created
        s4 = ch["newState"]
        m.select("Projects")
        self.assertEqual(m.store("1", "+FLAGS", "(\\Deleted)")[0], "OK")
        self.assertEqual(m.expunge()[0], "OK")
        self.deliver(msg("late@example.org", "Re: plans again", refs=["root@example.org"]))
        ch = self.j.call("Thread/changes", {"sinceState": s4})
        self.assertEqual((ch["created"], ch["updated"], ch["destroyed"]),
                         ([], [root["threadId"]], []))
        members = self.j.call("Thread/get", {"ids": [root["threadId"]]})["list"][0]["emailIds"]
        self.assertEqual(len(members), 2)  # the reply and the late one
        # a destroy after a restart: nobody remembers its thread; the client
        # starts over
        s5 = ch["newState"]
        e = self.by_subject()
        self.srv.stop()
        self.srv.launch()
        self.j = Jmap(self.srv.port("http"), "alice@example.org", "alice-secret")
        self.addCleanup(self.j.close)
        r = self.j.call("Email/set", {"destroy": [e["fresh"]["id"]]})
        self.assertEqual(r["destroyed"], [e["fresh"]["id"]])
        resp = self.j.api([["Thread/changes", {"accountId": self.j.acc, "sinceState": s5},
                            "t"]])
        self.assertEqual(resp[0][0], "error")
        self.assertEqual(resp[0][1]["type"], "cannotCalculateChanges")
        # Email/changes tells it all the same
        ech = self.j.call("Email/changes", {"sinceState": s5})
        self.assertEqual(ech["destroyed"], [e["fresh"]["id"]])

    def test_hostile_thread_ids(self):
        self.deliver(ROOT)
        acc = self.j.acc
        resp = self.j.api([
            ["Thread/get", {"accountId": acc, "ids": None}, "null"],
            ["Thread/get", {"accountId": acc, "ids": "T1"}, "str"],
            ["Thread/get", {"accountId": acc, "ids": [1, 2]}, "ints"],
            ["Thread/get", {"accountId": acc, "ids": ["T" + "f" * 17] * 1001}, "huge"],
            ["Thread/get", {"accountId": acc,
                            "ids": ["", "T", "Tzzzzzzzzzzzzzzzz", "T../../etc/passwd",
                                    "T\u00e9" * 8, "E" + "0" * 16, "T" + "0" * 16]},
             "bad"],
            ["Thread/get", {"accountId": "nope", "ids": []}, "acct"],
            ["Thread/changes", {"accountId": acc, "sinceState": "garbage"}, "state"],
            ["Thread/changes", {"accountId": acc, "sinceState": "s", "maxChanges": -1},
             "max"],
        ])
        out = {r[2]: r for r in resp}
        self.assertEqual(out["null"][1]["type"], "requestTooLarge")
        self.assertEqual(out["str"][1]["type"], "invalidArguments")
        self.assertEqual(out["ints"][1]["type"], "invalidArguments")
        self.assertEqual(out["huge"][1]["type"], "requestTooLarge")
        self.assertEqual(out["bad"][0], "Thread/get")
        self.assertEqual(out["bad"][1]["list"], [])
        self.assertEqual(len(out["bad"][1]["notFound"]), 7)
        self.assertEqual(out["acct"][1]["type"], "accountNotFound")
        self.assertEqual(out["state"][1]["type"], "cannotCalculateChanges")
        self.assertEqual(out["max"][1]["type"], "invalidArguments")
        # still serving
        self.assertEqual(len(self.j.query()), 1)


backend_classes(globals(), Threads, "Threads")

if __name__ == "__main__":
    unittest.main()
