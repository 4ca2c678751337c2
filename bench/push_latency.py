#!/usr/bin/env python3
"""JMAP PushSubscription latency: from the end of an SMTP delivery to the
StateChange POST arriving at an HTTPS receiver on loopback, plain and
encrypted (RFC 8291), on each backend.

    python3 bench/push_latency.py [--rounds 50] [--backends lmdb,maildir]

For each backend and kind a fresh `roost serve` gets one verified
subscription (the receiver is tests/integration/test_jmap_push_subscription's,
Python's http.server over TLS). --rounds times one message is sent over
SMTP to the user and the time runs from the end of the SMTP transaction
(sendmail() returning) to the receiver having read the POST; the next round starts once it arrived. Each push is a new
TCP and TLS connection (the client keeps none). Printed: median, p90 and
max in milliseconds.
"""
import argparse
import os
import shutil
import smtplib
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import roosttest  # noqa: E402
import test_jmap_push_subscription as t  # noqa: E402
from jmapclient import Jmap  # noqa: E402


def run(backend, rounds, enc):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import serialization
    certdir = tempfile.mkdtemp(prefix="roost-push-bench-")
    t.make_cert(certdir)
    rx = t.Receiver(certdir)
    srv = roosttest.RoostServer(backend=backend, listeners=("http", "smtp"),
                                users=dict(roosttest.DEFAULT_USERS),
                                conf={"server": {"log_level": "info"},
                                      "http": {"push_private_urls": "yes",
                                               "push_ca_file": os.path.join(certdir, "cert.pem")}})
    srv.start()
    try:
        j = Jmap(srv.port("http"), "alice@example.org", "alice-secret")
        priv = ec.generate_private_key(ec.SECP256R1())
        pub = priv.public_key().public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint)
        auth = os.urandom(16)
        rx.keys["/ok/enc"] = (priv, auth)
        if enc:
            subs = {"/ok/enc": {"keys": {"p256dh": t.b64u(pub), "auth": t.b64u(auth)}}}
        else:
            subs = {"/ok/plain": {}}
        for path, more in subs.items():
            obj = {"deviceClientId": path, "url": rx.url(path)}
            obj.update(more)
            sid = j.call("PushSubscription/set", {"create": {"c": obj}})["created"]["c"]["id"]
            _, body = rx.wait(lambda p, b, path=path: p == path and b["@type"] == "PushVerification")
            j.call("PushSubscription/set",
                   {"update": {sid: {"verificationCode": body["verificationCode"]}}})
        lat = {p: [] for p in subs}
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=20) as s:
            for i in range(rounds):
                seen = {p: len(rx.of(p, "StateChange")) for p in subs}
                s.sendmail("bob@example.org", ["alice@example.org"], t.MSG % i)
                t0 = time.monotonic()
                for p in subs:
                    rx.wait(lambda pp, b, p=p: pp == p and len(rx.of(p, "StateChange")) > seen[p])
                    lat[p].append((time.monotonic() - t0) * 1000)
        j.close()
    finally:
        srv.stop()
        srv.cleanup()
        rx.close()
        shutil.rmtree(certdir, True)
    for p, v in lat.items():
        v.sort()
        print("%-8s %-6s rounds=%d median=%.1f ms p90=%.1f ms max=%.1f ms"
              % (backend, "enc" if "enc" in p else "plain", len(v), statistics.median(v),
                 v[int(len(v) * 0.9) - 1], v[-1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--backends", default="lmdb,maildir")
    a = ap.parse_args()
    for b in a.backends.split(","):
        for enc in (False, True):
            run(b, a.rounds, enc)


if __name__ == "__main__":
    main()
