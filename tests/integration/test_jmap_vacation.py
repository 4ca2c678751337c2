"""JMAP VacationResponse (RFC 8621 8) and the auto-reply it drives (RFC
3834, RFC 5230), on both backends: the singleton's /get and /set with
their errors (dates, types, sizes, bad UTF-8), and the reply itself, sent
through the outbound queue to a second Roost (receiving for remote-a.test,
found through our own DNS responder): it reaches the sender once per
period, with Auto-Submitted, In-Reply-To and References, and never goes to
lists, bulk or automatic mail, the null sender, the user's own address,
mail not addressed to the user, or outside the dates."""
import email
import json
import re
import smtplib
import time
import unittest

from dnsstub import DnsStub
from jmapclient import Jmap
from roosttest import (BACKENDS, DEFAULT_USERS, RoostServer, SharedServer, backend_classes,
                       free_port, wait_for, wait_log)
from test_smtp import fetch, uids

VAC = "urn:ietf:params:jmap:vacationresponse"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", VAC]
CAROL = "carol@remote-a.test"
ALICE = "alice@example.org"

DNS = None
RECEIVER = None
PORT = None


def setUpModule():
    global DNS, RECEIVER, PORT
    DNS = DnsStub({"remote-a.test": {"A": ["127.0.0.1"]}}).start()
    PORT = free_port()
    RECEIVER = RoostServer(backend=BACKENDS[0], users={CAROL: "c"}, listeners=("smtp",), conf={
        "listen": {"smtp": "127.0.0.1:%d" % PORT},
        "smtp": {"domains": "remote-a.test"},
        "server": {"hostname": "receiver.test"},
    })
    RECEIVER.start()


def tearDownModule():
    try:
        RECEIVER.stop()
    finally:
        RECEIVER.cleanup()
        DNS.stop()


def carol_mail():
    return [fetch(RECEIVER, CAROL, uid) for uid, _ in uids(RECEIVER, CAROL)]


def msg(subject, sender=CAROL, to=ALICE, extra="", msgid=None):
    msgid = msgid or "<%s.%f@remote-a.test>" % (re.sub(r"\W", "", subject), time.time())
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n%s"
            "Date: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\nHello.\r\n"
            % (sender, to, subject, msgid, extra)).encode(), msgid


