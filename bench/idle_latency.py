#!/usr/bin/env python3
"""IDLE wake-up latency and the server's CPU per wake-up, on both backends.

    python3 bench/idle_latency.py [--clients 1000] [--users 50] [--rounds 5]
        [--preload 5] [--runs 3] [--backends lmdb,maildir] [--baseline OLD_ROOST]

For each backend (and each binary: build/roost, and OLD_ROOST when given, so
a change is measured against the code before it in the same sitting) a fresh
`roost serve` gets --users users with --preload 4 KB messages each over LMTP;
then `loadgen idle-latency` opens --clients IMAP sessions spread over the
users, SELECTs INBOX and enters IDLE in each, and --rounds times delivers one
LMTP message to every user, timing from the end of DATA to each client
reading its `* n EXISTS`. Server CPU (user + system of the server process,
from /proc) is measured over a second, longer idle-latency run against the
same server and divided by the extra wake-ups, so connection set-up is not
counted; the load generator's CPU over the same runs (its rusage) is shown
beside it, since on one machine both share the cores every wake-up waits for. Runs of the binaries and backends alternate; each figure is the
median over --runs. Needs build/bench/loadgen (make).

--perf DIR adds, per backend and binary, one more run (not counted) whose
wake-up rounds (4x --rounds) are recorded by `perf record -F 4000 -g`
attached to the server; DIR/<binary>-<backend>.txt keeps the split by
object and the top entries by self time (issue 20's note).

10,000 idlers (issue 20): `--clients 10000 --rounds 3 --no-cpu` (a fresh server
per run, as always; --no-cpu leaves out the CPU runs against the same server),
or loadgen directly: `build/bench/loadgen idle-latency -c 10000 --users 50
--rounds 3 --lmtp --port IMAP --deliver-port LMTP --domain example.org` against
a server allowing 11,000 connections (as one_run() configures it). Each run
takes 10,000 local ports and leaves them in TIME_WAIT for a minute after it:
widen the range first (`sysctl -w net.ipv4.ip_local_port_range="15000 65000"`,
which keeps the ports below 15000 that the tests' free_port() hands out), and
start a new server for each run, since the one before may still be closing
the last run's sessions against max_connections.
"""
import argparse
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import roosttest  # noqa: E402

LOADGEN = os.path.join(ROOT, "build", "bench", "loadgen")
DOMAIN = "example.org"


def loadgen(*args):
    res = subprocess.run([LOADGEN] + [str(a) for a in args], capture_output=True, text=True,
                         timeout=600)
    if res.returncode != 0:
        raise RuntimeError("loadgen %s: %s" % (args[0], res.stderr.strip()))
    for line in res.stdout.splitlines():
        if line.startswith("result "):
            out = dict(kv.split("=", 1) for kv in line.split()[1:])
            out["stderr"] = res.stderr.strip()
            return out
    raise RuntimeError("loadgen printed no result: " + res.stdout + res.stderr)


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PG = {"dir": None, "dsn": None, "n": 0}


def pg_database():
    """A new database on this script's own PostgreSQL (started once)."""
    if PG["dir"] is None:
        out = subprocess.run([os.path.join(ROOT, "scripts", "pg-test.sh"), "start"],
                             env=dict(os.environ, PG_TEST_FSYNC="on"), check=True,
                             capture_output=True, text=True).stdout.strip()
        PG["dir"], PG["dsn"] = out.split(" ", 1)
    PG["n"] += 1
    name = "roost_idle_%d_%d" % (os.getpid(), PG["n"])
    subprocess.run(["psql", "-X", "-q", PG["dsn"], "-c", "CREATE DATABASE " + name],
                   check=True, capture_output=True)
    return PG["dsn"] + " dbname=" + name


def one_run(binary, backend, a):
    users = {"user%d@%s" % (i, DOMAIN): "pass%d" % i for i in range(a.users)}
    conf = {"server": {"log_level": "info"},
            "limits": {"max_connections": str(a.clients + 1000),
                       "max_connections_per_ip": str(a.clients + 1000)},
            "imap": {"max_connections_per_user_ip": str(a.clients)}}
    if backend == "pgsql":
        conf["storage"] = {"pgsql_dsn": pg_database()}
    srv = roosttest.RoostServer(backend=backend, users=users, binary=binary,
                                listeners=("imap", "lmtp"), conf=conf)
    srv.start()
    other = None
    try:
        imap, lmtp = srv.port("imap"), srv.port("lmtp")
        if backend == "pgsql":
            other = roosttest.RoostServer(backend=backend, users=users, binary=binary,
                                          listeners=("imap", "lmtp"), conf=conf)
            other.start()
            lmtp = other.port("lmtp")
        if a.preload:
            loadgen("smtp-deliver", "--port", lmtp, "--lmtp", "-c", 10, "-n",
                    a.users * a.preload, "--users", a.users, "--domain", DOMAIN,
                    "--size", 4096)
        idle = ("idle-latency", "--port", imap, "--deliver-port", lmtp, "--lmtp",
                "-c", a.clients, "--users", a.users, "--domain", DOMAIN)
        r = loadgen(*idle, "--rounds", a.rounds)
        if r["stderr"]:
            print("  %s %s: %s" % (backend, binary, r["stderr"]), file=sys.stderr)
        per_wake = client_wake = float("nan")
        if a.cpu:
            per_wake, client_wake = cpu_per_wake(srv, idle, a)
        if a.perf and a.profile_label:
            perf_run(srv, idle, a, a.profile_label)
        return {"p50": float(r["p50_ms"]), "p90": float(r["p90_ms"]), "p99": float(r["p99_ms"]),
                "max": float(r["max_ms"]), "wakeups": int(r["wakeups"]),
                "cpu_us": per_wake * 1e6, "client_us": client_wake * 1e6, "ack": float(r.get("ack_p50_ms", "nan")),
                "after_ack_p99": float(r.get("after_ack_p99_ms", "nan"))}
    finally:
        srv.stop()
        srv.cleanup()
        if other is not None:
            other.stop()
            other.cleanup()


