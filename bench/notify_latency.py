#!/usr/bin/env python3
"""NOTIFY push latency next to IDLE's, and what a NOTIFY session costs, on both backends.

    python3 bench/notify_latency.py [--clients 200] [--users 20] [--rounds 10]
        [--folders 20] [--backends lmdb,maildir]

For each backend a fresh `roost serve` gets --users users with --folders
folders each. Then, one mode after the other on the same server, --clients
sessions spread over the users log in and wait:
  idle     SELECT INBOX, IDLE; the event is `* n EXISTS`
  notify   SELECT INBOX, NOTIFY SET (selected ...) (personal ...), no command
           in progress; the event is `* n EXISTS`
  status   NOTIFY SET (personal ...), nothing selected; a message to
           user+Other; the event is `* STATUS Other (...)`
  shared   each user grants the next one lr on Other; NOTIFY SET (mailboxes
           "Other Users/<owner>/Other" ...), nothing selected; a message to
           owner+Other; the event is `* STATUS "Other Users/<owner>/Other"`
--rounds times one LMTP transaction delivers a message to every user, and
each session's latency runs from the moment the transaction's final "."
is sent to the moment the session reads its event line. One selector loop
reads every session, so the client side costs the same in every mode.
Each mode runs on a server of its own; its resident memory is read from
/proc before and after the mode's sessions are set up, and the difference
over --clients is that mode's memory per session (the folders make
NOTIFY's snapshot real; the allocator makes it a rough figure).
"""
import argparse
import os
import re
import selectors
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import roosttest  # noqa: E402

DOMAIN = "example.org"
MSG = b"From: b@example.org\r\nSubject: notify bench\r\n\r\nbody\r\n"
NOTIFY_SEL = (b"NOTIFY SET (selected (MessageNew MessageExpunge)) "
              b"(personal (MessageNew MessageExpunge))")