class Vacation(SharedServer):
    backend = "lmdb"

    @classmethod
    def server_args(cls):
        # the receiver's port and the DNS stub exist once setUpModule ran
        return dict(super().server_args(), users=dict(DEFAULT_USERS),
                    listeners=("http", "smtp"), conf={
                        "relay": {"mx_port": str(PORT), "retry_min": "1", "retry_max": "2",
                                  "connect_timeout": "5"},
                        "dns": {"servers": DNS.server, "timeout": "3"},
                        "server": {"hostname": "sender.test"},
                    })

    def setUp(self):
        self.j = Jmap(self.srv.port("http"), ALICE, "alice-secret")
        self.addCleanup(self.j.close)

    def call(self, name, args, j=None):
        j = j or self.j
        args = dict(args)
        args.setdefault("accountId", j.acc)
        resp = j.api([[name, args, "0"]], using=USING)
        return resp[0]

    def vset(self, patch, **kw):
        args = {"update": {"singleton": patch}}
        args.update(kw)
        return self.call("VacationResponse/set", args)

    def send(self, data, sender=CAROL, rcpts=(ALICE,)):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=20) as s:
            s.sendmail(sender, list(rcpts), data)

    def vacation_lines(self):
        return [l for l in self.srv.log().splitlines() if "event=vacation " in l]

    def test_get_set_and_errors(self):
        self.assertIn(VAC, self.j.session["capabilities"])
        self.assertEqual(self.j.session["primaryAccounts"][VAC], self.j.acc)
        # a fresh account: the defaults
        name, r, _ = self.call("VacationResponse/get", {"ids": None})
        self.assertEqual(name, "VacationResponse/get")
        self.assertEqual(r["list"], [{"id": "singleton", "isEnabled": False, "fromDate": None,
                                      "toDate": None, "subject": None, "textBody": None,
                                      "htmlBody": None}])
        state = r["state"]
        _, r, _ = self.call("VacationResponse/get", {"ids": ["singleton", "other", "singleton"],
                                                     "properties": ["isEnabled"]})
        self.assertEqual(r["list"], [{"id": "singleton", "isEnabled": False}])
        self.assertEqual(r["notFound"], ["other"])
        self.assertEqual(self.call("VacationResponse/get", {"properties": ["nope"]})[0],
                         "error")
        # set, then read back; the state moves
        _, r, _ = self.vset({"isEnabled": True, "fromDate": "2020-01-01T00:00:00Z",
                             "toDate": "2100-01-01T00:00:00Z", "subject": "Weg – fort",
                             "textBody": "Zurück am Montag."}, ifInState=state)
        self.assertEqual(r["updated"], {"singleton": None})
        self.assertEqual(r["oldState"], state)
        self.assertNotEqual(r["newState"], state)
        new = r["newState"]
        _, r, _ = self.call("VacationResponse/get", {})
        self.assertEqual(r["state"], new)
        v = r["list"][0]
        self.assertEqual((v["isEnabled"], v["fromDate"], v["toDate"], v["subject"],
                          v["textBody"], v["htmlBody"]),
                         (True, "2020-01-01T00:00:00Z", "2100-01-01T00:00:00Z", "Weg – fort",
                          "Zurück am Montag.", None))
        # errors: stale state, create, destroy, other ids, bad values
        self.assertEqual(self.vset({"isEnabled": False}, ifInState=state)[1]["type"],
                         "stateMismatch")
        _, r, _ = self.call("VacationResponse/set", {
            "create": {"x": {"isEnabled": True}}, "destroy": ["singleton"],
            "update": {"other": {"isEnabled": True}}})
        self.assertEqual(r["notCreated"]["x"]["type"], "singleton")
        self.assertEqual(r["notDestroyed"]["singleton"]["type"], "singleton")
        self.assertEqual(r["notUpdated"]["other"]["type"], "notFound")
        for patch, prop in (({"fromDate": "yesterday"}, "fromDate"),
                            ({"toDate": "2024-13-45T99:99:99Z"}, "toDate"),
                            ({"toDate": "2024-01-01T00:00:00+02:00"}, "toDate"),
                            ({"fromDate": "x" * 100000}, "fromDate"),
                            ({"isEnabled": "yes"}, "isEnabled"),
                            ({"subject": 5}, "subject"),
                            ({"id": "other"}, "id"),
                            ({"color": "red"}, "color")):
            _, r, _ = self.vset(patch)
            err = r["notUpdated"]["singleton"]
            self.assertEqual(err["type"], "invalidProperties", patch)
            self.assertEqual(err["properties"], [prop])
        _, r, _ = self.vset({"textBody": "x" * 200000})
        self.assertEqual(r["notUpdated"]["singleton"]["type"], "tooLarge")
        # nothing of the failures was stored
        _, r, _ = self.call("VacationResponse/get", {})
        self.assertEqual(r["state"], new)
        # bad UTF-8 never gets past the JSON parser
        status, body, _ = self.j.request(
            "POST", "/jmap/api/",
            b'{"using":["urn:ietf:params:jmap:core","' + VAC.encode() + b'"],"methodCalls":'
            b'[["VacationResponse/set",{"accountId":"' + self.j.acc.encode() +
            b'","update":{"singleton":{"subject":"\xff\xfe"}}},"0"]]}',
            {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["type"], "urn:ietf:params:jmap:error:notJSON")
        # without the capability in using: unknownMethod
        resp = self.j.api([["VacationResponse/get", {"accountId": self.j.acc}, "0"]])
        self.assertEqual(resp[0][1]["type"], "unknownMethod")
        # another user has their own
        b = Jmap(self.srv.port("http"), "bob@example.org", "bob-secret")
        self.addCleanup(b.close)
        _, r, _ = self.call("VacationResponse/get", {}, j=b)
        self.assertFalse(r["list"][0]["isEnabled"])
        self.vset({"isEnabled": False})

    def test_reply_once_through_the_queue_and_never_to_automatic_mail(self):
        _, r, _ = self.vset({"isEnabled": True, "fromDate": None, "toDate": None,
                             "subject": "Away – back Monday", "textBody": "I am away.\n",
                             "htmlBody": None})
        self.assertEqual(r["updated"], {"singleton": None})
        before = len(carol_mail())
        base = len(self.vacation_lines())

        def skipped(reason, n=1):
            return wait_log(self.srv, r"event=vacation user=\S+ to=\S+ status=skipped "
                                      r"reason=" + reason, count=n)

        # automatic and list mail first: none of it answered, none recorded
        for extra, reason in (("List-Id: <team.remote-a.test>\r\n", "mailing_list"),
                              ("List-Unsubscribe: <mailto:x@remote-a.test>\r\n",
                               "mailing_list"),
                              ("Auto-Submitted: auto-generated\r\n", "auto_submitted"),
                              ("Auto-Submitted: auto-replied\r\n", "auto_submitted"),
                              ("Precedence: bulk\r\n", "bulk")):
            data, _ = msg("auto " + reason, extra=extra)
            self.send(data)
        self.assertTrue(skipped("mailing_list", 2))
        self.assertTrue(skipped("auto_submitted", 2))
        self.assertTrue(skipped("bulk"))
        # Bcc'd / through a list: alice is not in To or Cc
        data, _ = msg("not addressed", to="team@remote-a.test")
        self.send(data)
        self.assertTrue(skipped("not_addressed"))
        # a machine sender and her own address
        data, _ = msg("daemon", sender="MAILER-DAEMON@remote-a.test")
        self.send(data, sender="MAILER-DAEMON@remote-a.test")
        self.assertTrue(skipped("machine_sender"))
        data, _ = msg("self", sender=ALICE)
        self.send(data, sender=ALICE)
        self.assertTrue(skipped("own_address"))
        # the null sender: stored, never answered (not even looked at)
        data, _ = msg("null sender")
        self.send(data, sender="")

        # now a real one: answered through the queue, at the receiver
        data, msgid = msg("real", extra="References: <older@remote-a.test>\r\n")
        self.send(data)
        got = wait_for(lambda: len(carol_mail()) > before and carol_mail()[before:],
                         what="the reply at the receiver")
        self.assertEqual(len(got), 1)
        reply = email.message_from_bytes(got[0])
        self.assertEqual(reply["Auto-Submitted"], "auto-replied")
        self.assertEqual(reply["In-Reply-To"], msgid)
        self.assertEqual(reply["References"], "<older@remote-a.test> " + msgid)
        self.assertEqual(reply["To"], "<%s>" % CAROL)
        self.assertEqual(reply["From"], "<%s>" % ALICE)
        self.assertEqual(reply["Return-Path"], "<>")
        self.assertEqual(str(email.header.make_header(email.header.decode_header(
            reply["Subject"]))), "Away – back Monday")
        self.assertEqual(reply.get_payload(decode=True), b"I am away.\n")
        self.assertIn("Received: from sender.test", got[0].decode("latin-1"))
        sent = [l for l in self.vacation_lines()[base:] if "status=sent" in l]
        self.assertEqual(len(sent), 1)
        self.assertIn("via=queue", sent[0])
        # no second reply within the period, though she writes again
        data, _ = msg("again")
        self.send(data)
        self.assertTrue(skipped("already_replied"))
        # outside the dates: nothing either (a new setting forgets whom
        # the old one answered, so this is the dates' doing)
        self.vset({"toDate": "2001-01-01T00:00:00Z"})
        data, _ = msg("late")
        self.send(data)
        self.assertTrue(skipped("outside_dates"))
        self.assertEqual(len(carol_mail()), before + 1)
        # a new text: carol may get it once more, now with HTML too
        self.vset({"toDate": None, "subject": None, "textBody": None,
                   "htmlBody": "<p>Gone &amp; away</p>"})
        data, _ = msg("after change")
        self.send(data)
        got = wait_for(lambda: len(carol_mail()) > before + 1 and carol_mail()[before + 1:],
                         what="the second reply")
        reply = email.message_from_bytes(got[0])
        self.assertEqual(reply["Subject"], "Auto: after change")
        self.assertEqual(reply.get_content_type(), "multipart/alternative")
        parts = [p.get_payload(decode=True) for p in reply.get_payload()]
        self.assertIn(b"Gone & away", parts[0])
        self.assertEqual(parts[1], b"<p>Gone &amp; away</p>")
        # nothing was left in the queue
        wait_for(lambda: "0 messages in the queue" in self.srv.cli("queue", "list").stdout,
                   what="an empty queue")
        self.vset({"isEnabled": False})

    def test_local_sender_and_hostile_mail(self):
        bob = Jmap(self.srv.port("http"), "bob@example.org", "bob-secret")
        self.addCleanup(bob.close)
        self.vset({"isEnabled": True, "subject": None, "textBody": None, "htmlBody": None,
                   "fromDate": None, "toDate": None})
        # a huge, badly encoded subject and an endless References
        refs = " ".join("<r%d@x>" % i for i in range(3000))
        data, msgid = msg("=?utf-8?q?" + "=FF=FE" * 2000 + "?= \xe9" * 3, sender="bob@example.org",
                          msgid="<hostile@example.org>", extra="References: %s\r\nCc: alice@example.org\r\n" % refs)
        self.send(data, sender="bob@example.org")
        # bob is local: the reply is stored for him without the queue
        got = wait_for(lambda: bob.query(), what="the reply in bob's INBOX")
        e = bob.call("Email/get", {"ids": got, "properties": ["subject", "inReplyTo",
                                                              "references", "headers"]})
        e = e["list"][0]
        self.assertEqual(e["inReplyTo"], [msgid[1:-1]])
        self.assertLessEqual(len(e["references"]), 200)
        self.assertEqual(e["references"][-1], msgid[1:-1])
        self.assertTrue(e["subject"].startswith("Auto: "))
        self.assertTrue(all(len(h["value"]) < 1000 for h in e["headers"]))
        self.assertTrue(wait_log(self.srv, r"event=vacation user=\S+ from=\S+ "
                                           r"to=\"?bob@example.org\"? status=sent via=local"))
        self.vset({"isEnabled": False})

    def test_set_unset_and_delivery(self):
        """A delivery to a user with the setting off is answered from the
        server's cache of such users (no storage read); a set must reach
        the next delivery at once, whether it turns the reply on or off."""
        bob = Jmap(self.srv.port("http"), "bob@example.org", "bob-secret")
        self.addCleanup(bob.close)
        self.vset({"isEnabled": False})
        start = len(bob.query())
        sent = len(re.findall(r"event=vacation user=\S+ from=\S+ to=\"?bob@example.org\"? "
                              r"status=sent via=local", self.srv.log()))

        def from_bob(subject):
            # the reply to a local sender is stored before the 250
            data, _ = msg(subject, sender="bob@example.org")
            self.send(data, sender="bob@example.org")

        def replies_sent(n):
            return wait_log(self.srv, r"event=vacation user=\S+ from=\S+ "
                                      r"to=\"?bob@example.org\"? status=sent via=local",
                            count=sent + n, timeout=60)

        # off: twice (the second from the cache), no reply
        from_bob("off one")
        from_bob("off two")
        self.assertEqual(len(bob.query()), start)
        # set: the next delivery replies though "off" was cached
        self.vset({"isEnabled": True, "subject": None, "textBody": "Away.", "htmlBody": None,
                   "fromDate": None, "toDate": None})
        from_bob("on")
        self.assertTrue(replies_sent(1))
        wait_for(lambda: len(bob.query()) == start + 1, what="the first reply", timeout=60)
        # unset: no reply
        self.vset({"isEnabled": False})
        from_bob("off again")
        from_bob("off again, cached")
        self.assertEqual(len(bob.query()), start + 1)
        # set again: answered again (the set forgot whom it had answered)
        self.vset({"isEnabled": True})
        from_bob("on again")
        self.assertTrue(replies_sent(2))
        wait_for(lambda: len(bob.query()) == start + 2, what="the second reply", timeout=60)
        self.vset({"isEnabled": False})


backend_classes(globals(), Vacation, "Vacation")

if __name__ == "__main__":
    unittest.main()
