#!/usr/bin/env python3
"""CPU of an idle server whose outbound queue holds many deferred entries.

Fills <data_dir>/queue of a stopped Roost with N entries (4 KB messages,
one recipient each, next attempt an hour away, in the documented envelope
format), starts it, waits until the delivery engine has loaded them, and
reads the process's CPU time (/proc/PID/stat) and its threads' context
switches (wake-ups) over a window in which nothing is due.

    bench/queue_idle_bench.py [--entries 50000] [--seconds 20] [--held 0]
                              [--roost BIN] [--base BIN]

--base runs the same measurement with a second binary (e.g. a build of an
older commit) and prints both rows. --held makes that many of the entries
held (`roost queue hold`) instead of deferred.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

from roosttest import ROOST_BIN, RoostServer, wait_log, wait_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def fill(qdir, n, held):
    os.makedirs(qdir, exist_ok=True)
    now = int(time.time())
    msg = ("From: alice@example.org\r\nTo: someone@far.test\r\nSubject: idle\r\n\r\n"
           + ("x" * 76 + "\r\n") * 50).encode()
    for i in range(n):
        qid = "bench%010d" % i
        with open(os.path.join(qdir, qid + ".msg"), "wb") as f:
            f.write(msg)
        env = ("roost-queue 1\nid %s\ncreated %d\nsender alice@example.org\nuser ~\n"
               "envid ~\nret ~\nflags -\nsize %d\nattempts 1\nnext %d\nheld %d\nwarned 0\n"
               "rcpt pending 451 someone@far.test ~ ~ mx.far.test "
               "4.4.1%%20Connection%%20refused\nend\n"
               % (qid, now - 60, len(msg), now + 3600, 1 if i < held else 0))
        with open(os.path.join(qdir, qid + ".env"), "w") as f:
            f.write(env)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def switches(pid):
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches",
                                        "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def measure(binary, entries, seconds, held):
    srv = RoostServer(users={"alice@example.org": "alice-secret"}, listeners=("smtp",),
                      binary=binary,
                      conf={"server": {"log_level": "info"},
                            "relay": {"queue_lifetime": "30d"}})
    srv.start()
    try:
        srv.stop()
        fill(os.path.join(srv.data_dir, "queue"), entries, held)
        t_load = time.monotonic()
        # Not srv.launch(): reading 100k envelopes before the listeners
        # open takes longer than its 15 s on a busy machine.
        srv.logf = open(srv.log_path, "ab")
        srv.proc = subprocess.Popen([binary, "serve", "--config", srv.conf_path],
                                    stdin=subprocess.DEVNULL, stdout=srv.logf,
                                    stderr=subprocess.STDOUT)
        if not wait_port(srv.port("smtp"), timeout=600):
            raise AssertionError("server did not start:\n" + srv.log()[-2000:])
        wait_log(srv, r"event=outbound_start", count=2, timeout=120)
        # Start-up reads every envelope; let that and the first turns of
        # the engine pass before the window opens.
        time.sleep(3)
        load_s = time.monotonic() - t_load
        pid = srv.proc.pid
        c0, s0, t0 = cpu_ticks(pid), switches(pid), time.monotonic()
        time.sleep(seconds)
        c1, s1, t1 = cpu_ticks(pid), switches(pid), time.monotonic()
        if "event=deliver " in srv.log():
            print("warning: a delivery was attempted during the window", file=sys.stderr)
        return {"cpu_ms": (c1 - c0) * 1000.0 / TICK, "window": t1 - t0,
                "wakeups": (s1 - s0) / (t1 - t0), "start_s": load_s}
    finally:
        srv.stop()
        srv.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=50000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--held", type=int, default=0)
    ap.add_argument("--roost", default=ROOST_BIN)
    ap.add_argument("--base")
    a = ap.parse_args()
    runs = [("base", a.base)] if a.base else []
    runs.append(("this", a.roost))
    print("%-6s %8s %6s %8s %10s %8s %12s" % ("build", "entries", "held", "window",
                                              "cpu ms", "cpu %", "switches/s"))
    for name, binary in runs:
        r = measure(binary, a.entries, a.seconds, a.held)
        print("%-6s %8d %6d %7.1fs %10.0f %7.2f%% %12.1f" % (
            name, a.entries, a.held, r["window"], r["cpu_ms"],
            100.0 * r["cpu_ms"] / 1000.0 / r["window"], r["wakeups"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
