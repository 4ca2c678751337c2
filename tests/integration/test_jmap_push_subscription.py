"""JMAP PushSubscription (RFC 8620 7.2) with real pushes to an HTTPS
receiver on loopback (Python's http.server over TLS, a certificate made by
openssl for the test and given to the server as push_ca_file): create,
the PushVerification, verificationCode, a StateChange after a message
arrives over SMTP, destroy, persistence across a restart; hostile
receivers (never answers, 500, 10 MB, a redirect) are retried and
dropped without holding anything else up; bad input gets SetErrors."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from jmapclient import Jmap
from roosttest import DEFAULT_USERS, RoostServer, wait_log

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hkdf1(salt, ikm, info, n):
    """HKDF-SHA-256 with one block of output (RFC 5869)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:n]


def webpush_decrypt(priv, auth, data):
    """RFC 8291 / RFC 8188 aes128gcm, one record."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives import serialization
    salt, rs, idlen = data[:16], int.from_bytes(data[16:20], "big"), data[20]
    as_pub = data[21:21 + idlen]
    ct = data[21 + idlen:]
    assert idlen == 65 and len(ct) <= rs, (idlen, rs, len(ct))
    ua_pub = priv.public_key().public_bytes(serialization.Encoding.X962,
                                            serialization.PublicFormat.UncompressedPoint)
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), as_pub)
    secret = priv.exchange(ec.ECDH(), peer)
    ikm = hkdf1(auth, secret, b"WebPush: info\x00" + ua_pub + as_pub, 32)
    cek = hkdf1(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = hkdf1(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    pt = AESGCM(cek).decrypt(nonce, ct, None).rstrip(b"\x00")
    assert pt.endswith(b"\x02"), pt
    return pt[:-1]


MSG = b"From: bob@example.org\r\nTo: alice@example.org\r\nSubject: push %d\r\n\r\nhello\r\n"


class Receiver:
    """An HTTPS server recording every POST; the path's first segment says
    how StateChanges are answered (verifications always get 200)."""

    def __init__(self, certdir):
        self.posts = []
        self.keys = {}  # path -> (private key, auth secret) of encrypted ones
        self.cond = threading.Condition()
        self.release = threading.Event()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(n)
                if self.headers.get("Content-Encoding") == "aes128gcm":
                    priv, auth = rec.keys[self.path]
                    data = webpush_decrypt(priv, auth, data)
                    data = data.replace(b'"@type":"', b'"encrypted":true,"@type":"')
                body = json.loads(data or b"null")
                with rec.cond:
                    rec.posts.append((self.path, body))
                    rec.cond.notify_all()
                mode = self.path.split("/")[1]
                if body.get("@type") == "PushVerification" or mode == "ok":
                    self.answer(200, b"")
                elif mode == "silent":
                    rec.release.wait(60)
                elif mode == "e500":
                    self.answer(500, b"no")
                elif mode == "big":
                    self.send_response(200)
                    self.send_header("Content-Length", str(10 << 20))
                    self.end_headers()
                    try:
                        for _ in range(10 << 4):
                            self.wfile.write(b"x" * 65536)
                    except OSError:
                        pass
                elif mode == "redirect":
                    self.send_response(307)
                    self.send_header("Location", "/ok/redirected")
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def answer(self, code, data):
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(certdir, "cert.pem"), os.path.join(certdir, "key.pem"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "https://127.0.0.1:%d%s" % (self.port, path)

    def wait(self, pred, timeout=30):
        """The first POST (path, body) for which pred holds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for p in self.posts:
                    if pred(*p):
                        return p
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no such push; got %r" % (self.posts,))
                self.cond.wait(left)

    def of(self, path, kind):
        with self.cond:
            return [b for p, b in self.posts if p == path and b.get("@type") == kind]

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def make_cert(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", os.path.join(d, "key.pem"),
                    "-out", os.path.join(d, "cert.pem"), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)


