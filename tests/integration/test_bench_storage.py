"""roost bench storage: the storage benchmark from the command line, on the
configured backend or the ones named, printed as a table and drawn as an
SVG chart; bad options are usage errors."""
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

from roosttest import BACKENDS, ROOST_BIN

WORKLOADS = ("deliver 1 KB, 1 writer", "deliver 1 KB, 16 writers", "deliver 50 KB, 1 writer",
             "deliver 1 MB, 16 writers", "deliver 50 KB to 100 recipients",
             "open+list 2000 messages", "read random 1 KB message", "status of the big mailbox",
             "flag update (1 message)", "flag update (1000 messages)",
             "changes-since (after the updates)", "expunge (1 message)")


class BenchStorageTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="roost-bench-test-")
        self.data = os.path.join(self.dir, "var")
        self.conf = os.path.join(self.dir, "roost.conf")
        self.write_conf(BACKENDS[0])

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_conf(self, backend):
        with open(self.conf, "w") as f:
            f.write("[server]\ndata_dir = %s\n[storage]\nbackend = %s\n" % (self.data, backend))

    def roost(self, *args, env=None):
        return subprocess.run([ROOST_BIN, "bench", "storage"] + list(args)
                              + ["--config", self.conf], capture_output=True, text=True,
                              timeout=600, env=env)

    def rows(self, out):
        """{(backend, workload): (ops, p50, p95, p99)} from the table's
        fixed columns (backend 8, two blanks, workload 44)."""
        got = {}
        for line in out.splitlines():
            backend = line[:8].strip()
            if backend not in ("lmdb", "maildir", "pgsql"):
                continue
            got[(backend, line[10:54].strip())] = tuple(float(x) for x in line[54:].split()[:4])
        return got

    def test_configured_backend_and_chart(self):
        svg = os.path.join(self.dir, "chart.svg")
        backends = list(BACKENDS)
        res = self.roost("--seconds", "0.1", "--messages", "2000", "--backends",
                         ",".join(backends), "--svg", svg)
        self.assertEqual(res.returncode, 0, res.stderr)
        rows = self.rows(res.stdout)
        for b in backends:
            for w in WORKLOADS:
                self.assertIn((b, w), rows, res.stdout)
                ops, p50, p95, p99 = rows[(b, w)]
                self.assertGreater(ops, 0, (b, w))
                self.assertTrue(0 <= p50 <= p95 <= p99, (b, w, rows[(b, w)]))
        self.assertIn("0.1 s per timed workload", res.stdout)
        # The scratch stores are gone; the data directory holds nothing else.
        self.assertEqual(os.listdir(self.data), [])
        # The chart: well-formed SVG, a bar per backend and workload in each panel.
        root = ET.parse(svg).getroot()
        self.assertTrue(root.tag.endswith("svg"))
        ns = "{http://www.w3.org/2000/svg}"
        titles = [t.text for t in root.iter(ns + "title")]
        for b in backends:
            self.assertEqual(sum(t.startswith(b + ":") and "ops/s" in t for t in titles),
                             len([k for k in rows if k[0] == b]))
            self.assertTrue(any(t.startswith(b + ": p99") for t in titles))
        texts = [t.text for t in root.iter(ns + "text")]
        for w in WORKLOADS:
            self.assertIn(w, texts)
        for b in backends:
            self.assertIn(b, texts)

    def test_default_is_the_configured_backend(self):
        self.write_conf(BACKENDS[-1])
        res = self.roost("--seconds", "0.1", "--messages", "2000")
        self.assertEqual(res.returncode, 0, res.stderr)
        seen = {b for b, _ in self.rows(res.stdout)}
        self.assertEqual(seen, {BACKENDS[-1]})

    def test_usage_errors(self):
        env = dict(os.environ)
        env.pop("ROOST_PGSQL_BENCH_DSN", None)
        for args in (("--backends", "bogus"), ("--backends", ","), ("--seconds", "abc"),
                     ("--seconds", "0"), ("--seconds", "1e9"), ("--messages", "5"),
                     ("--messages", "-1"), ("--svg",), ("--nope",),
                     ("--backends", "lmdb\x01,maildir")):
            res = self.roost(*args, env=env)
            self.assertEqual(res.returncode, 2, (args, res.stdout, res.stderr))
        res = subprocess.run([ROOST_BIN, "bench", "--config", self.conf], capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(res.returncode, 2)
        res = subprocess.run([ROOST_BIN, "bench", "network", "--config", self.conf],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(res.returncode, 2)
        self.assertFalse(os.path.exists(self.data) and os.listdir(self.data))

    def test_pgsql_own_server(self):
        """Without a DSN, pgsql rows come from a PostgreSQL the command starts
        (initdb in a temporary directory) and stops."""
        if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
            self.skipTest("PostgreSQL is not installed (Debian package postgresql)")
        os.chmod(self.dir, 0o755)  # PostgreSQL runs as nobody under root
        env = dict(os.environ, TMPDIR=self.dir)
        env.pop("ROOST_PGSQL_BENCH_DSN", None)
        res = self.roost("--seconds", "0.1", "--messages", "2000", "--backends", "pgsql",
                         env=env)
        self.assertEqual(res.returncode, 0, res.stderr)
        rows = self.rows(res.stdout)
        self.assertIn(("pgsql", "deliver 1 KB, 16 writers"), rows)
        self.assertEqual({b for b, _ in rows}, {"pgsql"})
        self.assertEqual(glob.glob(os.path.join(self.dir, "roost-bench-pg-*")), [])

    def test_pgsql_own_server_killed(self):
        """A benchmark killed by a signal (SIGTERM, SIGKILL) while its own
        PostgreSQL runs leaves no server running and no directory behind:
        a guard process stops and removes them."""
        if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
            self.skipTest("PostgreSQL is not installed (Debian package postgresql)")
        os.chmod(self.dir, 0o755)  # PostgreSQL runs as nobody under root
        env = dict(os.environ, TMPDIR=self.dir)
        env.pop("ROOST_PGSQL_BENCH_DSN", None)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with self.subTest(signal=sig):
                proc = subprocess.Popen(
                    [ROOST_BIN, "bench", "storage", "--seconds", "60", "--messages", "2000",
                     "--backends", "pgsql", "--config", self.conf],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                try:
                    pid = self.wait_postmaster(proc)
                    proc.send_signal(sig)
                    proc.wait(timeout=60)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                deadline = time.monotonic() + 60
                while (os.path.exists("/proc/%d" % pid)
                       or glob.glob(os.path.join(self.dir, "roost-bench-pg-*"))):
                    self.assertLess(time.monotonic(), deadline,
                                    "PostgreSQL %d or its directory outlived the benchmark"
                                    % pid)
                    time.sleep(0.1)

    def wait_postmaster(self, proc):
        """The pid of the benchmark's own PostgreSQL, once it accepts
        connections (its postmaster.pid says "ready")."""
        deadline = time.monotonic() + 60
        while True:
            self.assertIsNone(proc.poll(), "the benchmark ended before its server was up")
            for path in glob.glob(os.path.join(self.dir, "roost-bench-pg-*", "data",
                                               "postmaster.pid")):
                try:
                    with open(path) as f:
                        lines = f.read().splitlines()
                except OSError:
                    continue
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return int(lines[0])
            self.assertLess(time.monotonic(), deadline, "no PostgreSQL came up")
            time.sleep(0.1)

    def test_unwritable_chart(self):
        res = self.roost("--seconds", "0.1", "--messages", "2000", "--backends", BACKENDS[0],
                         "--svg", os.path.join(self.dir, "no", "such", "dir", "c.svg"))
        self.assertEqual(res.returncode, 1)
        self.assertIn("c.svg", res.stderr)
        self.assertNotIn("deliver", res.stdout)  # refused before any work


if __name__ == "__main__":
    unittest.main()
