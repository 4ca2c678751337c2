#!/usr/bin/env python3
"""What a shared account costs a JMAP request, on each backend.

    python3 bench/jmap_shared.py [--messages 500] [--owners 1,10] [--rounds 50]
        [--backends lmdb,maildir]

For each backend a fresh `roost serve` gets a reader (bob) with --messages
messages in his INBOX and an owner (alice) with as many in her mailbox
Team, shared with bob (lrs). Then, on one keep-alive connection, --rounds
times each:
  echo        Core/echo: what every API request pays to tell the Session
              state (the list of accounts shared with the user), for bob
              and for dave, with whom nobody shares anything
  own q+g     Email/query (newest 50 of INBOX) + Email/get of those ids by
              back-reference (subject, from, receivedAt, keywords) in
              bob's own account
  shared q+g  the same in alice's account (Team), as bob
  session     GET /jmap/session for bob (reads his rights on each mailbox)
For each count in --owners (cumulative) that many further owners share a
mailbox (one message) with bob first. Median and p90 wall time per request
in ms are printed; this machine's load counts, so compare rows of one
sitting.
"""
import argparse
import base64
import http.client
import imaplib
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import roosttest  # noqa: E402

ALICE, BOB, DAVE = "alice@example.org", "bob@example.org", "dave@example.org"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


def message(i):
    body = ("Line %d of a benchmark message with some text in it.\r\n" % i) * 36
    return ("From: Sender %d <s%d@example.net>\r\nTo: b@example.org\r\nSubject: bench %d\r\n"
            "Message-ID: <s%d@example.net>\r\n\r\n%s" % (i, i, i, i, body)).encode()


class Client:
    def __init__(self, port, user, password):
        self.auth = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.acc = self.session()["primaryAccounts"]["urn:ietf:params:jmap:mail"]

    def session(self):
        self.conn.request("GET", "/jmap/session", headers={"Authorization": self.auth})
        r = self.conn.getresponse()
        body = r.read()
        assert r.status == 200, r.status
        return json.loads(body)

    def api(self, calls):
        self.conn.request("POST", "/jmap/api/", json.dumps({"using": USING, "methodCalls": calls}),
                          {"Authorization": self.auth, "Content-Type": "application/json"})
        r = self.conn.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body)
        return json.loads(body)["methodResponses"]


def imap_fill(srv, user, password, box, n):
    m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=60)
    m.login(user, password)
    if box != "INBOX":
        m.create(box)
    for i in range(n):
        m.append(box, None, None, message(i))
    return m


def timed(rounds, fn):
    t = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1000)
    t.sort()
    return statistics.median(t), t[int(len(t) * 0.9)]


def query_get(c, acc, box):
    r = c.api([["Email/query", {"accountId": acc, "filter": {"inMailbox": box},
                                "sort": [{"property": "receivedAt", "isAscending": False}],
                                "limit": 50}, "q"],
               ["Email/get", {"accountId": acc, "#ids": {"resultOf": "q", "name": "Email/query",
                                                         "path": "/ids"},
                              "properties": ["subject", "from", "receivedAt", "keywords"]}, "g"]])
    assert r[1][0] == "Email/get" and len(r[1][1]["list"]) == 50, r[1][0]


def run(backend, args):
    users = {ALICE: "a-secret", BOB: "b-secret", DAVE: "d-secret"}
    owners = [int(x) for x in args.owners.split(",") if x]
    for i in range(max(owners + [0])):
        users["owner%d@example.org" % i] = "o-secret"
    srv = roosttest.RoostServer(backend=backend, users=users, listeners=("http", "imap"))
    srv.start()
    try:
        imap_fill(srv, BOB, users[BOB], "INBOX", args.messages).logout()
        a = imap_fill(srv, ALICE, users[ALICE], "Team", args.messages)
        a.setacl("Team", BOB, "lrs")
        a.logout()
        bob = Client(srv.port("http"), BOB, users[BOB])
        dave = Client(srv.port("http"), DAVE, users[DAVE])
        acc = [k for k, v in bob.session()["accounts"].items() if v["name"] == ALICE][0]

        def box(c, account, name):
            r = c.api([["Mailbox/get", {"accountId": account}, "0"]])
            return [m["id"] for m in r[0][1]["list"] if m["name"] == name][0]

        own_box, team = box(bob, bob.acc, "Inbox"), box(bob, acc, "Team")
        made = 0
        for n in [0] + owners:
            while made < n:
                o = imap_fill(srv, "owner%d@example.org" % made, "o-secret", "Box", 1)
                o.setacl("Box", BOB, "lr")
                o.logout()
                made += 1
            rows = [
                ("echo (bob)", timed(args.rounds, lambda: bob.api([["Core/echo", {}, "0"]]))),
                ("echo (dave, no shares)",
                 timed(args.rounds, lambda: dave.api([["Core/echo", {}, "0"]]))),
                ("own q+g", timed(args.rounds, lambda: query_get(bob, bob.acc, own_box))),
                ("shared q+g", timed(args.rounds, lambda: query_get(bob, acc, team))),
                ("session", timed(args.rounds, bob.session)),
            ]
            for name, (med, p90) in rows:
                print("%-8s owners=%-3d %-24s median %7.2f ms  p90 %7.2f ms"
                      % (backend, n + 1, name, med, p90), flush=True)
    finally:
        srv.stop()
        srv.cleanup()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=500)
    p.add_argument("--owners", default="10")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--backends", default="lmdb,maildir")
    args = p.parse_args()
    os.environ.setdefault("ROOST_BIN", os.path.join(ROOT, "build", "roost"))
    for b in args.backends.split(","):
        run(b, args)


if __name__ == "__main__":
    main()