class PushBase:
    backend = "lmdb"
    extra = {}

    def setUp(self):
        self.certdir = tempfile.mkdtemp(prefix="roost-push-")
        self.addCleanup(shutil.rmtree, self.certdir, True)
        make_cert(self.certdir)
        self.rx = Receiver(self.certdir)
        self.addCleanup(self.rx.close)
        http_conf = {"push_private_urls": "yes",
                     "push_ca_file": os.path.join(self.certdir, "cert.pem"),
                     "push_timeout": "2", "push_retry": "1", "push_max_failures": "3"}
        http_conf.update(self.extra)
        self.srv = RoostServer(backend=self.backend, listeners=("http", "smtp"),
                               users=dict(DEFAULT_USERS), conf={"http": http_conf})
        self.srv.start()
        self.addCleanup(self.srv.cleanup)
        self.addCleanup(self.srv.stop)
        self.connect()

    def connect(self):
        self.j = Jmap(self.srv.port("http"), "alice@example.org", "alice-secret")
        self.addCleanup(self.j.close)

    def deliver(self, n):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=20) as s:
            s.sendmail("bob@example.org", ["alice@example.org"], MSG % n)

    def create(self, path, **more):
        obj = {"deviceClientId": "dev-" + path, "url": self.rx.url(path), "types": None}
        obj.update(more)
        r = self.j.call("PushSubscription/set", {"create": {"c": obj}})
        self.assertIsNone(r["notCreated"], r)
        return r["created"]["c"]

    def verify(self, path, sid):
        _, body = self.rx.wait(lambda p, b: p == path and b["@type"] == "PushVerification")
        self.assertEqual(body["pushSubscriptionId"], sid)
        r = self.j.call("PushSubscription/set",
                        {"update": {sid: {"verificationCode": body["verificationCode"]}}})
        self.assertIn(sid, r["updated"], r)
        return body["verificationCode"]


