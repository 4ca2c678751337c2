#!/usr/bin/env python3
"""SORT and THREAD over one large mailbox (RFC 5256).

Fills a mailbox with N generated messages (threads of replies with
References, Re:/Fwd: subjects, varied senders and dates) through
MULTIAPPEND with LITERAL+, fsync off, then times each command from the
client's side, the whole reply read: the first SORT (which reads every
header into the session's sort key cache) and then repeated runs over the
cache. Prints wall time (median, min) and the server's CPU time per run
(which the machine's other load does not inflate much); asserts nothing
about time.

    python3 bench/sort_bench.py [--messages 100000] [--backend lmdb] [--runs 5]
"""
import argparse
import os
import random
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import roosttest  # noqa: E402

USER = ("bench@example.org", "bench-secret")
WORDS = ("meeting budget release build roadmap lunch offsite invoice patch review "
         "quarterly hiring travel security backup network \u00e9t\u00e9 caf\u00e9 "
         "\u00dcbersicht stra\u00dfe").split()


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")
        self.n = 0
        self.f.readline()

    def cmd(self, text, literals=()):
        """Send a command (literals as LITERAL+), return (tagged line, bytes of
        untagged reply)."""
        self.n += 1
        tag = b"b%d" % self.n
        out = [tag + b" " + text]
        for lit in literals:
            out[-1] += b" {%d+}\r\n" % len(lit)
            out.append(lit)
        self.s.sendall(b"".join(out) + b"\r\n")
        size = 0
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("connection closed")
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line.decode(errors="replace"))
                return line, size
            size += len(line)


def gen(n, rnd):
    t0 = 1577836800
    people = ["%s%d" % (w, i) for i, w in enumerate(WORDS * 10)]
    threads = []
    for i in range(n):
        if threads and rnd.random() < 0.6:
            th = rnd.choice(threads)
            refs = th["ids"][-20:]
            subj = ("Re: " if rnd.random() < 0.8 else "Fwd: ") + th["subject"]
        else:
            th = {"subject": " ".join(rnd.choice(WORDS) for _ in range(3)), "ids": []}
            threads.append(th)
            if len(threads) > 2000:
                threads.pop(0)
            refs = []
            subj = th["subject"]
        mid = "<m%d@bench>" % i
        th["ids"].append(mid)
        who = rnd.choice(people)
        date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t0 + rnd.randrange(10**8)))
        h = ("From: %s <%s@example.net>\r\nTo: bench@example.org\r\nSubject: %s\r\n"
             "Date: %s\r\nMessage-ID: %s\r\n" % (who.title(), who, subj, date, mid))
        if refs:
            h += "References: %s\r\nIn-Reply-To: %s\r\n" % (" ".join(refs), refs[-1])
        yield (h + "\r\nbody of message %d\r\n" % i).encode()


def server_cpu_ms(pid):
    """User + system CPU of the whole server process, in ms (all threads):
    on a loaded machine, wall time measures the neighbours too."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def timed(c, text, runs, pid):
    ts = []
    size = 0
    c0 = server_cpu_ms(pid)
    for _ in range(runs):
        t = time.perf_counter()
        _, size = c.cmd(text)
        ts.append((time.perf_counter() - t) * 1000)
    return ts, size, (server_cpu_ms(pid) - c0) / runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--backend", default="lmdb")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()

    srv = roosttest.RoostServer(backend=a.backend, users={USER[0]: USER[1]},
                                listeners=("imap",),
                                conf={"storage": {"fsync": "no"},
                                      "imap": {"search_budget": "64G"}})
    srv.start()
    try:
        c = Conn(srv.port("imap"))
        c.cmd(b"LOGIN %s %s" % (USER[0].encode(), USER[1].encode()))
        c.cmd(b"CREATE Big")
        rnd = random.Random(1)
        t = time.perf_counter()
        batch = []
        for m in gen(a.messages, rnd):
            batch.append(m)
            if len(batch) == 200:
                c.cmd(b"APPEND Big", batch)
                batch = []
        if batch:
            c.cmd(b"APPEND Big", batch)
        fill = time.perf_counter() - t
        c.cmd(b"SELECT Big")
        print("backend=%s messages=%d fill_s=%.1f" % (a.backend, a.messages, fill))
        pid = srv.proc.pid
        first, size, cpu = timed(c, b"SORT (SUBJECT) UTF-8 ALL", 1, pid)
        print("%-34s wall %7.1f ms  server cpu %7.1f ms (fills the key cache; reply %d bytes)"
              % ("first SORT (SUBJECT)", first[0], cpu, size))
        print("then %d runs of each (the first may build a collation rank):" % a.runs)
        for cmd in (b"SORT (SUBJECT) UTF-8 ALL", b"SORT (REVERSE DATE) UTF-8 ALL",
                    b"SORT (FROM SUBJECT) UTF-8 ALL", b"SORT (DISPLAYFROM) UTF-8 ALL",
                    b"SORT (ARRIVAL) UTF-8 ALL", b"UID SORT (SUBJECT) UTF-8 ALL",
                    b"THREAD REFERENCES UTF-8 ALL", b"THREAD ORDEREDSUBJECT UTF-8 ALL",
                    b"SEARCH ALL"):
            ts, size, cpu = timed(c, cmd, a.runs, pid)
            print("%-34s wall median %7.1f ms  min %7.1f ms  server cpu %6.1f ms/run  (reply %d B)"
                  % (cmd.decode(), statistics.median(ts), min(ts), cpu, size))
        c.cmd(b"LOGOUT")
    finally:
        srv.stop()
        srv.cleanup()


if __name__ == "__main__":
    main()
