#!/usr/bin/env python3
"""What an attacker measures at the login prompt, against a real server.

  python3 bench/auth_timing.py [rounds]

1. The throttle: one wrong password from 127.0.0.1, then, on new
   connections and without waiting for that answer, the right password and
   a wrong one, over IMAP LOGIN, POP3 PASS and SMTP AUTH PLAIN. Prints the
   time from the new attempt to its answer.
2. The cost of a failed login by the kind of stored password: an unknown
   user, a {PLAIN} user and a hashed ({SHA512-CRYPT}) user, with the
   failure delay off. Prints the median time of `rounds` wrong LOGINs.
"""
import base64
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tests", "integration"))
import roosttest  # noqa: E402

USERS = {"alice@example.org": "alice-secret"}
PLAIN_LINE = "carol@example.org:{PLAIN}carol-secret\n"


class Line:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.sock.makefile("rb")

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def line(self):
        return self.f.readline().decode(errors="replace").rstrip("\r\n")

    def close(self):
        self.sock.close()


def imap_attempt(port, user, pw):
    c = Line(port)
    c.line()
    c.send("a LOGIN %s %s" % (user, pw))
    return c, lambda: c.line()


def pop3_attempt(port, user, pw):
    c = Line(port)
    c.line()
    c.send("USER " + user)
    c.line()
    c.send("PASS " + pw)
    return c, lambda: c.line()


def smtp_reply(c):
    while True:
        line = c.line()
        if len(line) < 4 or line[3] != "-":
            return line


def smtp_attempt(port, user, pw):
    c = Line(port)
    smtp_reply(c)
    c.send("EHLO probe.test")
    smtp_reply(c)
    c.send("AUTH PLAIN " + base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode())
    return c, lambda: smtp_reply(c)


PROTOS = (("imap", "imap", imap_attempt), ("pop3", "pop3", pop3_attempt),
          ("smtp", "submission", smtp_attempt))


def wait_log(srv, text, count, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.log().count(text) >= count:
            return
        time.sleep(0.005)
    raise SystemExit("no %r in the log" % text)


def timed(attempt, port, user, pw):
    t0 = time.monotonic()
    c, answer = attempt(port, user, pw)
    reply = answer()
    dt = time.monotonic() - t0
    c.close()
    return dt, reply


def throttle(srv):
    print("after one failure (fail_delay_initial = 2 s): time to the answer")
    for name, listener, attempt in PROTOS:
        port = srv.port(listener)
        for label, pw in (("right", "alice-secret"), ("wrong", "guess")):
            n = srv.log().count("event=auth_failed")
            first, _ = attempt(port, "alice@example.org", "first-guess")
            wait_log(srv, "event=auth_failed", n + 1)
            dt, reply = timed(attempt, port, "alice@example.org", pw)
            print("  %-4s %-5s %7.1f ms  %s" % (name, label, dt * 1000, reply[:40]))
            first.close()
            # Let the throttle forget: a success resets it.
            timed(attempt, port, "alice@example.org", "alice-secret")


def cost(srv, rounds):
    print("failed LOGIN, failure delay 0: median of %d" % rounds)
    port = srv.port("imap")
    for label, user in (("unknown user", "nobody@example.org"),
                        ("{PLAIN} user", "carol@example.org"),
                        ("hashed user", "alice@example.org")):
        c = Line(port)
        c.line()
        times = []
        for i in range(rounds):
            t0 = time.monotonic()
            c.send("a%d LOGIN %s wrong-%d" % (i, user, i))
            c.line()
            times.append(time.monotonic() - t0)
        c.close()
        print("  %-13s %7.2f ms" % (label, statistics.median(times) * 1000))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    conf = {"auth": {"fail_delay_initial": "2", "fail_delay_max": "2"},
            "server": {"log_level": "info"}}
    with roosttest.RoostServer(users=USERS, conf=conf,
                               listeners=("imap", "pop3", "submission")) as srv:
        throttle(srv)
    conf = {"auth": {"fail_delay_initial": "0", "fail_delay_max": "0", "cache_ttl": "0"},
            "server": {"log_level": "info"}}
    srv = roosttest.RoostServer(users=USERS, conf=conf, listeners=("imap",))
    srv.dir = None
    with srv:
        with open(os.path.join(srv.data_dir, "passwd"), "a") as f:
            f.write(PLAIN_LINE)
        cost(srv, rounds)


if __name__ == "__main__":
    main()
