#!/usr/bin/env python3
"""JMAP throughput and push latency next to IMAP, on both backends.

    python3 bench/jmap_bench.py [--messages 2000] [--seconds 10] [--clients 4]
        [--rounds 50] [--backends lmdb,maildir]

For each backend a fresh `roost serve` gets --messages 2 KB messages in one
user's INBOX (over LMTP). Then:
  query+get   --clients keep-alive HTTP connections each loop for --seconds
              on one JMAP request: Email/query (newest 50 of INBOX) with
              Email/get of those ids by back-reference (from, subject,
              receivedAt, preview, keywords): requests/s and ms per request
  threads     the same with a conversation view: Email/query with
              collapseThreads (newest 50), Email/get of their threadId and
              Thread/get of those by back-reference (which reads the header of
              every message of the account: nothing is stored for threads)
  imap fetch  the same work over IMAP for comparison: UID SEARCH ALL, then
              UID FETCH of the 50 newest (ENVELOPE FLAGS INTERNALDATE
              BODY.PEEK[TEXT]<0.256>), same clients and time
  push        one EventSource stream and one IMAP session in IDLE on the same
              INBOX; --rounds times one LMTP delivery, timing from the start of
              the LMTP transaction to the StateChange event and to the
              `* n EXISTS` line (both include the delivery itself):
              median and 95th percentile in ms
Figures are medians over the run; this machine's load counts, so compare
the rows of one sitting.
"""
import argparse
import base64
import http.client
import imaplib
import json
import os
import smtplib
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import roosttest  # noqa: E402

USER, PASS = "bench@example.org", "bench-secret"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


def message(i):
    body = ("Line %d of a benchmark message with some text in it.\r\n" % i) * 36
    # every fourth message replies to the one before it: threads of 1 to 4
    refs = "References: <b%d@example.net>\r\n" % (i - i % 4) if i % 4 else ""
    return ("From: Sender %d <s%d@example.net>\r\nTo: %s\r\nSubject: benchmark %d\r\n"
            "Message-ID: <b%d@example.net>\r\n%s\r\n%s"
            % (i, i, USER, i, i, refs, body)).encode()


def fill(srv, n):
    with smtplib.LMTP("127.0.0.1", srv.port("lmtp"), timeout=60) as l:
        for i in range(n):
            l.sendmail("s@example.net", [USER], message(i))


QUERY_GET = [
    ["Email/query", {"filter": {"inMailbox": None},
                     "sort": [{"property": "receivedAt", "isAscending": False}],
                     "limit": 50}, "q"],
    ["Email/get", {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                   "properties": ["from", "subject", "receivedAt", "preview", "keywords"]},
     "g"]]

THREADS = [
    ["Email/query", {"filter": {"inMailbox": None}, "collapseThreads": True,
                     "sort": [{"property": "receivedAt", "isAscending": False}],
                     "limit": 50}, "q"],
    ["Email/get", {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                   "properties": ["threadId"]}, "g"],
    ["Thread/get", {"#ids": {"resultOf": "g", "name": "Email/get",
                             "path": "/list/*/threadId"}}, "t"]]


def jmap_worker(port, auth, acc, calls, stop, lat):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for call in calls:
        call[1]["accountId"] = acc
    req = json.dumps({"using": USING, "methodCalls": calls})
    inbox = None
    while not stop.is_set():
        if inbox is None:
            c.request("POST", "/jmap/api/", json.dumps({"using": USING, "methodCalls": [
                ["Mailbox/query", {"accountId": acc, "filter": {"role": "inbox"}}, "m"]]}),
                {"Authorization": auth, "Content-Type": "application/json"})
            inbox = json.loads(c.getresponse().read())["methodResponses"][0][1]["ids"][0]
            req = req.replace('"inMailbox": null', '"inMailbox": "%s"' % inbox)
        t = time.perf_counter()
        c.request("POST", "/jmap/api/", req, {"Authorization": auth,
                                              "Content-Type": "application/json"})
        out = c.getresponse().read()
        lat.append(time.perf_counter() - t)
        assert b'"error"' not in out and b'"Email/get"' in out
    c.close()


