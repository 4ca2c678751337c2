"""The HTTP/1.1 listener against raw sockets: framing, keep-alive and
pipelining, HEAD, 405/501, gzip, the hostile cases (request smuggling with
Content-Length and chunked, oversized and slow headers, invalid chunk
sizes), authentication (Basic, bearer tokens, the failure slow-down) and
https."""
import gzip
import os
import re
import socket
import ssl
import subprocess
import unittest

from jmapclient import Raw, basic
from roosttest import ROOST_BIN, RoostServer, SharedServer, wait_log, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
WWW = os.path.join(os.path.dirname(os.path.dirname(HERE)), "www")
ALICE = basic("alice@example.org", "alice-secret")
DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
                     r"Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


class HttpBase(SharedServer, unittest.TestCase):
    conf = {}

    @classmethod
    def server_args(cls):
        conf = {"limits": {"command_timeout": "3"}, "http": {"max_request": "64K"}}
        conf.update(cls.conf)
        return {"listeners": ("http", "https", "smtp", "imap"), "conf": conf}

    @classmethod
    def server_started(cls):
        cls.port = cls.srv.port("http")

    def raw(self):
        r = Raw(self.port)
        self.addCleanup(r.close)
        return r


class TestFraming(HttpBase):
    def test_get_head_and_headers(self):
        r = self.raw()
        r.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        st, h, body = r.response()
        self.assertEqual(st, 200)
        self.assertRegex(h["date"], DATE_RE)
        self.assertEqual(int(h["content-length"]), len(body))
        self.assertTrue(h["content-type"].startswith("text/html"))
        with open(os.path.join(WWW, "index.html"), "rb") as f:
            self.assertEqual(body, f.read())
        self.assertIn("default-src 'self'", h["content-security-policy"])
        # HEAD: the same head, no body, and the connection goes on
        r.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        st, h2, body = r.response(head_only=True)
        self.assertEqual(st, 200)
        self.assertEqual(h2["content-length"], h["content-length"])
        r.send(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n")
        st, h3, body = r.response()
        self.assertEqual(st, 200)
        self.assertTrue(h3["content-type"].startswith("text/css"))

    def test_pipelined_answered_in_order(self):
        r = self.raw()
        r.send(b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n"
               b"GET /.well-known/jmap HTTP/1.1\r\nHost: t\r\n\r\n"
               b"POST /jmap/api/ HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"
               b"HEAD /app.js HTTP/1.1\r\nHost: t\r\n\r\n"
               b"GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        self.assertEqual(r.response()[0], 404)
        st, h, _ = r.response()
        self.assertEqual((st, h["location"]), (302, "/jmap/session"))
        st, h, _ = r.response()
        self.assertEqual(st, 401)
        self.assertIn("Basic", h["www-authenticate"])
        self.assertEqual(r.response(head_only=True)[0], 200)
        st, h, _ = r.response()
        self.assertEqual((st, h["connection"]), (200, "close"))
        self.assertTrue(r.closed())

    def test_http10_closes_and_keepalive(self):
        r = self.raw()
        r.send(b"GET / HTTP/1.0\r\n\r\n")
        st, h, _ = r.response()
        self.assertEqual((st, h.get("connection")), (200, "close"))
        self.assertTrue(r.closed())
        r = self.raw()
        r.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        st, h, _ = r.response()
        self.assertEqual(h.get("connection"), "keep-alive")
        r.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        self.assertEqual(r.response()[0], 200)

    def test_method_not_allowed_and_unknown(self):
        r = self.raw()
        r.send(b"POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        st, h, _ = r.response()
        self.assertEqual((st, h["allow"]), (405, "GET, HEAD"))
        r.send(b"GET /jmap/api/ HTTP/1.1\r\nHost: t\r\n\r\n")
        st, h, _ = r.response()
        self.assertEqual((st, h["allow"]), (405, "POST"))
        r.send(b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertEqual(r.response()[0], 501)

    def test_gzip_when_accepted(self):
        r = self.raw()
        r.send(b"GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, br\r\n\r\n")
        st, h, body = r.response()
        self.assertEqual((st, h["content-encoding"]), (200, "gzip"))
        with open(os.path.join(WWW, "app.js"), "rb") as f:
            self.assertEqual(gzip.decompress(body), f.read())
        r.send(b"GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip;q=0\r\n\r\n")
        st, h, body = r.response()
        self.assertNotIn("content-encoding", h)

    def test_path_traversal(self):
        r = self.raw()
        for path in (b"/../roost.conf", b"/%2e%2e/roost.conf", b"/.hidden", b"/a/../../x"):
            r.send(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(r.response()[0], 404, path)

    def bad(self, data, status):
        r = self.raw()
        r.send(data)
        st, h, _ = r.response()
        self.assertEqual(st, status, data[:80])
        self.assertEqual(h.get("connection"), "close")
        self.assertTrue(r.closed(), data[:80])
        return r

    def test_smuggling_both_lengths(self):
        # A front end that honours Content-Length would see a second
        # request; one that honours chunked would not: refuse, close.
        r = self.bad(b"POST /jmap/api/ HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n"
                     b"Host: t\r\n\r\n", 400)
        self.assertEqual(r.buf, b"")
        self.bad(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 4\r\n\r\n", 400)
        self.bad(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
                 400)
        self.bad(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n", 501)
        self.bad(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n", 400)
        self.bad(b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", 400)
        self.bad(b"GET / HTTP/1.1\nHost: t\n\n", 400)
        self.bad(b"GET / HTTP/1.1\r\n\r\n", 400)

    def test_invalid_chunk_sizes(self):
        head = b"POST /jmap/api/ HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        for chunk in (b"zz\r\n", b"-1\r\n", b"0x10\r\n", b" 5\r\n", b"1" * 20 + b"\r\n",
                      b"5\r\nhelloXY0\r\n\r\n", b"5\nhello"):
            self.bad(head + chunk, 400)

    def test_chunked_body_is_read(self):
        r = self.raw()
        body = b'{"using":["urn:ietf:params:jmap:core"],"methodCalls":[["Core/echo",{"x":1},"a"]]}'
        r.send(b"POST /jmap/api/ HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Type: application/json\r\nAuthorization: " + ALICE.encode() + b"\r\n\r\n")
        for i in range(0, len(body), 10):
            piece = body[i:i + 10]
            r.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        r.send(b"0\r\nX-Trailer: ignored\r\n\r\n")
        st, _, out = r.response()
        self.assertEqual(st, 200, out)
        self.assertIn(b'["Core/echo",{"x":1},"a"]', out)

    def test_size_limits(self):
        self.bad(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414)
        self.bad(b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"b" * 40000 + b"\r\n\r\n", 431)
        self.bad(b"GET / HTTP/1.1\r\nHost: t\r\n" +
                 b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n", 431)
        # Content-Length past [http] max_request (64K here): refused before the body
        self.bad(b"POST /jmap/api/ HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n", 413)
        head = b"POST /jmap/api/ HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        self.bad(head + b"8000\r\n" + b"x" * 0x8000 + b"\r\n8001\r\n", 413)

    def test_slow_headers_are_cut(self):
        # command_timeout is 3 s here: a head that never ends is dropped
        r = self.raw()
        r.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        self.assertTrue(r.closed(timeout=30))
        self.assertTrue(wait_log(self.srv, r"event=(command_timeout|idle_timeout|timeout)"))

    def test_expect_continue(self):
        r = self.raw()
        body = b'{"using":["urn:ietf:params:jmap:core"],"methodCalls":[]}'
        r.send(b"POST /jmap/api/ HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n"
               b"Authorization: %s\r\n\r\n" % (len(body), ALICE.encode()))
        self.assertEqual(r.response(head_only=True)[0], 100)
        r.send(body)
        self.assertEqual(r.response()[0], 200)


class TestAuth(HttpBase):
    def session(self, auth, raw=None):
        r = raw or self.raw()
        r.send(b"GET /jmap/session HTTP/1.1\r\nHost: t\r\nAuthorization: " + auth.encode() +
               b"\r\n\r\n")
        return r.response()

    def test_basic_and_failures(self):
        st, h, body = self.session(ALICE)
        self.assertEqual(st, 200)
        self.assertIn(b'"username":"alice@example.org"', body)
        r = self.raw()
        r.send(b"GET /jmap/session HTTP/1.1\r\nHost: t\r\n\r\n")
        st, h, _ = r.response()
        self.assertEqual(st, 401)
        self.assertIn('Basic realm="Roost"', h["www-authenticate"])
        # the page's scripts get no Basic challenge (no browser dialog)
        r.send(b"GET /jmap/session HTTP/1.1\r\nHost: t\r\nX-Requested-With: roost\r\n\r\n")
        st, h, _ = r.response()
        self.assertEqual((st, h["www-authenticate"]), (401, 'Bearer realm="Roost"'))
        st, _, _ = self.session(basic("alice@example.org", "wrong"))
        self.assertEqual(st, 401)
        self.assertTrue(wait_log(self.srv, r"event=auth_failed conn=\d+ peer=127\.0\.0\.1 proto=http "
                                           r"user=alice@example\.org mechanism=basic"))
        st, _, _ = self.session("Digest abc")
        self.assertEqual(st, 401)

    def test_bearer_token(self):
        out = subprocess.run([ROOST_BIN, "token", "add", "bob@example.org", "--config",
                              self.srv.conf_path], capture_output=True, check=True)
        token = out.stdout.decode().strip()
        self.assertEqual(len(token), 43)
        st, _, body = self.session("Bearer " + token)
        self.assertEqual(st, 200)
        self.assertIn(b'"username":"bob@example.org"', body)
        with open(os.path.join(self.srv.data_dir, "tokens")) as f:
            self.assertNotIn(token, f.read())
        self.assertEqual(self.session("Bearer " + token[:-1] + "x")[0], 401)
        subprocess.run([ROOST_BIN, "token", "revoke", "bob@example.org", "--config",
                        self.srv.conf_path], capture_output=True, check=True)
        self.assertEqual(self.session("Bearer " + token)[0], 401)

    def test_https(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.srv.port("https")), timeout=20) as s:
            with ctx.wrap_socket(s) as t:
                r = Raw.__new__(Raw)
                r.sock, r.buf = t, b""
                st, _, body = self.session(ALICE, raw=r)
                self.assertEqual(st, 200)
                self.assertIn(b'"apiUrl":"https://t/jmap/api/"', body)


class TestMetrics(unittest.TestCase):
    def test_metrics_listener(self):
        with RoostServer(listeners=("http", "metrics", "smtp")) as srv:
            import smtplib
            with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=20) as s:
                s.sendmail("bob@example.org", ["alice@example.org"], b"Subject: m\r\n\r\nx\r\n")
            r = Raw(srv.port("http"))
            self.addCleanup(r.close)
            r.send(b"GET /jmap/session HTTP/1.1\r\nHost: t\r\nAuthorization: " +
                   basic("alice@example.org", "nope").encode() + b"\r\n\r\n")
            self.assertEqual(r.response()[0], 401)
            r.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(r.response()[0], 404)  # not on the page's listener
            m = Raw(srv.port("metrics"))
            self.addCleanup(m.close)
            m.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(m.response()[0], 404)
            m.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            st, h, body = m.response()
            self.assertEqual(st, 200)
            self.assertTrue(h["content-type"].startswith("application/openmetrics-text"))
            text = body.decode()
            self.assertTrue(text.endswith("# EOF\n"))
            values = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    k, v = line.rsplit(" ", 1)
                    values[k] = float(v)
            self.assertGreaterEqual(values['roost_connections_total{listener="http"}'], 1)
            self.assertGreaterEqual(values['roost_connections_total{listener="smtp"}'], 1)
            self.assertGreaterEqual(values['roost_connections_open{listener="metrics"}'], 1)
            self.assertGreaterEqual(values['roost_commands_total{listener="smtp"}'], 4)
            self.assertGreaterEqual(values["roost_auth_failures_total"], 1)
            self.assertEqual(values["roost_deliveries_total"], 1)
            self.assertEqual(values["roost_workers"], 4)
            self.assertGreaterEqual(values["roost_workers_busy"], 1)  # the one answering
            self.assertEqual(values["roost_queue_messages"], 0)


class TestPlaintextRefused(unittest.TestCase):
    """Off loopback, Basic over plain http is refused (the address the test
    client connects from is not loopback when the machine has another
    one)."""

    def test_refused_off_loopback(self):
        addr = None
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect(("192.0.2.1", 9))
                addr = s.getsockname()[0]
        except OSError:
            pass
        if addr is None or addr.startswith("127."):
            self.skipTest("no address other than loopback")
        with socket.socket() as s:
            s.bind((addr, 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            lport = s.getsockname()[1]
        # the harness waits on the first address, on loopback
        listen = "127.0.0.1:%d, %s:%d" % (lport, addr, port)
        with RoostServer(listeners=("http",), conf={"listen": {"http": listen}}):
            # the second address is not waited for by the harness
            self.assertTrue(wait_port(port, host=addr))
            with socket.create_connection((addr, port), timeout=20) as s:
                r = Raw.__new__(Raw)
                r.sock, r.buf = s, b""
                r.send(b"GET /jmap/session HTTP/1.1\r\nHost: t\r\nAuthorization: " +
                       ALICE.encode() + b"\r\n\r\n")
                st, h, _ = r.response()
                self.assertEqual(st, 403)
                r.send(b"GET /jmap/session HTTP/1.1\r\nHost: t\r\n\r\n")
                st, h, _ = r.response()
                self.assertEqual((st, h["www-authenticate"]), (401, 'Bearer realm="Roost"'))


if __name__ == "__main__":
    unittest.main()
