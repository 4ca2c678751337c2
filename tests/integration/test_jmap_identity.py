"""JMAP Identity (RFC 8621 6) against the real server, on both backends:
a user's identities are its own address and the sender aliases the
aliases file grants it; Identity/set creates, changes and destroys what a
client may, kept in storage; EmailSubmission sends as an alias identity
and the other user reads it over IMAP; hostile input gets SetErrors."""
import unittest

from jmapclient import Jmap
from roosttest import DEFAULT_USERS, backend_classes, imap_session, own_server

ALIASES = """postmaster: alice
sales@example.org: alice, bob
abuse@example.org: bob
"""


class Identities:
    backend = "lmdb"

    def setUp(self):
        self.srv = own_server(self, backend=self.backend, listeners=("http", "imap"),
                              users=dict(DEFAULT_USERS), aliases=ALIASES)
        self.j = Jmap(self.srv.port("http"), "alice@example.org", "alice-secret")
        self.addCleanup(self.j.close)

    def idents(self, j=None):
        got = (j or self.j).call("Identity/get", {})
        return {i["email"]: i for i in got["list"]}, got["state"]

    def test_identities_from_aliases(self):
        ids, state = self.idents()
        self.assertEqual(sorted(ids), ["alice@example.org", "postmaster@example.org",
                                       "postmaster@roost.test", "sales@example.org"])
        self.assertTrue(all(not i["mayDelete"] for i in ids.values()))
        b = Jmap(self.srv.port("http"), "bob@example.org", "bob-secret")
        self.addCleanup(b.close)
        bids, _ = self.idents(b)
        self.assertEqual(sorted(bids), ["abuse@example.org", "bob@example.org",
                                        "sales@example.org"])
        # the same alias has the same id for both
        self.assertEqual(bids["sales@example.org"]["id"], ids["sales@example.org"]["id"])
        # /get by id, an id asked twice, unknown ones
        pm = ids["postmaster@example.org"]["id"]
        got = self.j.call("Identity/get", {"ids": [pm, pm, "Inope", bids["abuse@example.org"]["id"]]})
        self.assertEqual([i["id"] for i in got["list"]], [pm])
        self.assertEqual(len(got["notFound"]), 2)
        ch = self.j.call("Identity/changes", {"sinceState": state})
        self.assertEqual((ch["created"], ch["updated"], ch["destroyed"]), ([], [], []))

    def test_set_and_submit(self):
        ids, s0 = self.idents()
        pm = ids["postmaster@example.org"]["id"]
        own = ids["alice@example.org"]["id"]
        r = self.j.call("Identity/set", {
            "update": {pm: {"name": "The Postmaster", "textSignature": "-- \npm",
                            "replyTo": [{"name": None, "email": "help@example.org"}]},
                       "Inope": {"name": "x"}},
            "create": {"desk": {"email": "sales@example.org", "name": "Sales desk"},
                       "forged": {"email": "bob@example.org"},
                       "bad": {"email": "sales@example.org", "replyTo": "nope"},
                       "noemail": {"name": "n"}},
            "destroy": [own]})
        self.assertEqual(r["oldState"], s0)
        self.assertNotEqual(r["newState"], s0)
        self.assertIn(pm, r["updated"])
        self.assertEqual(r["notUpdated"]["Inope"]["type"], "notFound")
        desk = r["created"]["desk"]["id"]
        self.assertTrue(r["created"]["desk"]["mayDelete"])
        self.assertEqual(r["notCreated"]["forged"]["type"], "forbiddenFrom")
        self.assertEqual(r["notCreated"]["bad"]["type"], "invalidProperties")
        self.assertEqual(r["notCreated"]["noemail"]["type"], "invalidProperties")
        self.assertEqual(r["notDestroyed"][own]["type"], "forbidden")
        # kept in storage: a new connection sees them
        j2 = Jmap(self.srv.port("http"), "alice@example.org", "alice-secret")
        self.addCleanup(j2.close)
        got = {i["id"]: i for i in j2.call("Identity/get", {})["list"]}
        self.assertEqual(got[pm]["name"], "The Postmaster")
        self.assertEqual(got[pm]["textSignature"], "-- \npm")
        self.assertEqual(got[pm]["replyTo"], [{"name": None, "email": "help@example.org"}])
        self.assertEqual(got[desk]["email"], "sales@example.org")
        self.assertEqual(got[desk]["name"], "Sales desk")
        resp = self.j.api([["Identity/changes", {"accountId": self.j.acc, "sinceState": s0},
                            "c"],
                           ["Identity/set", {"accountId": self.j.acc, "ifInState": s0,
                                             "destroy": [desk]}, "s"]])
        self.assertEqual(resp[0][1]["type"], "cannotCalculateChanges")
        self.assertEqual(resp[1][1]["type"], "stateMismatch")
        # send as the postmaster alias: bob reads it over IMAP
        boxes = self.j.mailboxes()
        draft = {"mailboxIds": {boxes["drafts"]["id"]: True},
                 "from": [{"name": "The Postmaster", "email": "postmaster@example.org"}],
                 "to": [{"email": "bob@example.org"}], "subject": "from the postmaster",
                 "textBody": [{"partId": "1", "type": "text/plain"}],
                 "bodyValues": {"1": {"value": "hello"}}}
        resp = self.j.api([
            ["Email/set", {"accountId": self.j.acc, "create": {"d": draft}}, "0"],
            ["EmailSubmission/set", {"accountId": self.j.acc, "create": {
                "s": {"identityId": pm, "emailId": "#d"},
                "t": {"identityId": "Inope", "emailId": "#d"}}}, "1"]])
        self.assertIn("s", resp[1][1]["created"], resp)
        self.assertEqual(resp[1][1]["notCreated"]["t"]["type"], "invalidProperties")
        m = imap_session(self, self.srv.port("imap"), "bob@example.org", "bob-secret")
        m.select("INBOX")
        typ, data = m.fetch("1", "(BODY[HEADER.FIELDS (FROM)])")
        self.assertIn(b"postmaster@example.org", data[0][1])
        # the created identity goes
        r = self.j.call("Identity/set", {"destroy": [desk, desk + "x"]})
        self.assertEqual(r["destroyed"], [desk])
        self.assertEqual(r["notDestroyed"][desk + "x"]["type"], "notFound")
        self.assertNotIn(desk, {i["id"] for i in self.j.call("Identity/get", {})["list"]})
        # hostile: huge values, too many objects
        resp = self.j.api([
            ["Identity/set", {"accountId": self.j.acc,
                              "update": {pm: {"name": "x" * 100000, "email": "a@b"}}}, "big"],
            ["Identity/set", {"accountId": self.j.acc,
                              "create": {str(i): {} for i in range(501)}}, "many"],
            ["Identity/set", {"accountId": self.j.acc, "update": {pm: "notanobject"},
                              "destroy": [7, None]}, "types"],
        ])
        self.assertEqual(resp[0][1]["notUpdated"][pm]["type"], "invalidProperties")
        self.assertEqual(resp[1][1]["type"], "requestTooLarge")
        self.assertEqual(resp[2][1]["notUpdated"][pm]["type"], "invalidProperties")


backend_classes(globals(), Identities, "Identities")

if __name__ == "__main__":
    unittest.main()