class PushSubscriptions(PushBase):
    def test_lifecycle(self):
        account = self.j.session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        self.assertIn("urn:ietf:params:jmap:core", self.j.session["capabilities"])
        created = self.create("/ok/1", expires="2999-01-01T00:00:00Z")
        sid = created["id"]
        self.assertLess(created["expires"], "2999")  # bounded by the server
        _, ver = self.rx.wait(lambda p, b: p == "/ok/1")
        self.assertEqual(ver, {"@type": "PushVerification", "pushSubscriptionId": sid,
                               "verificationCode": ver["verificationCode"]})
        got = self.j.call("PushSubscription/get", {"ids": None})
        self.assertEqual(len(got["list"]), 1)
        self.assertEqual(got["list"][0]["id"], sid)
        self.assertIsNone(got["list"][0]["verificationCode"])
        self.assertNotIn("url", got["list"][0])
        self.assertEqual(got["list"][0]["deviceClientId"], "dev-/ok/1")
        # a wrong code does not verify it
        r = self.j.call("PushSubscription/set", {"update": {sid: {"verificationCode": "nope"}}})
        self.assertEqual(r["notUpdated"][sid]["type"], "invalidProperties")
        # not verified yet: a change is not pushed
        self.deliver(0)
        self.assertTrue(wait_log(self.srv, r"event=delivered|event=deliver", 1))
        code = self.verify("/ok/1", sid)
        got = self.j.call("PushSubscription/get", {"ids": [sid, "Snope"]})
        self.assertEqual(got["list"][0]["verificationCode"], code)
        self.assertEqual(got["notFound"], ["Snope"])
        self.assertEqual(self.rx.of("/ok/1", "StateChange"), [])

        self.deliver(1)
        _, ch = self.rx.wait(lambda p, b: p == "/ok/1" and b["@type"] == "StateChange")
        states = ch["changed"][account]
        self.assertIn("Email", states)
        self.assertIn("Mailbox", states)
        email_state = self.j.call("Email/get", {"accountId": account, "ids": []})["state"]
        self.assertEqual(states["Email"], email_state)
        mbox_state = self.j.call("Mailbox/get", {"accountId": account, "ids": []})["state"]
        self.assertEqual(states["Mailbox"], mbox_state)

        # a second subscription, types Mailbox only
        sid2 = self.create("/ok/2", types=["Mailbox"])["id"]
        self.verify("/ok/2", sid2)
        r = self.j.call("PushSubscription/set", {"destroy": [sid, "Snope"]})
        self.assertEqual(r["destroyed"], [sid])
        self.assertEqual(r["notDestroyed"]["Snope"]["type"], "notFound")
        before = len(self.rx.of("/ok/1", "StateChange"))
        self.deliver(2)
        _, ch2 = self.rx.wait(lambda p, b: p == "/ok/2" and b["@type"] == "StateChange")
        self.assertEqual(list(ch2["changed"][account]), ["Mailbox"])
        self.assertTrue(wait_log(self.srv, r"event=push_sent kind=state subscription=%s" % sid2))
        self.assertEqual(len(self.rx.of("/ok/1", "StateChange")), before)
        self.assertNotIn("event=push_sent kind=state subscription=%s" % sid,
                         self.srv.log().split("event=push_unsubscribe")[-1])

        # kept across a restart, still verified, still pushed to
        self.j.close()
        self.srv.stop()
        self.srv.launch()
        self.connect()
        got = self.j.call("PushSubscription/get", {})
        self.assertEqual([s["id"] for s in got["list"]], [sid2])
        self.assertIsNotNone(got["list"][0]["verificationCode"])
        n2 = len(self.rx.of("/ok/2", "StateChange"))
        self.deliver(3)
        self.rx.wait(lambda p, b: p == "/ok/2" and b["@type"] == "StateChange" and
                     len(self.rx.of("/ok/2", "StateChange")) > n2)
        # another user sees none of them and cannot touch them
        bob = Jmap(self.srv.port("http"), "bob@example.org", "bob-secret")
        self.addCleanup(bob.close)
        self.assertEqual(bob.call("PushSubscription/get", {})["list"], [])
        r = bob.call("PushSubscription/set", {"destroy": [sid2]})
        self.assertEqual(r["notDestroyed"][sid2]["type"], "notFound")

    def test_encrypted(self):
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives import serialization
        account = self.j.acc
        priv = ec.generate_private_key(ec.SECP256R1())
        pub = priv.public_key().public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint)
        auth = os.urandom(16)
        self.rx.keys["/ok/enc"] = (priv, auth)
        sid = self.create("/ok/enc", keys={"p256dh": b64u(pub), "auth": b64u(auth)})["id"]
        self.verify("/ok/enc", sid)
        self.deliver(1)
        _, ch = self.rx.wait(lambda p, b: p == "/ok/enc" and b["@type"] == "StateChange")
        self.assertTrue(ch["encrypted"])
        self.assertIn("Email", ch["changed"][account])
        got = self.j.call("PushSubscription/get", {})["list"][0]
        self.assertNotIn("keys", got)
        # keys that are not a P-256 point and 16 bytes
        for bad in ({"p256dh": b64u(b"\x04" + b"\x01" * 64), "auth": b64u(auth)},
                    {"p256dh": b64u(pub), "auth": b64u(auth[:8])},
                    {"p256dh": "not base64!", "auth": b64u(auth)}, {"p256dh": b64u(pub)}):
            r = self.j.call("PushSubscription/set", {"create": {"k": {
                "deviceClientId": "d", "url": self.rx.url("/ok/k"), "keys": bad}}})
            self.assertEqual(r["notCreated"]["k"]["type"], "invalidProperties", bad)

    def test_bad_input(self):
        bad = {
            "nourl": {"deviceClientId": "d"},
            "ftp": {"deviceClientId": "d", "url": "ftp://127.0.0.1/"},
            "userinfo": {"deviceClientId": "d", "url": "https://u:p@127.0.0.1/"},
            "keys": {"deviceClientId": "d", "url": self.rx.url("/ok/k"),
                     "keys": {"p256dh": "x", "auth": "y"}},
            "code": {"deviceClientId": "d", "url": self.rx.url("/ok/c"),
                     "verificationCode": "x"},
            "past": {"deviceClientId": "d", "url": self.rx.url("/ok/p"),
                     "expires": "2001-01-01T00:00:00Z"},
            "types": {"deviceClientId": "d", "url": self.rx.url("/ok/t"), "types": "Email"},
            "nodev": {"url": self.rx.url("/ok/n")},
            "longdev": {"deviceClientId": "d" * 300, "url": self.rx.url("/ok/l")},
            "id": {"deviceClientId": "d", "url": self.rx.url("/ok/i"), "id": "Sx"},
            "notobj": 7,
        }
        r = self.j.call("PushSubscription/set", {"create": bad})
        self.assertIsNone(r["created"])
        for k in bad:
            self.assertEqual(r["notCreated"][k]["type"], "invalidProperties", k)
        self.assertIn("RFC 8291", r["notCreated"]["keys"]["description"])
        self.assertEqual(self.j.call("PushSubscription/get", {})["list"], [])
        # url and keys are never returned
        res = self.j.api([["PushSubscription/get", {"properties": ["url"]}, "0"]])
        self.assertEqual(res[0][1]["type"], "forbidden")
        # immutable url
        sid = self.create("/ok/m")["id"]
        r = self.j.call("PushSubscription/set",
                        {"update": {sid: {"url": self.rx.url("/ok/other")}}})
        self.assertEqual(r["notUpdated"][sid]["type"], "invalidProperties")
        r = self.j.call("PushSubscription/set", {"update": {sid: {"expires": None}}})
        self.assertIn("expires", r["updated"][sid])


