#!/usr/bin/env python3
"""roost import / export round trip: figures, not assertions of speed.

Writes an mbox of N generated messages (a mix of sizes, a few above the
128 KiB at which LMDB keeps bodies in files), then on each backend runs:
import it for alice, export alice as a Maildir, import that for bob (UIDs
kept), export alice as mbox, import that again for alice (everything
already there: the cost of a resumed run), backup the data directory, and
checks that bob's messages equal alice's byte for byte (via `roost mailbox
fetch` on a sample, sizes and count on all). Prints messages, MB and
seconds per step.

    python3 bench/import_roundtrip.py [--messages 5000] [--backends lmdb,maildir]
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import roosttest  # noqa: E402


def make_mbox(path, n, seed=7):
    rnd = random.Random(seed)
    total = 0
    with open(path, "wb") as f:
        for i in range(n):
            t = time.gmtime(1_400_000_000 + i * 600)
            f.write(b"From s%d@example.net %s\n"
                    % (i, time.strftime("%a %b %e %H:%M:%S %Y", t).encode()))
            size = rnd.choice([800, 2000, 6000, 20000]) if i % 200 else 300_000
            lines = [b"From: s%d@example.net\n" % i, b"Subject: bench %d\n" % i,
                     b"Message-ID: <b%d@example.net>\n" % i]
            if i % 3 == 0:
                lines.append(b"Status: RO\n")
            lines.append(b"\n")
            body = []
            while sum(len(x) for x in body) < size:
                w = rnd.choice([b"From the top\n", b">From quoted\n", b"lorem ipsum dolor\n",
                                b"x" * 70 + b"\n"])
                body.append(b">" + w if w.startswith((b"From ", b">From ")) else w)
            data = b"".join(lines + body)
            total += len(data)
            f.write(data + b"\n")
    return total


def run(srv, *args):
    t0 = time.monotonic()
    res = srv.cli(*args, timeout=3600)
    return time.monotonic() - t0, res.stdout.strip().splitlines()[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--backends", default="lmdb,maildir")
    opts = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="roost-bench-import-")
    try:
        mbox = os.path.join(tmp, "in.mbox")
        size = make_mbox(mbox, opts.messages)
        print("source: %d messages, %.1f MB mbox" % (opts.messages, size / 1e6))
        for backend in opts.backends.split(","):
            srv = roosttest.RoostServer(backend=backend, listeners=("imap",))
            srv.start_or_skip()
            try:
                a, b = "alice@example.org", "bob@example.org"
                steps = [
                    ("import mbox -> alice", ("import", a, mbox)),
                    ("export alice -> maildir", ("export", a, os.path.join(tmp, backend + "-md"))),
                    ("import maildir -> bob", ("import", b, os.path.join(tmp, backend + "-md"))),
                    ("export alice -> mbox", ("export", a, os.path.join(tmp, backend + "-mbox"),
                                              "--format", "mbox")),
                    ("import mbox again (all there)", ("import", a, mbox)),
                    ("backup", ("backup", os.path.join(tmp, backend + "-backup"))),
                ]
                for name, args in steps:
                    secs, line = run(srv, *args)
                    print("%-8s %-30s %7.2f s  %s" % (backend, name, secs, line))
                la = srv.cli("mailbox", "uids", a, "INBOX").stdout
                lb = srv.cli("mailbox", "uids", b, "INBOX").stdout
                same = la == lb
                for uid in (1, opts.messages // 2, opts.messages):
                    fa = srv.cli("mailbox", "fetch", a, "INBOX", str(uid)).stdout
                    fb = srv.cli("mailbox", "fetch", b, "INBOX", str(uid)).stdout
                    same = same and fa == fb
                print("%-8s alice and bob hold the same UIDs, sizes, flags and bytes: %s"
                      % (backend, "yes" if same else "NO"))
            finally:
                srv.stop()
                srv.cleanup()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
