#!/usr/bin/env python3
"""Runtime figures from build/roost-testd (not part of make test).

    python3 bench/runtime_bench.py [--idle N] [--tls N] [--wakes N] [--clients N]
    python3 bench/runtime_bench.py --slow-readers N [--slow-size BYTES] [--roost PATH]

  - memory per idle connection (server RSS delta / connections), plain and TLS
  - wake-up latency: "NOTIFY 0" (another thread calls conn_wake()) until
    "* notify" arrives, next to an ECHO round trip for comparison
  - command round trips per second with N concurrent pipelining clients

--slow-readers runs build/bench/loadgen's slow-readers scenario against a real
`roost serve` (8 workers, 2 loops, LMDB): the IMAP mix alone, then again while
N clients each FETCH a --slow-size message and read it at --slow-rate bytes
per second through a 4 KiB window. --roost runs another build of the server
(e.g. an older one, for a before/after comparison).
"""
import argparse
import os
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from roosttest import ROOST_BIN, ROOST_TESTD, RoostServer  # noqa: E402

ROOT = os.path.dirname(HERE)
LOADGEN = os.path.join(ROOT, "build", "bench", "loadgen")
FILL = os.path.join(ROOT, "build", "tests", "tools", "roost-fill")


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def readline(sock, buf):
    while b"\n" not in buf[0]:
        d = sock.recv(65536)
        if not d:
            raise EOFError
        buf[0] += d
    i = buf[0].index(b"\n") + 1
    line, buf[0] = buf[0][:i], buf[0][i:]
    return line


def idle_memory(srv, n, tls):
    port = srv.port("imaps" if tls else "imap")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    time.sleep(0.3)
    before = rss_kb(srv.proc.pid)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        if tls:
            s = ctx.wrap_socket(s, server_hostname="roost.test")
        socks.append(s)
    for s in socks:
        readline(s, [b""])
    time.sleep(0.5)
    after = rss_kb(srv.proc.pid)
    for s in socks:
        s.close()
    print("idle %-5s connections=%d rss_delta_kb=%d bytes_per_conn=%.0f"
          % ("tls" if tls else "plain", n, after - before, (after - before) * 1024.0 / n))
    time.sleep(0.5)


def latency(srv, n):
    s = socket.create_connection(("127.0.0.1", srv.port("imap")))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = [b""]
    readline(s, buf)
    echo, wake = [], []
    for _ in range(n):
        t = time.perf_counter()
        s.sendall(b"ECHO x\r\n")
        readline(s, buf)
        echo.append(time.perf_counter() - t)
        t = time.perf_counter()
        s.sendall(b"NOTIFY 0\r\n")
        readline(s, buf)            # +OK notify
        readline(s, buf)            # * notify
        wake.append(time.perf_counter() - t)
    s.close()
    for name, xs in (("echo_roundtrip", echo), ("notify_to_wake", wake)):
        xs.sort()
        print("%s n=%d median_us=%.0f p99_us=%.0f" % (name, n, statistics.median(xs) * 1e6,
                                                      xs[int(len(xs) * 0.99)] * 1e6))


def throughput(srv, clients, seconds=3.0):
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def run(i):
        s = socket.create_connection(("127.0.0.1", srv.port("imap")))
        buf = [b""]
        readline(s, buf)
        while time.monotonic() < stop:
            s.sendall(b"ECHO a\r\n" * 16)
            for _ in range(16):
                readline(s, buf)
            counts[i] += 16
        s.close()

    ths = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    print("echo_throughput clients=%d commands_per_s=%.0f" % (clients, sum(counts) / seconds))


def small_message(i):
    body = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghij\r\n" * 58
    return (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: preload %d\r\n"
            b"Message-ID: <p%d@example.org>\r\n\r\n" % (i, i)) + body


def big_message(size):
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod 0123\r\n"
    head = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: big\r\n\r\n"
    return head + line * ((size - len(head)) // len(line))


def fill(srv, user, msg, count):
    subprocess.run([FILL, "-F", srv.conf_path, user, str(count)], input=msg, check=True,
                   capture_output=True, timeout=600)


def slow_readers(a):
    mix_users, slow_users = 40, 25
    users = {"user%d@example.org" % i: "pass%d" % i for i in range(mix_users + slow_users)}
    conf = {"limits": {"max_connections_per_ip": "100000", "max_connections": "100000",
                       "command_timeout": "300"},
            "server": {"log_level": "warn", "workers": "8", "loops": "2"},
            "storage": {"backend": "lmdb"}}
    srv = RoostServer(binary=a.roost or ROOST_BIN, users=users, listeners=("imap",), conf=conf)
    with srv:
        for i in range(mix_users):
            fill(srv, "user%d@example.org" % i, small_message(i), 20)
        big = big_message(a.slow_size)
        for i in range(mix_users, mix_users + slow_users):
            fill(srv, "user%d@example.org" % i, big, 1)
        res = subprocess.run([LOADGEN, "slow-readers", "--port", str(srv.port("imap")),
                              "-c", str(a.mix_conns), "--iterations", str(a.mix_iterations),
                              "--users", str(mix_users), "--slow", str(a.slow_readers),
                              "--slow-users", str(slow_users), "--slow-rate", str(a.slow_rate),
                              "--timeout", str(a.timeout)],
                             capture_output=True, text=True, timeout=4 * a.timeout + 120)
        sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr[-2000:])
        with open("/proc/%d/status" % srv.proc.pid) as f:
            hwm = [ln.split()[1] for ln in f if ln.startswith("VmHWM")]
        print("server peak_rss_kb=%s" % (hwm[0] if hwm else "?"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--tls", type=int, default=1000)
    ap.add_argument("--wakes", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--slow-readers", type=int, default=0)
    ap.add_argument("--slow-size", type=int, default=5 * 1024 * 1024)
    ap.add_argument("--slow-rate", type=int, default=4096)
    ap.add_argument("--mix-conns", type=int, default=20)
    ap.add_argument("--mix-iterations", type=int, default=5)
    ap.add_argument("--timeout", type=int, default=60)
    ap.add_argument("--roost", help="the roost binary for --slow-readers")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.slow_readers > 0:
        slow_readers(a)
        return
    conf = {"limits": {"max_connections_per_ip": "100000", "max_connections": "100000"},
            "server": {"log_level": "warn"}}
    with RoostServer(binary=ROOST_TESTD, users={}, listeners=("imap", "imaps"),
                     conf=conf) as srv:
        idle_memory(srv, a.idle, False)
        idle_memory(srv, a.tls, True)
        latency(srv, a.wakes)
        throughput(srv, a.clients)


if __name__ == "__main__":
    main()
