#!/usr/bin/env python3
"""Outbound throughput: 4 KB messages submitted (AUTH, 10 sessions) to one
Roost, queued durably, relayed by MX to a second Roost on loopback that
stores them (fsync on everywhere). DNS is a local responder.

Prints one row: messages, sessions, submission msgs/s (until the last
250 of the submission sessions) and end-to-end msgs/s (until the receiver
has stored the last one). BENCH_PROFILE=full sends more.
"""
import os
import smtplib
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

from dnsstub import DnsStub  # noqa: E402
from roosttest import RoostServer  # noqa: E402

SESSIONS = 10
PER_SESSION = 500 if os.environ.get("BENCH_PROFILE") == "full" else 100
ALICE = ("alice@example.org", "alice-secret")


def body(i):
    text = ("From: %s\r\nTo: sink@bench.test\r\nSubject: bench %d\r\n"
            "Message-ID: <bench-%d@example.org>\r\n\r\n" % (ALICE[0], i, i))
    line = "x" * 76 + "\r\n"
    while len(text) < 4096:
        text += line
    return text[:4094].encode() + b"\r\n"


def delivered(srv):
    with open(srv.log_path, "rb") as f:
        return f.read().count(b"event=delivered ")


def run(name, port, rcv, login=None):
    """SESSIONS sessions at once to 127.0.0.1:port (after AUTH as login, a
    (user, password), when given), each sending PER_SESSION 4 KB messages
    to sink@bench.test; waits (at most 300 s) until receiving Roost rcv has
    stored them all and prints the row named name. 0 when every message
    arrived without an error, else 1."""
    errors = []
    total = SESSIONS * PER_SESSION

    def client(k):
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
                if login is not None:
                    s.login(*login)
                for i in range(PER_SESSION):
                    s.sendmail(ALICE[0], ["sink@bench.test"], body(k * PER_SESSION + i))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_sub = time.monotonic() - t0
    deadline = time.monotonic() + 300
    while delivered(rcv) < total and time.monotonic() < deadline and not errors:
        time.sleep(0.02)
    t_all = time.monotonic() - t0
    got = delivered(rcv)
    print("%-10s %8s %8s %14s %14s %6s" % (name, "messages", "sessions", "submit msgs/s",
                                         "relay msgs/s", "errors"))
    print("%-10s %8d %8d %14.0f %14.0f %6d" % ("4K", total, SESSIONS, total / t_sub,
                                               got / t_all, len(errors) + total - got))
    return 0 if not errors and got == total else 1


def main():
    dns = DnsStub({"bench.test": {"A": ["127.0.0.1"]}}).start()
    quiet = {"server": {"log_level": "info"}}
    rcv = RoostServer(users={"sink@bench.test": "x"}, listeners=("smtp",),
                      conf=dict(quiet, smtp={"domains": "bench.test"}))
    rcv.start()
    snd = None
    try:
        snd = RoostServer(users={ALICE[0]: ALICE[1]}, listeners=("submission",), conf=dict(
            quiet, dns={"servers": dns.server},
            # One user sends everything: no per-user rate limit.
            smtp={"user_messages_per_hour": "0", "user_recipients_per_hour": "0"},
            relay={"mx_port": str(rcv.port("smtp")), "max_per_domain": "4"}))
        snd.start()
        return run("size", snd.port("submission"), rcv, login=ALICE)
    finally:
        if snd is not None:
            snd.stop()
            snd.cleanup()
        rcv.stop()
        rcv.cleanup()
        dns.stop()


if __name__ == "__main__":
    sys.exit(main())