NOTIFY_ALL = b"NOTIFY SET (personal (MessageNew MessageExpunge))"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def lmtp(port, rcpts):
    """One LMTP transaction to every recipient; the time its "." was sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        f = sock.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if line[3:4] != b"-":
                    if not line[:1] in (b"2", b"3"):
                        raise RuntimeError("LMTP: %r" % line)
                    return

        reply()
        for text in [b"LHLO bench", b"MAIL FROM:<b@example.org>"] + \
                [b"RCPT TO:<%s>" % r.encode() for r in rcpts] + [b"DATA"]:
            sock.sendall(text + b"\r\n")
            reply()
        sock.sendall(MSG)
        t0 = time.monotonic()
        sock.sendall(b".\r\n")
        for _ in rcpts:
            reply()
        sock.sendall(b"QUIT\r\n")
        reply()
        return t0


class Session:
    def __init__(self, port, user, password, setup):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.sock.makefile("rb")
        self.f.readline()
        self.n = 0
        for cmd in [b"LOGIN %s %s" % (user.encode(), password.encode())] + setup:
            self.cmd(cmd)
        self.buf = b""
        self.sock.setblocking(False)

    def cmd(self, text):
        self.n += 1
        tag = b"s%d" % self.n
        self.sock.sendall(tag + b" " + text + b"\r\n")
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("closed during %r" % text)
            if line.startswith(b"+") and text == b"IDLE":
                return
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError("%r: %r" % (text, line))
                return


def run_mode(srv, a, users, mode):
    imap, lmtp_port = srv.port("imap"), srv.port("lmtp")
    if mode == "idle":
        setup, want, rcpt = [b"SELECT INBOX", b"IDLE"], rb"^\* \d+ EXISTS", "%s"
    elif mode == "notify":
        setup, want, rcpt = [b"SELECT INBOX", NOTIFY_SEL], rb"^\* \d+ EXISTS", "%s"
    elif mode == "status":
        setup, want, rcpt = [NOTIFY_ALL], rb"^\* STATUS \"?Other\"? ", "%s"
    else:
        setup, want, rcpt = None, rb"^\* STATUS \"Other Users/[^\"]+/Other\" ", "%s"
    names = sorted(users)

    def setup_of(user):
        if setup is not None:
            return setup
        owner = names[(names.index(user) - 1) % len(names)]  # who granted user
        return [b'NOTIFY SET (mailboxes "Other Users/%s/Other" (MessageNew MessageExpunge))'
                % owner.encode()]

    rss0 = rss_kib(srv.proc.pid)
    sessions = [Session(imap, names[i % len(names)], users[names[i % len(names)]],
                        setup_of(names[i % len(names)])) for i in range(a.clients)]
    rss1 = rss_kib(srv.proc.pid)
    pat = re.compile(want)
    sel = selectors.DefaultSelector()
    for s in sessions:
        sel.register(s.sock, selectors.EVENT_READ, s)
    lat = []
    for _ in range(a.rounds):
        got = {}
        box = {}
        rc = [(rcpt % u) if mode in ("idle", "notify") else u.replace("@", "+Other@")
              for u in names]
        th = threading.Thread(target=lambda: box.setdefault("t0", lmtp(lmtp_port, rc)))
        th.start()
        deadline = time.monotonic() + 30
        while len(got) < len(sessions) and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                s = key.data
                data = s.sock.recv(65536)
                if not data:
                    raise RuntimeError("%s: a session was closed" % mode)
                s.buf += data
                now = time.monotonic()
                while b"\r\n" in s.buf:
                    line, s.buf = s.buf.split(b"\r\n", 1)
                    if id(s) not in got and pat.match(line + b"\r\n"):
                        got[id(s)] = now
        th.join()
        if len(got) < len(sessions):
            raise RuntimeError("%s: %d of %d sessions saw no event" %
                               (mode, len(sessions) - len(got), len(sessions)))
        lat += [(t - box["t0"]) * 1000 for t in got.values()]
    for s in sessions:
        s.sock.setblocking(True)
        s.sock.sendall(b"z LOGOUT\r\n")
        s.sock.close()
    lat.sort()
    return {"p50": statistics.median(lat), "p99": lat[int(len(lat) * 0.99) - 1],
            "max": lat[-1], "kib": (rss1 - rss0) / a.clients}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--folders", type=int, default=20)
    ap.add_argument("--backends", default="lmdb,maildir")
    a = ap.parse_args()
    users = {"user%d@%s" % (i, DOMAIN): "pass%d" % i for i in range(a.users)}
    # Room for the sessions of a mode while those of the one before close.
    conf = {"limits": {"max_connections": str(a.clients * 4 + 100),
                       "max_connections_per_ip": str(a.clients * 4 + 100)},
            "imap": {"max_connections_per_user_ip": str(a.clients)}}
    rows = []
    for backend in a.backends.split(","):
        for mode in ("idle", "notify", "status", "shared"):
            # A server of its own per mode, so its memory is measured from
            # the same start.
            srv = roosttest.RoostServer(backend=backend, users=users,
                                        listeners=("imap", "lmtp"), conf=conf)
            srv.start()
            try:
                names = sorted(users)
                for i, u in enumerate(names):
                    grant = [b"SETACL Other %s lr" % names[(i + 1) % len(names)].encode()] \
                        if mode == "shared" else []
                    s = Session(srv.port("imap"), u, users[u], [b"CREATE Other"] +
                                [b"CREATE f%d" % k for k in range(1, a.folders)] + grant)
                    s.sock.close()
                r = run_mode(srv, a, users, mode)
                rows.append((backend, mode, r))
                print("  %-8s %-7s p50 %6.1f ms  p99 %6.1f ms  %5.1f KiB/session"
                      % (backend, mode, r["p50"], r["p99"], r["kib"]), file=sys.stderr)
            finally:
                srv.stop()
                srv.cleanup()
    print("%d sessions over %d users (%d folders each), %d rounds of one LMTP delivery "
          "to every user" % (a.clients, a.users, a.folders, a.rounds))
    print("| backend | mode | event | p50 ms | p99 ms | max ms | server RSS per session |")
    print("|---|---|---|---|---|---|---|")
    ev = {"idle": "EXISTS in IDLE", "notify": "EXISTS, no command",
          "status": "STATUS, other folder", "shared": "STATUS, another user's folder"}
    for backend, mode, r in rows:
        print("| %s | %s | %s | %.1f | %.1f | %.1f | %.1f KiB |"
              % (backend, mode, ev[mode], r["p50"], r["p99"], r["max"], r["kib"]))


if __name__ == "__main__":
    main()
