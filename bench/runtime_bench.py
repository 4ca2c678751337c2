#!/usr/bin/env python3
"""Runtime figures from build/roost-testd (not part of make test).

    python3 bench/runtime_bench.py [--idle N] [--tls N] [--wakes N] [--clients N]

  - memory per idle connection (server RSS delta / connections), plain and TLS
  - wake-up latency: "NOTIFY 0" (another thread calls conn_wake()) until
    "* notify" arrives, next to an ECHO round trip for comparison
  - command round trips per second with N concurrent pipelining clients
"""
import argparse
import os
import resource
import socket
import ssl
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from roosttest import ROOST_TESTD, RoostServer  # noqa: E402


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--tls", type=int, default=1000)
    ap.add_argument("--wakes", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
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
