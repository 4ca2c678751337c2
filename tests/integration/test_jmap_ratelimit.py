"""JMAP EmailSubmission draws on the per-user sending rates of SMTP
submission ([smtp] user_messages_per_hour, user_recipients_per_hour): one
allowance for both, and past it a creation fails with rateLimit (RFC 8620
5.3) whose description gives the wait."""
import unittest

from jmapclient import Jmap
from roosttest import SharedServer, submission

USERS = {"alice@example.org": "alice-secret", "bob@example.org": "bob-secret",
         "carol@example.org": "carol-secret"}


class JmapRateLimitTest(SharedServer, unittest.TestCase):
    server_options = {"users": USERS, "listeners": ("http", "submission"), "conf": {
        "smtp": {"user_messages_per_hour": "3", "user_recipients_per_hour": "5"}}}

    def client(self, user):
        j = Jmap(self.srv.port("http"), user, USERS[user])
        self.addCleanup(j.close)
        return j

    def submit(self, j, user, rcpts, subject):
        """Create a draft and submit it in one request: the submission's
        result (created or notCreated entry)."""
        ident = j.call("Identity/get", {})["list"][0]
        draft = {"mailboxIds": {j.mailboxes()["drafts"]["id"]: True},
                 "from": [{"email": user}], "to": [{"email": "bob@example.org"}],
                 "subject": subject, "textBody": [{"partId": "1", "type": "text/plain"}],
                 "bodyValues": {"1": {"value": "Hello."}}}
        resp = j.api([
            ["Email/set", {"accountId": j.acc, "create": {"d": draft}}, "0"],
            ["EmailSubmission/set", {"accountId": j.acc, "create": {"s": {
                "identityId": ident["id"], "emailId": "#d",
                "envelope": {"mailFrom": {"email": user},
                             "rcptTo": [{"email": r} for r in rcpts]}}}}, "1"]])
        res = resp[1][1]
        if "s" in (res.get("created") or {}):
            return "created", res["created"]["s"]
        return "notCreated", res["notCreated"]["s"]

    def test_messages_per_hour_shared_with_smtp(self):
        j = self.client("alice@example.org")
        for i in range(3):
            self.assertEqual(self.submit(j, "alice@example.org", ["bob@example.org"],
                                         "m%d" % i)[0], "created")
        kind, err = self.submit(j, "alice@example.org", ["bob@example.org"], "m3")
        self.assertEqual(kind, "notCreated")
        self.assertEqual(err["type"], "rateLimit")
        self.assertRegex(err["description"], r"at most 3\b.*try again in \d+ s")
        # SMTP submission sees the same counter.
        with submission(self.srv, "alice@example.org", USERS["alice@example.org"]) as s:
            code, text = s.mail("alice@example.org")
            self.assertEqual(code, 451, text)
        # Another user is not touched.
        self.assertEqual(self.submit(self.client("bob@example.org"), "bob@example.org",
                                     ["alice@example.org"], "from bob")[0], "created")
        self.assertRegex(self.srv.log(), r"event=rate_limited conn=\d+ peer=\S+ proto=http kind=messages "
                                         r"user=alice@example\.org retry_after=\d+")

    def test_recipients_per_hour_after_smtp(self):
        with submission(self.srv, "carol@example.org", USERS["carol@example.org"]) as s:
            s.sendmail("carol@example.org", ["bob@example.org", "alice@example.org"],
                       b"From: carol@example.org\r\nSubject: x\r\n\r\nHi.\r\n")
        j = self.client("carol@example.org")
        # 2 recipients used, 5 an hour: 4 more do not fit, 3 do.
        kind, err = self.submit(j, "carol@example.org",
                                ["bob@example.org", "alice@example.org", "bob+a@example.org",
                                 "bob+b@example.org"], "four")
        self.assertEqual((kind, err["type"]), ("notCreated", "rateLimit"))
        self.assertIn("at most 5", err["description"])
        kind, _ = self.submit(j, "carol@example.org",
                              ["bob@example.org", "alice@example.org", "bob+a@example.org"],
                              "three")
        self.assertEqual(kind, "created")


if __name__ == "__main__":
    unittest.main()
