"""\\Recent reaches exactly one session (RFC 3501 2.3.2), under load, on both
backends: clients on one mailbox append, select again and fetch at once,
and every session records the UIDs it was shown as \\Recent (UID SEARCH
RECENT, and FLAGS in FETCH). At the end each appended UID must have been
recent in exactly one session.

ROOST_RECENT_APPENDS sets the number of appends (default 1500, quick
enough for make asan); `make stress` runs a longer round (20,000).
"""
import os
import random
import re
import threading
import time
import unittest

from roosttest import BACKENDS, RoostServer, backend_classes
from test_imap_raw import Raw

CLIENTS = 10
APPENDS = int(os.environ.get("ROOST_RECENT_APPENDS", "1500"))
BOX = b"Stress"


class Session:
    """One client: a connection whose successive SELECTs are sessions in
    the sense of \\Recent, each with the set of UIDs it was shown recent."""

    def __init__(self, port, name):
        self.r = Raw(port, timeout=120)
        self.r.login()
        self.name = name
        self.seen = []      # one set per SELECT
        self.select()

    def select(self):
        lines, tagged = self.r.cmd(b"SELECT " + BOX)
        assert b" OK " in tagged, tagged
        self.seen.append(set())
        self.note(lines)

    def note(self, lines):
        """Record UIDs shown \\Recent in FETCH FLAGS among lines."""
        for l in lines:
            if b" FETCH " not in l:
                continue
            m = re.search(rb"UID (\d+)", l)
            f = re.search(rb"FLAGS \(([^)]*)\)", l)
            if m and f and b"\\Recent" in f.group(1).split():
                self.seen[-1].add(int(m.group(1)))

    def search_recent(self):
        """UID SEARCH RECENT; True if new messages came in meanwhile (a
        claim may have been made whose UIDs the next search shows)."""
        lines, tagged = self.r.cmd(b"UID SEARCH RECENT")
        assert b" OK " in tagged, tagged
        for l in lines:
            if l.startswith(b"* SEARCH"):
                self.seen[-1].update(int(x) for x in l.split()[2:])
        return any(l.endswith(b" EXISTS\r\n") for l in lines)

    def drain(self):
        """Search until no new message arrived during the search, so every
        UID this session claimed has been shown."""
        for _ in range(1000):
            if not self.search_recent():
                return
        raise AssertionError("%s: messages kept arriving" % self.name)

    def append(self, i):
        msg = (b"From: s%d@example.org\r\nSubject: recent %d\r\n\r\nbody %d\r\n"
               % (i, i, i))
        lines, tagged = self.r.cmd(b"APPEND %s {%d+}\r\n%s" % (BOX, len(msg), msg))
        assert b" OK " in tagged, tagged
        m = re.search(rb"APPENDUID \d+ (\d+)", tagged)
        return int(m.group(1))

    def fetch_recent_flags(self):
        lines, tagged = self.r.cmd(b"FETCH 1:* (UID FLAGS)" if random.random() < 0.1
                                   else b"UID FETCH *:* (FLAGS)")
        assert b" OK " in tagged, tagged
        self.note(lines)


class RecentBase:
    backend = "lmdb"

    def test_recent_goes_to_exactly_one_session(self):
        conf = {"storage": {"fsync": "no"}, "imap": {"max_connections_per_user_ip": "50"}}
        with RoostServer(backend=self.backend, listeners=("imap",), conf=conf) as srv:
            port = srv.port("imap")
            setup = Raw(port).login()
            _, t = setup.cmd(b"CREATE " + BOX)
            self.assertIn(b" OK ", t)
            setup.close()

            lock = threading.Lock()
            state = {"next": 0, "uids": [], "errors": []}
            sessions = []

            def worker(k):
                rnd = random.Random(k)
                try:
                    s = Session(port, "client%d" % k)
                    with lock:
                        sessions.append(s)
                    while True:
                        x = rnd.random()
                        if k % 2 == 0 or x < 0.3:
                            with lock:
                                if state["next"] >= APPENDS:
                                    break
                                i = state["next"]
                                state["next"] += 1
                            uid = s.append(i)
                            with lock:
                                state["uids"].append(uid)
                        else:
                            with lock:
                                if state["next"] >= APPENDS:
                                    break
                        x = rnd.random()
                        if x < (0.08 if k % 2 == 0 else 0.4):
                            s.drain()
                            s.select()
                        elif x < 0.3:
                            s.fetch_recent_flags()
                        elif x < 0.45:
                            s.search_recent()
                    s.drain()
                except Exception as e:          # reported by the main thread
                    with lock:
                        state["errors"].append("client%d: %r" % (k, e))

            t0 = time.monotonic()
            threads = [threading.Thread(target=worker, args=(k,)) for k in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(600)
            self.assertFalse(any(t.is_alive() for t in threads), "clients did not finish")
            self.assertEqual(state["errors"], [])
            # Every client is quiet now: each drains once more (a message
            # appended by another after its last search), then a fresh
            # session takes whatever nobody claimed.
            for s in sessions:
                s.drain()
            last = Session(port, "last")
            last.drain()
            sessions.append(last)
            elapsed = time.monotonic() - t0

            uids = sorted(state["uids"])
            self.assertEqual(len(uids), APPENDS)
            self.assertEqual(len(set(uids)), APPENDS)
            count = {u: [] for u in uids}
            for s in sessions:
                for n, seen in enumerate(s.seen):
                    for u in seen:
                        self.assertIn(u, count)
                        count[u].append("%s#%d" % (s.name, n))
            twice = {u: who for u, who in count.items() if len(who) > 1}
            never = [u for u, who in count.items() if not who]
            for s in sessions:
                s.r.cmd(b"LOGOUT")
                s.r.close()
            print("\n  %s: %d appends by %d clients, %d sessions, %.1f s"
                  % (self.backend, APPENDS, CLIENTS,
                     sum(len(s.seen) for s in sessions), elapsed))
            self.assertEqual(twice, {}, "UIDs recent in more than one session")
            self.assertEqual(never, [], "UIDs recent in no session")


backend_classes(globals(), RecentBase, "TestImapRecent_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