def imap_worker(port, stop, lat):
    m = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    m.login(USER, PASS)
    m.select("INBOX", readonly=True)
    while not stop.is_set():
        t = time.perf_counter()
        typ, data = m.uid("SEARCH", None, "ALL")
        uids = data[0].split()[-50:]
        m.uid("FETCH", b",".join(uids).decode(),
              "(ENVELOPE FLAGS INTERNALDATE BODY.PEEK[TEXT]<0.256>)")
        lat.append(time.perf_counter() - t)
    m.logout()


def throughput(target, args, clients, seconds):
    stop = threading.Event()
    lats = [[] for _ in range(clients)]
    ts = [threading.Thread(target=target, args=args + (stop, lats[i])) for i in range(clients)]
    for t in ts:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    all_ = [x for l in lats for x in l]
    return len(all_) / seconds, statistics.median(all_) * 1000


def push_latency(srv, auth, rounds):
    es = socket.create_connection(("127.0.0.1", srv.port("http")), timeout=30)
    es.sendall(("GET /jmap/eventsource?types=Email&closeafter=no&ping=0 HTTP/1.1\r\n"
                "Host: b\r\nAuthorization: %s\r\n\r\n" % auth).encode())
    buf = b""

    def next_state():
        nonlocal buf
        while True:
            while b"\n\n" not in buf:
                buf += es.recv(65536)
            block, buf = buf.split(b"\n\n", 1)
            if b"event: state" in block:
                return

    next_state()  # the initial state
    m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=30)
    m.login(USER, PASS)
    m.select("INBOX")
    m.send(b"i IDLE\r\n")
    m.readline()
    l = smtplib.LMTP("127.0.0.1", srv.port("lmtp"), timeout=30)
    jm, im = [], []
    for i in range(rounds):
        done = {}

        def wait_imap():
            while b"EXISTS" not in m.readline():
                pass
            done["imap"] = time.perf_counter()

        th = threading.Thread(target=wait_imap)
        th.start()
        t0 = time.perf_counter()
        l.sendmail("s@example.net", [USER], message(100000 + i))
        t1 = time.perf_counter()
        next_state()
        t2 = time.perf_counter()
        th.join()
        # From the start of the LMTP transaction: storage wakes watchers at
        # commit, before the LMTP reply is read, so the end of DATA would
        # come after some of the notifications.
        jm.append((t2 - t0) * 1000)
        im.append((done["imap"] - t0) * 1000)
        del t1
    l.quit()
    es.close()

    def p95(v):
        return sorted(v)[int(len(v) * 0.95) - 1]
    return statistics.median(jm), p95(jm), statistics.median(im), p95(im)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--backends", default="lmdb,maildir")
    a = ap.parse_args()
    auth = "Basic " + base64.b64encode(("%s:%s" % (USER, PASS)).encode()).decode()
    print("backend   jmap q+get/s  ms/req   threads/s  ms/req   imap search+fetch/s  ms/req   "
          "push ms (p50/p95)   idle ms (p50/p95)")
    for backend in a.backends.split(","):
        srv = roosttest.RoostServer(backend=backend, users={USER: PASS},
                                    listeners=("http", "imap", "lmtp"),
                                    conf={"server": {"log_level": "warn"},
                                          "storage": {"fsync": "no"}})
        srv.start()
        try:
            fill(srv, a.messages)
            c = http.client.HTTPConnection("127.0.0.1", srv.port("http"), timeout=30)
            c.request("GET", "/jmap/session", headers={"Authorization": auth})
            acc = json.loads(c.getresponse().read())["primaryAccounts"][
                "urn:ietf:params:jmap:mail"]
            c.close()
            jr, jl = throughput(jmap_worker, (srv.port("http"), auth, acc, QUERY_GET),
                                a.clients, a.seconds)
            tr, tl = throughput(jmap_worker, (srv.port("http"), auth, acc, THREADS),
                                a.clients, a.seconds)
            ir, il = throughput(imap_worker, (srv.port("imap"),), a.clients, a.seconds)
            p = push_latency(srv, auth, a.rounds)
            print("%-9s %12.1f %7.1f   %9.1f %7.1f   %19.1f %7.1f   %8.1f / %-8.1f "
                  "%8.1f / %-8.1f" % (backend, jr, jl, tr, tl, ir, il, p[0], p[1], p[2], p[3]))
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
