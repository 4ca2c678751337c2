#!/usr/bin/env python3
"""Postfix next to bench/relay_bench.py: the same 4 KB messages from 10
sessions into a private Postfix instance (its own config, queue and log
under a temp directory, smtpd on a free loopback port, no chroot), which
relays them to a receiving Roost on loopback that stores them (fsync on,
LMDB). Prints one row in relay_bench.py's shape.

Postfix is installed here when missing (Debian's package, root only,
without a system configuration and without starting the system
instance); the tests never install it. Differences from the Roost run,
which the figure carries: Postfix's clients relay as mynetworks (no AUTH,
no TLS: Postfix's SASL needs a Dovecot or Cyrus backend), and Postfix uses
its own default concurrency (20 connections per destination, Roost 4).
"""
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

from relay_bench import PER_SESSION, SESSIONS, body, delivered  # noqa: E402
from roosttest import RoostServer, free_port, wait_port  # noqa: E402

POSTFIX = "/usr/sbin/postfix"
MASTER_CF = "/etc/postfix/master.cf"


def ensure_postfix():
    if os.path.exists(POSTFIX) and os.path.exists(MASTER_CF):
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["debconf-set-selections"], input=b"postfix postfix/main_mailer_type "
                   b"select No configuration\n", check=True)
    res = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "postfix"],
                         env=env, capture_output=True)
    return res.returncode == 0 and os.path.exists(POSTFIX)


def write_config(d, smtp_port, rcv_port):
    etc = os.path.join(d, "etc")
    os.makedirs(etc)
    os.chmod(d, 0o755)  # the daemons run as postfix
    for sub in ("spool", "data"):
        os.makedirs(os.path.join(d, sub))
    shutil.chown(os.path.join(d, "data"), "postfix")
    with open(os.path.join(etc, "main.cf"), "w") as f:
        f.write("""compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.test
mydestination =
local_recipient_maps =
alias_maps =
mynetworks = 127.0.0.0/8
relay_domains = bench.test
relay_recipient_maps =
relay_transport = smtp:[127.0.0.1]:{rcv}
smtp_host_lookup = native
disable_dns_lookups = yes
smtp_tls_security_level = may
""".format(d=d, rcv=rcv_port))
    out = []
    with open(MASTER_CF) as f:
        for line in f:
            fields = line.split()
            if line[:1].isalnum() and len(fields) >= 8:
                if fields[0] == "smtp" and fields[1] == "inet":
                    fields[0] = "127.0.0.1:%d" % smtp_port
                fields[4] = "n"
                line = " ".join(fields) + "\n"
            out.append(line)
    with open(os.path.join(etc, "master.cf"), "w") as f:
        f.writelines(out)
    return etc


def main():
    if not ensure_postfix():
        print("postfix: not installed and cannot be installed here (needs root and apt-get)")
        return 0
    quiet = {"server": {"log_level": "info"}}
    rcv = RoostServer(users={"sink@bench.test": "x"}, listeners=("smtp",),
                      conf=dict(quiet, smtp={"domains": "bench.test"}))
    rcv.start()
    d = tempfile.mkdtemp(prefix="roost-bench-postfix-")
    etc = None
    try:
        port = free_port()
        etc = write_config(d, port, rcv.port("smtp"))
        res = subprocess.run([POSTFIX, "-c", etc, "start"], capture_output=True, text=True,
                             timeout=60)
        if res.returncode != 0 or not wait_port(port):
            print("postfix: did not start: %s" % (res.stdout + res.stderr))
            return 1
        errors = []
        total = SESSIONS * PER_SESSION

        def client(k):
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
                    for i in range(PER_SESSION):
                        s.sendmail("alice@example.org", ["sink@bench.test"],
                                   body(k * PER_SESSION + i))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(SESSIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_sub = time.monotonic() - t0
        deadline = time.monotonic() + 300
        while delivered(rcv) < total and time.monotonic() < deadline and not errors:
            time.sleep(0.02)
        t_all = time.monotonic() - t0
        got = delivered(rcv)
        print("%-10s %8s %8s %14s %14s %6s" % ("postfix", "messages", "sessions",
                                             "submit msgs/s", "relay msgs/s", "errors"))
        print("%-10s %8d %8d %14.0f %14.0f %6d" % ("4K", total, SESSIONS, total / t_sub,
                                                   got / t_all, len(errors) + total - got))
        return 0 if not errors and got == total else 1
    finally:
        if etc is not None:
            subprocess.run([POSTFIX, "-c", etc, "stop"], capture_output=True, timeout=60)
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print("postfix: kept", d)
        rcv.stop()
        rcv.cleanup()


if __name__ == "__main__":
    sys.exit(main())