class PushLimits(PushBase):
    extra = {"push_subscriptions": "3"}

    def test_per_user_limit(self):
        for i in range(3):
            self.create("/ok/%d" % i)
        r = self.j.call("PushSubscription/set", {"create": {"x": {
            "deviceClientId": "d", "url": self.rx.url("/ok/x")}}})
        self.assertEqual(r["notCreated"]["x"]["type"], "overQuota")


class PushHostile(PushBase):
    extra = {"push_timeout": "5"}

    def test_hostile_receivers(self):
        paths = ["/silent/a", "/e500/a", "/big/a", "/redirect/a"]
        sids = {}
        for p in paths:
            sids[p] = self.create(p)["id"]
            self.verify(p, sids[p])
        good = self.create("/ok/good")["id"]
        self.verify("/ok/good", good)
        self.deliver(1)
        # the good receiver is served while the others fail
        self.rx.wait(lambda p, b: p == "/ok/good" and b["@type"] == "StateChange")
        self.assertEqual(self.j.call("Core/echo", {"x": 1})["x"], 1)
        # each bad one: tried push_max_failures times, then dropped
        for p in paths:
            self.assertTrue(wait_log(self.srv, r"event=push_dropped subscription=%s" % sids[p],
                                     timeout=60), self.srv.log()[-3000:])
            # a POST timed out before the receiver read it is not seen there
            self.assertIn(len(self.rx.of(p, "StateChange")), (1, 2, 3), p)
        self.assertTrue(re.search(r"event=push_failed kind=state subscription=%s "
                                  r"user=\S+ error=\"?timeout" % sids["/silent/a"],
                                  self.srv.log()))
        self.assertTrue(re.search(r"event=push_failed kind=state subscription=%s "
                                  r"user=\S+ status=500" % sids["/e500/a"], self.srv.log()))
        self.assertTrue(re.search(r"event=push_failed kind=state subscription=%s "
                                  r"user=\S+ status=307" % sids["/redirect/a"], self.srv.log()))
        self.assertTrue(re.search(r"event=push_failed kind=state subscription=%s "
                                  r"user=\S+ error=\"?body too large" % sids["/big/a"],
                                  self.srv.log()))
        self.assertEqual(self.rx.of("/ok/redirected", "StateChange"), [])  # not followed
        got = self.j.call("PushSubscription/get", {})
        self.assertEqual([s["id"] for s in got["list"]], [good])


class PushSubscriptionsMaildir(PushSubscriptions, unittest.TestCase):
    backend = "maildir"


class PushSubscriptionsLmdb(PushSubscriptions, unittest.TestCase):
    backend = "lmdb"


class PushLimitsLmdb(PushLimits, unittest.TestCase):
    pass


class PushHostileLmdb(PushHostile, unittest.TestCase):
    pass


if __name__ == "__main__":
    unittest.main()
