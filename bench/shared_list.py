#!/usr/bin/env python3
"""What the Shared/ namespace costs a LIST, on each backend.

    python3 bench/shared_list.py [--mailboxes 0,10,100] [--rounds 50]
        [--backends lmdb,maildir]

For each backend a fresh `roost serve` gets an administrator of the shared
namespace ([acl] shared_admins) and a reader. For each count in
--mailboxes the administrator makes that many Shared/ mailboxes (the count
is cumulative) and grants the reader lr on each; then the reader runs
`LIST "" "*"` --rounds times on one connection and the median and p90 wall
time per LIST are printed, with the reader's own 6 mailboxes and no other
user sharing anything. The row for 0 is LIST as every user pays it once the
namespace exists: one list of the #public store.
"""
import argparse
import imaplib
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import roosttest  # noqa: E402

ADMIN, READER = "carol@example.org", "bob@example.org"
USERS = {ADMIN: "carol-secret", READER: "bob-secret"}


def login(srv, user):
    m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=60)
    m.login(user, USERS[user])
    return m


def run(backend, counts, rounds):
    srv = roosttest.RoostServer(backend=backend, users=USERS, listeners=("imap",),
                                conf={"acl": {"shared_admins": ADMIN}})
    srv.start()
    try:
        a, r = login(srv, ADMIN), login(srv, READER)
        made = 0
        for count in counts:
            while made < count:
                name = "Shared/team%04d" % made
                assert a.create(name)[0] == "OK"
                assert a.setacl(name, READER, "lr")[0] == "OK"
                made += 1
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                typ, dat = r.list('""', '"*"')
                times.append(time.perf_counter() - t0)
                assert typ == "OK"
            shown = sum(1 for x in dat if x and b'"Shared/' in x)
            times.sort()
            print("%-8s shared=%4d listed=%4d  LIST median %.2f ms  p90 %.2f ms" %
                  (backend, count, shown, statistics.median(times) * 1e3,
                   times[int(len(times) * 0.9) - 1] * 1e3), flush=True)
        a.logout()
        r.logout()
    finally:
        srv.stop()
        srv.cleanup()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mailboxes", default="0,10,100")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--backends", default="lmdb,maildir")
    args = p.parse_args()
    counts = sorted(int(x) for x in args.mailboxes.split(","))
    for b in args.backends.split(","):
        run(b, counts, args.rounds)


if __name__ == "__main__":
    main()
