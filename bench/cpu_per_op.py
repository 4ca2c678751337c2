#!/usr/bin/env python3
"""Server CPU per IMAP session and per LMTP delivery, with an optional profile.

    python3 bench/cpu_per_op.py [--backends lmdb,maildir] [--runs 3]
        [--users 40] [--preload 20] [--deliveries 2000] [--sessions 400]
        [--conns 10] [--perf DIR] [--top 10] [--roost BIN] [--baseline OLD_BIN]
        [--syscalls]

For each backend a fresh `roost serve` (fsync on, the credential cache at its
default) gets --users users with --preload 4 KB messages each over LMTP. Then
two scenarios, each measured as the user+system CPU of the server's process
tree (from /proc, before and after) divided by the units of work:

  deliver  --deliveries 4 KB LMTP deliveries over --conns sessions
  session  --sessions imap-mix sessions over --conns clients, each one
           LOGIN, LIST, STATUS, SELECT, FETCH (flags, envelopes, a body),
           STORE, SEARCH, APPEND, STORE \\Deleted, EXPUNGE, LOGOUT on a new
           connection

The client (build/bench/loadgen) is the bottleneck on a small machine, so
operations per second say little; CPU per unit is the figure, and beside it
the server's context switches per unit (from /proc/PID/task/*/status),
which a loaded machine does not inflate the way it inflates CPU time, and with
--syscalls the server's system calls per unit (`perf stat -e
raw_syscalls:sys_enter` attached to the server for the scenario; the
tracepoint costs a little CPU, the same for both binaries). Each figure is
the median over --runs (a new server each run); with --baseline the old binary
runs too, alternating with the new one, so a change is measured against the
code before it in the same sitting. With --perf DIR one more run of each
scenario (not counted in the figures: perf costs CPU too) is recorded by
`perf record --call-graph dwarf` attached to the server process, and the top
--top entries by self time and the top --top Roost functions by inclusive
time are printed and kept in DIR/<old|new>-<backend>-<scenario>.txt. Needs build/roost and build/bench/loadgen.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOADGEN = os.path.join(ROOT, "build", "bench", "loadgen")
DOMAIN = "example.org"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root):
    """User+system seconds of `root` and its descendants, reaped children
    included (their parent's cutime/cstime)."""
    parent, times = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        parent[int(d)] = int(fields[1])
        times[int(d)] = sum(int(x) for x in fields[11:15])
    total = 0
    for pid in times:
        p = pid
        while p and p != root and p in parent:
            p = parent[p]
        if p == root:
            total += times[pid]
    return total / CLK_TCK


def ctx_switches(pid):
    """Voluntary and involuntary context switches of every thread of pid so
    far: a figure the machine's load does not inflate as it does CPU time
    (threads that exited are not counted; Roost's are long-lived)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for ln in f:
                    if ln.startswith(("voluntary_ctxt_switches:",
                                      "nonvoluntary_ctxt_switches:")):
                        total += int(ln.split()[1])
        except OSError:
            pass
    return total


def syscalls_start(pid, out):
    """perf stat counting the system calls of every thread of pid into out."""
    p = subprocess.Popen(["perf", "stat", "-e", "raw_syscalls:sys_enter", "-x", ",", "-o", out,
                          "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches asynchronously
    return p


def syscalls_stop(p, out):
    """The count of a perf stat from syscalls_start(), None if it failed."""
    p.send_signal(signal.SIGINT)
    p.wait()
    try:
        with open(out) as f:
            for ln in f:
                if "raw_syscalls:sys_enter" in ln and ln.split(",")[0].isdigit():
                    return int(ln.split(",")[0])
    except OSError:
        pass
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def loadgen(*args):
    res = subprocess.run([LOADGEN] + [str(a) for a in args], capture_output=True, text=True,
                         timeout=900)
    if res.returncode != 0:
        raise RuntimeError("loadgen %s: %s" % (args[0], res.stderr.strip()))
    for line in res.stdout.splitlines():
        if line.startswith("result "):
            return dict(kv.split("=", 1) for kv in line.split()[1:])
    raise RuntimeError("loadgen printed no result: " + res.stdout + res.stderr)


class Roost:
    def __init__(self, binary, backend, workdir, users):
        self.dir = tempfile.mkdtemp(prefix="cpu-" + backend + "-", dir=workdir)
        self.ports = {p: free_port() for p in ("imap", "lmtp")}
        self.conf = os.path.join(self.dir, "roost.conf")
        with open(self.conf, "w") as f:
            f.write("[server]\ndata_dir = %s/var\nhostname = bench.example\nlog_level = warn\n"
                    "[storage]\nbackend = %s\n[auth]\npasswd_file = %s/passwd\n"
                    "password_scheme = SHA512-CRYPT\n"
                    "[listen]\nimap = 127.0.0.1:%d\nlmtp = 127.0.0.1:%d\nsmtp = off\n"
                    "pop3 = off\nimaps = off\npop3s = off\nsmtps = off\nsubmission = off\n"
                    "http = off\nhttps = off\n[smtp]\ndomains = %s\n"
                    "[limits]\nmax_connections_per_ip = 100000\n"
                    % (self.dir, backend, self.dir, self.ports["imap"], self.ports["lmtp"],
                       DOMAIN))
        for i in range(users):
            subprocess.run([binary, "user", "add", "user%d@%s" % (i, DOMAIN), "--config",
                            self.conf], input="pass%d\n" % i, text=True, check=True,
                           capture_output=True)
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen([binary, "serve", "--config", self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for p in self.ports.values():
            if not wait_port(p):
                raise RuntimeError("roost did not start; see %s" % self.dir)

    def cpu(self):
        return tree_cpu_seconds(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def scenario(srv, name, a):
    """(units of work, loadgen arguments) of one scenario."""
    if name == "deliver":
        return a.deliveries, ("smtp-deliver", "--port", srv.ports["lmtp"], "--lmtp", "-c",
                              a.conns, "-n", a.deliveries, "--users", a.users, "--size", 4096)
    iters = max(1, a.sessions // a.conns)
    return iters * a.conns, ("imap-mix", "--port", srv.ports["imap"], "-c", a.conns,
                             "--iterations", iters, "--users", a.users)


def perf_top(data, n, binary):
    """The top n entries by self time, then the top n of the server's own
    functions by time spent in them and what they call (DWARF call graphs,
    so time in libc and the kernel is charged to the Roost function that
    asked for it)."""
    out = []
    for children, sort in ((False, "symbol"), (True, "dso,symbol")):
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", sort,
                              "-g", "none", "--percent-limit", "0.5",
                              "--children" if children else "--no-children"],
                             capture_output=True, text=True)
        rows = [re.sub(r"\s+-\s+-\s*$", "", ln) for ln in rep.stdout.splitlines()
                if ln.strip() and not ln.startswith("#")]
        if children:
            name = os.path.basename(binary)
            rows = [r for r in rows if r.split()[2] == name]
            out.append("  inclusive, %s functions:" % name)
        else:
            out.append("  self:")
        out += rows[:n]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="lmdb,maildir")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--preload", type=int, default=20)
    ap.add_argument("--deliveries", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=400)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--perf", metavar="DIR")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--roost", default=os.path.join(ROOT, "build", "roost"))
    ap.add_argument("--baseline", metavar="OLD_BIN")
    ap.add_argument("--syscalls", action="store_true",
                    help="count the server's system calls per unit (perf stat)")
    a = ap.parse_args()
    bins = {"new": a.roost}
    if a.baseline:
        bins = {"old": a.baseline, "new": a.roost}
    for tool in list(bins.values()) + [LOADGEN]:
        if not os.path.exists(tool):
            sys.exit("cpu_per_op: %s is missing: run make first" % tool)
    if a.perf:
        os.makedirs(a.perf, exist_ok=True)
    backends = a.backends.split(",")
    scen = ("session", "deliver")
    res = {(v, b, s): [] for v in bins for b in backends for s in scen}
    ctx = {k: [] for k in res}
    sysc = {k: [] for k in res}
    workdir = tempfile.mkdtemp(prefix="roost-cpu-")
    try:
        for run in range(a.runs + (1 if a.perf else 0)):
            profiling = run == a.runs
            for b in backends:
                for v, binary in bins.items():
                    srv = Roost(binary, b, workdir, a.users)
                    try:
                        loadgen("smtp-deliver", "--port", srv.ports["lmtp"], "--lmtp", "-c", 10,
                                "-n", a.users * a.preload, "--users", a.users, "--size", 4096)
                        for s in scen:
                            units, args = scenario(srv, s, a)
                            rec = None
                            if profiling:
                                data = os.path.join(a.perf, "%s-%s-%s.data" % (v, b, s))
                                rec = subprocess.Popen(
                                    ["perf", "record", "--call-graph", "dwarf,8192", "-F",
                                     "1000", "-q", "-o", data, "-p", str(srv.proc.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                                time.sleep(0.5)  # perf attaches asynchronously
                            sc = None
                            if a.syscalls and not profiling:
                                sc_out = os.path.join(workdir, "syscalls.txt")
                                sc = syscalls_start(srv.proc.pid, sc_out)
                            c0, x0 = srv.cpu(), ctx_switches(srv.proc.pid)
                            r = loadgen(*args)
                            ms = (srv.cpu() - c0) * 1000 / units
                            cs = (ctx_switches(srv.proc.pid) - x0) / units
                            if sc:
                                n_sc = syscalls_stop(sc, sc_out)
                                if n_sc is not None:
                                    sysc[(v, b, s)].append(n_sc / units)
                            if rec:
                                rec.send_signal(signal.SIGINT)
                                rec.wait()
                                continue
                            res[(v, b, s)].append(ms)
                            ctx[(v, b, s)].append(cs)
                            print("cpu_per_op: run %d %s %s %s: %.3f ms/unit, %.1f context "
                                  "switches/unit, %s system calls/unit, %s errors"
                                  % (run + 1, v, b, s, ms, cs,
                                     "%.1f" % sysc[(v, b, s)][-1] if sc and sysc[(v, b, s)]
                                     else "-", r.get("errors", "0")),
                                  file=sys.stderr)
                    finally:
                        srv.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print("%-6s %-8s %-8s %10s %10s %10s  %s" % ("binary", "backend", "unit", "cpu ms", "ctxsw",
                                                 "syscalls", "cpu ms of each run"))
    for (v, b, s), vals in res.items():
        if not vals:  # --runs 0: only the profiled run
            continue
        sc = sysc[(v, b, s)]
        print("%-6s %-8s %-8s %10.3f %10.1f %10s  %s"
              % (v, b, s, statistics.median(vals), statistics.median(ctx[(v, b, s)]),
                 "%.1f" % statistics.median(sc) if sc else "-",
                 " ".join("%.3f" % x for x in vals)))
    if a.perf:
        for v in bins:
            for b in backends:
                for s in scen:
                    data = os.path.join(a.perf, "%s-%s-%s.data" % (v, b, s))
                    top = perf_top(data, a.top, bins[v])
                    with open(os.path.join(a.perf, "%s-%s-%s.txt" % (v, b, s)), "w") as f:
                        f.write("\n".join(top) + "\n")
                    print("\n%s %s %s: top %d by self time" % (v, b, s, a.top))
                    print("\n".join(top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