def children_cpu_s():
    """User + system CPU seconds of this script's finished children (loadgen)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def perf_run(srv, idle, a, label):
    """One profiled series of wake-up rounds against srv; the report's
    split by object and top self entries go to a.perf/label.txt."""
    data = os.path.join(a.perf, label + ".data")
    p = subprocess.Popen(["perf", "record", "-F", "4000", "-g", "-o", data, "-p",
                          str(srv.proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches asynchronously
    try:
        loadgen(*idle, "--rounds", a.rounds * 4)
    finally:
        p.send_signal(signal.SIGINT)
        p.wait()
    out = ["%s: %d clients, %d rounds" % (label, a.clients, a.rounds * 4)]
    for sort in ("dso", "dso,symbol"):
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                              "--sort", sort, "-g", "none", "--percent-limit", "0.5"],
                             capture_output=True, text=True)
        out += [re.sub(r"\s+-\s+-\s*$", "", ln) for ln in rep.stdout.splitlines()
                if ln.strip() and not ln.startswith("#")][:20]
    with open(os.path.join(a.perf, label + ".txt"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out), file=sys.stderr)


def cpu_per_wake(srv, idle, a):
    """Server and load generator CPU seconds per wake-up: two more loadgen
    runs, the extra rounds of the second alone. Both run on the same cores,
    so the load generator's share is time the server's wake-ups wait for."""
    c0, l0 = cpu_s(srv.proc.pid), children_cpu_s()
    loadgen(*idle, "--rounds", 1)
    c1, l1 = cpu_s(srv.proc.pid), children_cpu_s()
    loadgen(*idle, "--rounds", 1 + a.rounds * 2)
    c2, l2 = cpu_s(srv.proc.pid), children_cpu_s()
    n = a.rounds * 2 * a.clients
    return ((c2 - c1) - (c1 - c0)) / n, ((l2 - l1) - (l1 - l0)) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--preload", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backends", default="lmdb,maildir")
    ap.add_argument("--baseline", help="an older roost binary to measure alongside")
    ap.add_argument("--no-cpu", dest="cpu", action="store_false",
                    help="skip the two runs that measure server CPU per wake-up (with 10,000 "
                         "clients they are 20,000 more sessions against one server)")
    ap.add_argument("--perf", metavar="DIR",
                    help="profile one more run of each backend and binary (not counted)")
    a = ap.parse_args()
    if a.perf:
        os.makedirs(a.perf, exist_ok=True)
    binaries = [("current", roosttest.ROOST_BIN)]
    if a.baseline:
        binaries.insert(0, ("baseline", os.path.abspath(a.baseline)))
    results = {}
    for run in range(a.runs + (1 if a.perf else 0)):
        for backend in a.backends.split(","):
            for name, binary in binaries:
                a.profile_label = "%s-%s" % (name, backend) if run == a.runs else None
                r = one_run(binary, backend, a)
                if a.profile_label:
                    continue
                results.setdefault((backend, name), []).append(r)
                # ack: the delivery's first 250 (median round); after ack:
                # the wake-ups timed from it (see loadgen_idle.c)
                print("  %-8s %-8s p50 %7.1f ms  p90 %7.1f ms  p99 %7.1f ms  cpu %6.1f us/wake-up  "
                      "(loadgen %.1f us; %d wake-ups; ack %.1f ms, p99 after ack %.1f ms; "
                      "load %.1f)"
                      % (backend, name, r["p50"], r["p90"], r["p99"], r["cpu_us"],
                         r["client_us"], r["wakeups"], r["ack"], r["after_ack_p99"],
                         os.getloadavg()[0]),
                      file=sys.stderr)
    print("%d IDLE clients over %d users, %d rounds, %d messages preloaded per user; "
          "median of %d runs" % (a.clients, a.users, a.rounds, a.preload, a.runs))
    print("| backend | binary | p50 ms | p90 ms | p99 ms | max ms | server CPU per wake-up "
          "| loadgen CPU per wake-up |")
    print("|---|---|---|---|---|---|---|---|")
    for (backend, name), rs in results.items():
        med = {k: statistics.median(r[k] for r in rs)
               for k in ("p50", "p90", "p99", "max", "cpu_us", "client_us")}
        print("| %s | %s | %.1f | %.1f | %.1f | %.1f | %.0f us | %.0f us |"
              % (backend, name, med["p50"], med["p90"], med["p99"], med["max"], med["cpu_us"],
                 med["client_us"]))


if __name__ == "__main__":
    try:
        main()
    finally:
        if PG["dir"] is not None:
            subprocess.run([os.path.join(ROOT, "scripts", "pg-test.sh"), "stop", PG["dir"]])
