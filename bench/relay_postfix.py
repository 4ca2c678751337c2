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
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

from relay_bench import run  # noqa: E402
from roosttest import (POSTFIX, POSTFIX_MASTER_CF, RoostServer, free_port,  # noqa: E402
                       postfix_config, wait_port)


def ensure_postfix():
    if os.path.exists(POSTFIX) and os.path.exists(POSTFIX_MASTER_CF):
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["debconf-set-selections"], input=b"postfix postfix/main_mailer_type "
                   b"select No configuration\n", check=True)
    res = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "postfix"],
                         env=env, capture_output=True)
    return res.returncode == 0 and os.path.exists(POSTFIX)


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
        etc = postfix_config(d, port, """relay_domains = bench.test
relay_transport = smtp:[127.0.0.1]:{rcv}
smtp_tls_security_level = may
""".format(rcv=rcv.port("smtp")))
        res = subprocess.run([POSTFIX, "-c", etc, "start"], capture_output=True, text=True,
                             timeout=60)
        if res.returncode != 0 or not wait_port(port):
            print("postfix: did not start: %s" % (res.stdout + res.stderr))
            return 1
        # Postfix relays for mynetworks: no AUTH.
        return run("postfix", port, rcv)
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
