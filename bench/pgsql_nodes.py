#!/usr/bin/env python3
"""LMTP delivery and the IMAP mix on one and two Roost nodes over one
PostgreSQL, next to LMDB and Maildir on one node.

    python3 bench/pgsql_nodes.py [--messages 2000] [--size 4096] [--users 20]
        [--lmtp-clients 10] [--imap-clients 16] [--iterations 5] [--runs 1]
        [--setups lmdb,maildir,pgsql,pgsql2] [--workers N]

Each setup gets fresh servers (pgsql: a new database on this script's own
PostgreSQL, fsync on, from scripts/pg-test.sh; pgsql2: two `roost serve`
on that one database). `loadgen smtp-deliver --lmtp` delivers --messages
messages of --size bytes over --lmtp-clients sessions to --users users;
then `loadgen imap-mix` runs --imap-clients clients of --iterations
sessions each (LOGIN, SELECT, FETCH, STORE, SEARCH, ...) over the mail
just delivered. With two nodes the clients are split between them and
both loadgens run at once: throughput is the sum of the messages or
commands over the longer of the two runs, latency the worse node's.
Needs build/roost and build/bench/loadgen (make).
"""
import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))
import idle_latency  # noqa: E402  (its PostgreSQL and loadgen helpers)
import roosttest  # noqa: E402

DOMAIN = "example.org"


def run_parallel(argvs):
    """Run loadgens at once; their result lines, in order."""
    procs = [subprocess.Popen([idle_latency.LOADGEN] + [str(a) for a in argv],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in argvs]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError("loadgen %s: %s" % (argvs[0][0], stderr.strip()))
        line = [ln for ln in stdout.splitlines() if ln.startswith("result ")]
        if not line:
            raise RuntimeError("loadgen printed no result: " + stdout + stderr)
        r = dict(kv.split("=", 1) for kv in line[-1].split()[1:])
        if stderr.strip():
            print("  loadgen: " + stderr.strip(), file=sys.stderr)
        if r.get("errors", "0") != "0":
            print("  loadgen %s on port %s: %s errors:\n%s" % (argvs[0][0], argvs[0][2],
                                                             r["errors"], stdout),
                  file=sys.stderr)
        out.append(r)
    return out


def split(total, parts):
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def one_setup(setup, a):
    backend = "pgsql" if setup.startswith("pgsql") else setup
    nodes = 2 if setup == "pgsql2" else 1
    users = {"user%d@%s" % (i, DOMAIN): "pass%d" % i for i in range(a.users)}
    conf = {"limits": {"max_connections": "2000", "max_connections_per_ip": "2000"},
            "imap": {"max_connections_per_user_ip": "1000"}}
    if backend == "pgsql":
        conf["storage"] = {"pgsql_dsn": idle_latency.pg_database()}
    if a.workers:
        conf["server"] = {"workers": str(a.workers)}
    servers = []
    try:
        for _ in range(nodes):
            srv = roosttest.RoostServer(backend=backend, users=users,
                                        listeners=("imap", "lmtp"), conf=conf)
            srv.start()
            servers.append(srv)
        lmtp = run_parallel([
            ("smtp-deliver", "--port", srv.port("lmtp"), "--lmtp", "-c", c, "-n", n,
             "--users", a.users, "--domain", DOMAIN, "--size", a.size)
            for srv, c, n in zip(servers, split(a.lmtp_clients, nodes),
                                 split(a.messages, nodes))])
        imap = run_parallel([
            ("imap-mix", "--port", srv.port("imap"), "-c", c, "--iterations", a.iterations,
             "--users", a.users, "--domain", DOMAIN)
            for srv, c in zip(servers, split(a.imap_clients, nodes))])
        return {
            "msgs_s": sum(int(r["messages"]) for r in lmtp)
            / max(float(r["seconds"]) for r in lmtp),
            "lmtp_p50": max(float(r["p50_ms"]) for r in lmtp),
            "lmtp_p99": max(float(r["p99_ms"]) for r in lmtp),
            "ops_s": sum(int(r["ops"]) for r in imap) / max(float(r["seconds"]) for r in imap),
            "errors": sum(int(r["errors"]) for r in lmtp + imap),
        }
    finally:
        for srv in servers:
            srv.stop()
            srv.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--lmtp-clients", type=int, default=10)
    ap.add_argument("--imap-clients", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--setups", default="lmdb,maildir,pgsql,pgsql2")
    ap.add_argument("--workers", type=int, default=0,
                    help="[server] workers of each node (default: the test harness's 4)")
    a = ap.parse_args()
    results = {}
    for _ in range(a.runs):
        for setup in a.setups.split(","):
            r = one_setup(setup, a)
            results.setdefault(setup, []).append(r)
            print("  %-8s %8.1f msgs/s  p50 %6.1f  p99 %6.1f ms  %8.1f IMAP ops/s  errors %d"
                  % (setup, r["msgs_s"], r["lmtp_p50"], r["lmtp_p99"], r["ops_s"], r["errors"]),
                  file=sys.stderr)
    names = {"lmdb": "LMDB, 1 node", "maildir": "Maildir, 1 node",
             "pgsql": "PostgreSQL, 1 node", "pgsql2": "PostgreSQL, 2 nodes"}
    print("LMTP: %d messages of %d bytes, %d sessions; IMAP mix: %d clients x %d sessions; "
          "%d users; median of %d runs" % (a.messages, a.size, a.lmtp_clients, a.imap_clients,
                                          a.iterations, a.users, a.runs))
    print("| store | LMTP msgs/s | LMTP p50 / p99 ms | IMAP mix ops/s | errors |")
    print("|---|---|---|---|---|")
    for setup, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs)
               for k in ("msgs_s", "lmtp_p50", "lmtp_p99", "ops_s", "errors")}
        print("| %s | %.0f | %.1f / %.1f | %.0f | %d |"
              % (names.get(setup, setup), med["msgs_s"], med["lmtp_p50"], med["lmtp_p99"],
                 med["ops_s"], med["errors"]))


if __name__ == "__main__":
    try:
        main()
    finally:
        if idle_latency.PG["dir"] is not None:
            subprocess.run([os.path.join(roosttest.ROOT, "scripts", "pg-test.sh"), "stop",
                            idle_latency.PG["dir"]])
