"""Outbound TLS policy, REQUIRETLS (RFC 8689) and BINARYMIME (RFC 3030).

Everything on loopback, all servers on one port number (the sender's
[relay] mx_port): a DNS responder of our own (dnsstub.py); a test CA made
with openssl here, which the sender trusts through [relay] tls_ca_file; a
second Roost (127.0.0.31) with a certificate of that CA for mx.good.test;
a third (127.0.0.32) with its self-signed certificate; scripted peers: one
without STARTTLS (127.0.0.33), one with a CA certificate but no REQUIRETLS
or BINARYMIME (127.0.0.34), one offering both (127.0.0.35); and an HTTPS
server of MTA-STS policy files (127.0.0.40) with a certificate of the CA."""
import os
import re
import shutil
import smtplib
import socket
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import subprocess
import tempfile
import threading
import time
import unittest

from dnsstub import DnsStub
from roosttest import BACKENDS, RoostServer, SharedServer, SmtpPeer, free_port, wait_for
from test_smtp import fetch, tls_context, uids

ALICE, BOB = "alice@example.org", "bob@example.org"
PASSWORDS = {ALICE: "alice-secret", BOB: "bob-secret"}
TRUSTED_IP = "127.0.0.5"
GOOD_IP, SELF_IP, PLAIN_IP, BASIC_IP, FULL_IP = (
    "127.0.0.31", "127.0.0.32", "127.0.0.33", "127.0.0.34", "127.0.0.35")

ZONE = {
    "good.test": {"MX": [(10, "mx.good.test")]},
    "mx.good.test": {"A": [GOOD_IP]},
    # The same host under a name its certificate does not carry.
    "wrongname.test": {"MX": [(10, "mx.wrongname.test")]},
    "mx.wrongname.test": {"A": [GOOD_IP]},
    "nonetls.test": {"MX": [(10, "mx.good.test")]},
    "selfsigned.test": {"MX": [(10, "mx.selfsigned.test")]},
    "selfsigned-may.test": {"MX": [(10, "mx.selfsigned.test")]},
    "mx.selfsigned.test": {"A": [SELF_IP]},
    "plainpeer.test": {"A": [PLAIN_IP]},
    "basic.test": {"MX": [(10, "mx.basic.test")]},
    "mx.basic.test": {"A": [BASIC_IP]},
    "full.test": {"MX": [(10, "mx.full.test")]},
    "mx.full.test": {"A": [FULL_IP]},
}
STS_IP = "127.0.0.40"
# MTA-STS: domain -> (TXT record, policy file or None for a server error,
# MX host).
STS = {
    "enforce.test": ("v=STSv1; id=1", "version: STSv1\r\nmode: enforce\r\n"
                     "mx: mx.good.test\r\nmax_age: 3600\r\n", "mx.good.test"),
    "enforce-self.test": ("v=STSv1; id=a2", "version: STSv1\nmode: enforce\n"
                          "mx: mx.selfsigned.test\nmax_age: 3600\n", "mx.selfsigned.test"),
    "enforce-mismatch.test": ("v=STSv1; id=3", "version: STSv1\nmode: enforce\n"
                              "mx: *.elsewhere.test\nmax_age: 3600\n", "mx.good.test"),
    "testing.test": ("v=STSv1; id=4", "version: STSv1\nmode: testing\n"
                     "mx: mx.other.test\nmax_age: 3600\n", "mx.selfsigned.test"),
    "badpolicy.test": ("v=STSv1; id=5", "<html>this is not a policy</html>",
                       "mx.selfsigned.test"),
    "badtxt.test": ("v=STSv1; id=not-valid!", None, "mx.selfsigned.test"),
    "deadsts.test": ("v=STSv1; id=6", None, "mx.selfsigned.test"),
}
for _d, (_txt, _pol, _mx) in STS.items():
    ZONE[_d] = {"MX": [(10, _mx)]}
    ZONE["_mta-sts." + _d] = {"TXT": [_txt, "some other record"]}
    ZONE["mta-sts." + _d] = {"A": [STS_IP]}

DNS = None
PORT = None
POLICY_SERVER = None
POLICY_GETS = {}  # Host -> requests
CA_DIR = None
GOOD = None
SELF = None
FAKES = {}


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_ca(d):
    """ca.pem and, signed by it, <name>.pem/.key for each MX name, and
    policy.pem/.key for every mta-sts.<domain> of STS."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Roost Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    certs = [(n, [n]) for n in ("mx.good.test", "mx.basic.test", "mx.full.test")]
    certs.append(("policy", ["mta-sts." + dom for dom in STS]))
    for name, names in certs:
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % ",".join("DNS:" + n for n in names))
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=" + names[0], cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2",
                "-extfile", name + ".ext", cwd=d)


class FakePeer(SmtpPeer):
    """A scripted SMTP server on (ip, PORT). mode: "plain" (no STARTTLS),
    "basic" (STARTTLS, then PIPELINING and CHUNKING only), "full" (STARTTLS,
    then also BINARYMIME and REQUIRETLS)."""
    max_line = 4096

    def __init__(self, ip, mode, cert=None):
        self.mode = mode
        self.tls = None
        if cert is not None:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(cert + ".pem", cert + ".key")
        super().__init__(ip, PORT)

    def ehlo(self, s):
        lines = ["fake"]
        if self.tls is not None and not s.secure:
            lines.append("STARTTLS")
        if s.secure:
            lines += ["PIPELINING", "CHUNKING"]
            if self.mode == "full":
                lines += ["BINARYMIME", "REQUIRETLS"]
        return "".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l)
                       for i, l in enumerate(lines)).encode()

    def command(self, s, verb, line, n):
        if verb == b"STAR" and self.tls is not None and not s.secure:
            s.send(b"220 2.0.0 go ahead\r\n")
            s.conn = self.tls.wrap_socket(s.conn, server_side=True)
            s.f = s.conn.makefile("rb")
            s.secure = True
        elif verb == b"BDAT":
            words = line.split()
            s.chunks.append(s.f.read(int(words[1])))
            if len(words) > 2 and words[2].upper() == b"LAST":
                self.messages.append(b"".join(s.chunks))
                s.chunks = []
            s.send(b"250 2.0.0 ok\r\n")
        else:
            return super().command(s, verb, line, n)
        return True

    def mails(self):
        return [c for c in self.commands if c.upper().startswith(b"MAIL")]


class PolicyHandler(BaseHTTPRequestHandler):
    """GET /.well-known/mta-sts.txt of the Host's domain, from STS."""

    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0]
        POLICY_GETS[host] = POLICY_GETS.get(host, 0) + 1
        entry = STS.get(host[len("mta-sts."):]) if host.startswith("mta-sts.") else None
        if entry is None or entry[1] is None or self.path != "/.well-known/mta-sts.txt":
            self.send_error(404)
            return
        body = entry[1].encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_policy_server():
    srv = ThreadingHTTPServer((STS_IP, 0), PolicyHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(CA_DIR, "policy.pem"), os.path.join(CA_DIR, "policy.key"))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def setUpModule():
    global DNS, PORT, CA_DIR, GOOD, SELF, POLICY_SERVER
    CA_DIR = tempfile.mkdtemp(prefix="roost-ca-")
    make_ca(CA_DIR)
    DNS = DnsStub(ZONE).start()
    PORT = free_port()
    ca = lambda name: os.path.join(CA_DIR, name)
    # Each receiver listens on 127.0.0.1 too: the harness waits for that.
    GOOD = RoostServer(backend=BACKENDS[0], listeners=("smtp",),
                       users={"carol@good.test": "c", "wn@wrongname.test": "w",
                              "nt@nonetls.test": "n", "e@enforce.test": "e",
                              "em@enforce-mismatch.test": "e"},
                       conf={"listen": {"smtp": "127.0.0.1:%d, %s:%d" % (free_port(), GOOD_IP, PORT)},
                             "smtp": {"domains": "good.test, wrongname.test, nonetls.test, "
                                                "enforce.test, enforce-mismatch.test"},
                             "server": {"hostname": "mx.good.test"},
                             "tls": {"cert": ca("mx.good.test.pem"),
                                     "key": ca("mx.good.test.key")}})
    GOOD.start()
    SELF = RoostServer(backend=BACKENDS[0], listeners=("smtp",),
                       users={"sam@selfsigned.test": "s", "may@selfsigned-may.test": "m",
                              "es@enforce-self.test": "e", "t@testing.test": "t",
                              "b@badpolicy.test": "b", "bt@badtxt.test": "b",
                              "d@deadsts.test": "d"},
                       conf={"listen": {"smtp": "127.0.0.1:%d, %s:%d" % (free_port(), SELF_IP, PORT)},
                             "smtp": {"domains": "selfsigned.test, selfsigned-may.test, "
                                                "enforce-self.test, testing.test, "
                                                "badpolicy.test, badtxt.test, deadsts.test"},
                             "server": {"hostname": "mx.selfsigned.test"}})
    SELF.start()
    POLICY_SERVER = start_policy_server()
    FAKES["plain"] = FakePeer(PLAIN_IP, "plain")
    FAKES["basic"] = FakePeer(BASIC_IP, "basic", ca("mx.basic.test"))
    FAKES["full"] = FakePeer(FULL_IP, "full", ca("mx.full.test"))


def tearDownModule():
    for f in FAKES.values():
        f.stop()
    if POLICY_SERVER is not None:
        POLICY_SERVER.shutdown()
        POLICY_SERVER.server_close()
    try:
        for srv in (GOOD, SELF):
            try:
                srv.stop()
            finally:
                srv.cleanup()
    finally:
        DNS.stop()
        shutil.rmtree(CA_DIR, ignore_errors=True)


def message(subject, to, sender=ALICE, extra="", body="Hello.\r\n"):
    msgid = "<%s.%f@example.org>" % (re.sub(r"\W", "", subject), time.time())
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n%s"
            "Date: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\n%s"
            % (sender, to, subject, msgid, extra, body)).encode(), msgid


def messages_of(srv, user):
    return [fetch(srv, user, uid) for uid, _ in uids(srv, user)]


def with_text(srv, user, text):
    return [m for m in messages_of(srv, user) if text.encode() in m]


def deliver_lines(srv, rcpt, status=None):
    return [l for l in srv.log().splitlines()
            if "event=deliver " in l and "to=<%s>" % rcpt in l
            and (status is None or "status=%s" % status in l)]


class Raw:
    """A line-level SMTP client (for what smtplib will not send)."""

    def __init__(self, port, source=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15,
                                             source_address=source)
        self.f = self.sock.makefile("rb")
        self.reply()

    def reply(self):
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise AssertionError("connection closed")
            lines.append(line.decode("latin-1").rstrip("\r\n"))
            if line[3:4] != b"-":
                return int(lines[0][:3]), lines

    def cmd(self, line, data=b""):
        self.sock.sendall(line.encode() + b"\r\n" + data)
        return self.reply()

    def starttls(self):
        self.sock = tls_context().wrap_socket(self.sock)
        self.f = self.sock.makefile("rb")

    def close(self):
        self.sock.close()


def sender_args(listeners, **relay):
    """RoostServer's arguments for the sending server of a test class: it
    relays to PORT, resolves through DNS, trusts the test CA; relay holds
    the class's own [relay] settings."""
    return {"backend": BACKENDS[0], "users": PASSWORDS, "listeners": listeners, "conf": {
        "relay": dict({"mx_port": str(PORT), "retry_min": "1", "retry_max": "2",
                       "connect_timeout": "5", "command_timeout": "10",
                       "queue_lifetime": "1h", "delay_warning": "0",
                       "tls_ca_file": os.path.join(CA_DIR, "ca.pem"), "tls_policy": "may"},
                      **relay),
        "dns": {"servers": DNS.server, "timeout": "3"},
        "smtp": {"trusted_networks": TRUSTED_IP + "/32"},
        "server": {"hostname": "sender.test"},
    }}


class RelayTlsTest(SharedServer, unittest.TestCase):
    @classmethod
    def server_args(cls):
        return sender_args(("smtp", "submission"),
                           tls_policies="good.test:verify, selfsigned.test:verify, "
                                        "wrongname.test:verify, plainpeer.test:encrypt, "
                                        "nonetls.test:none")

    def relay(self, rcpt, data, mail_options=()):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15,
                          source_address=(TRUSTED_IP, 0)) as s:
            s.ehlo()
            if mail_options:
                s.starttls(context=tls_context())
                s.ehlo()
            return s.sendmail(ALICE, [rcpt], data, mail_options=list(mail_options))

    def bounce_for(self, msgid):
        return wait_for(lambda: [m for m in messages_of(self.srv, ALICE)
                                 if b"multipart/report" in m and msgid.encode() in m],
                        what="the bounce of " + msgid)

    # -- item 1: certificate checks per policy --
    def test_policies_decide_and_log(self):
        sent = {}
        for rcpt in ("carol@good.test", "nt@nonetls.test", "may@selfsigned-may.test",
                     "sam@selfsigned.test", "wn@wrongname.test", "x@plainpeer.test"):
            data, msgid = message("policy " + rcpt, rcpt)
            self.relay(rcpt, data)
            sent[rcpt] = msgid
        # verify, and the certificate checks out: sent, logged verified.
        line = wait_for(lambda: deliver_lines(self.srv, "carol@good.test", "sent"))[0]
        self.assertIn("relay=mx.good.test ip=%s tls=verified tls_version=TLSv1." % GOOD_IP,
                      line)
        wait_for(lambda: with_text(GOOD, "carol@good.test", sent["carol@good.test"]))
        # none: no STARTTLS at all.
        line = wait_for(lambda: deliver_lines(self.srv, "nt@nonetls.test", "sent"))[0]
        self.assertIn("tls=none tls_version=none", line)
        # may (the default): any certificate, logged unverified.
        line = wait_for(lambda: deliver_lines(self.srv, "may@selfsigned-may.test", "sent"))[0]
        self.assertIn("tls=unverified tls_version=TLSv1.", line)
        # verify with a self-signed certificate, or one for another name:
        # deferred (4xx), never sent in clear.
        for rcpt, why in (("sam@selfsigned.test", "not verified: self"),
                          ("wn@wrongname.test", "not verified: ")):
            line = wait_for(lambda: deliver_lines(self.srv, rcpt, "deferred"),
                            what="deferral of " + rcpt)[0]
            self.assertIn("code=421", line)
            self.assertIn(why, line)
        self.assertIn("hostname mismatch", deliver_lines(self.srv, "wn@wrongname.test")[0])
        self.assertEqual(with_text(SELF, "sam@selfsigned.test", sent["sam@selfsigned.test"]), [])
        self.assertEqual(with_text(GOOD, "wn@wrongname.test", sent["wn@wrongname.test"]), [])
        # encrypt with a peer without STARTTLS: deferred, no MAIL sent.
        line = wait_for(lambda: deliver_lines(self.srv, "x@plainpeer.test", "deferred"))[0]
        self.assertIn("4.7.5 TLS required", line)
        self.assertEqual(FAKES["plain"].mails(), [])
        # A deferred entry is retried, and never falls back to plain text.
        wait_for(lambda: len(deliver_lines(self.srv, "sam@selfsigned.test")) >= 2)
        self.assertNotIn("event=relay_tls_fallback domain=selfsigned.test", self.srv.log())

    def test_tls_required_no_header_lowers_the_policy(self):
        # RFC 8689 4.2.2: "TLS-Required: No" asks that recipient policies
        # be ignored; the verify policy of selfsigned.test becomes may.
        data, msgid = message("tls optional", "sam@selfsigned.test",
                              extra="TLS-Required: No\r\n")
        self.relay("sam@selfsigned.test", data)
        wait_for(lambda: with_text(SELF, "sam@selfsigned.test", msgid), what="delivery")
        lines = [l for l in deliver_lines(self.srv, "sam@selfsigned.test", "sent")]
        self.assertTrue(any("tls=unverified" in l for l in lines), lines)

    def test_bad_policy_configuration_stops_the_server(self):
        for key, value in (("tls_policy", "dane"), ("tls_policies", "good.test:sometimes"),
                           ("tls_policies", "good.test"), ("tls_ca_file", "/nonexistent")):
            srv = RoostServer(backend=BACKENDS[0], users={}, listeners=("smtp",),
                              conf={"relay": {key: value}})
            res = srv.serve_refused()
            self.assertNotEqual(res.returncode, 0, key)
            self.assertIn("[relay] " + key, res.stdout + res.stderr)

    # -- item 2: REQUIRETLS --
    def test_requiretls_is_offered_and_taken_over_tls_only(self):
        r = Raw(self.srv.port("smtp"), (TRUSTED_IP, 0))
        code, lines = r.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        self.assertNotIn("250-REQUIRETLS", lines)
        code, lines = r.cmd("MAIL FROM:<%s> REQUIRETLS" % ALICE)
        self.assertEqual((code, lines[0][4:10]), (530, "5.7.10"))
        code, _ = r.cmd("STARTTLS")
        self.assertEqual(code, 220)
        r.starttls()
        code, lines = r.cmd("EHLO client.test")
        self.assertIn("250-REQUIRETLS", lines)
        self.assertEqual(r.cmd("MAIL FROM:<%s> REQUIRETLS=yes" % ALICE)[0], 501)
        self.assertEqual(r.cmd("MAIL FROM:<%s> REQUIRETLS REQUIRETLS" % ALICE)[0], 501)
        self.assertEqual(r.cmd("MAIL FROM:<%s> REQUIRETLS" % ALICE)[0], 250)
        self.assertEqual(r.cmd("QUIT")[0], 221)
        r.close()

    def test_requiretls_relay(self):
        # A verified peer that offers REQUIRETLS (a Roost): delivered.
        data, good_id = message("rtls good", "carol@good.test")
        self.relay("carol@good.test", data, ["REQUIRETLS"])
        wait_for(lambda: with_text(GOOD, "carol@good.test", good_id), what="delivery")
        # The option goes on to the next hop.
        data, full_id = message("rtls full", "u@full.test")
        self.relay("u@full.test", data, ["REQUIRETLS"])
        wait_for(lambda: [m for m in FAKES["full"].messages if full_id.encode() in m])
        self.assertTrue(any(c.endswith(b" REQUIRETLS") for c in FAKES["full"].mails()),
                        FAKES["full"].mails())
        # Verified, but the peer does not offer REQUIRETLS: bounced (5.7.30),
        # nothing sent to it.
        before = len(FAKES["basic"].mails())
        data, basic_id = message("rtls basic", "u@basic.test")
        self.relay("u@basic.test", data, ["REQUIRETLS"])
        dsn = self.bounce_for(basic_id)[0]
        self.assertIn(b"5.7.30", dsn)
        self.assertEqual(len(FAKES["basic"].mails()), before)
        # No verified TLS (a self-signed certificate): bounced, and a
        # "TLS-Required: No" field does not outweigh REQUIRETLS.
        data, self_id = message("rtls self", "may@selfsigned-may.test",
                                extra="TLS-Required: No\r\n")
        self.relay("may@selfsigned-may.test", data, ["REQUIRETLS"])
        dsn = self.bounce_for(self_id)[0]
        self.assertIn(b"5.7.30", dsn)
        self.assertEqual(with_text(SELF, "may@selfsigned-may.test", self_id), [])
        line = deliver_lines(self.srv, "may@selfsigned-may.test", "bounced")[-1]
        self.assertIn("code=550", line)

    # -- item 3: BINARYMIME --
    def binary_body(self, tag):
        # NULs, bare CR and LF, bytes over 127, and a line of a lone dot:
        # everything DATA could not carry.
        return (b"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: binary\r\nSubject: " + tag.encode() +
                b"\r\nFrom: " + ALICE.encode() + b"\r\n\r\n" +
                bytes(range(256)) + b"\n.\n\r.\r\n\x00end\r\n")

    def bdat_send(self, rcpt, body, tls=False):
        r = Raw(self.srv.port("smtp"), (TRUSTED_IP, 0))
        code, lines = r.cmd("EHLO client.test")
        self.assertIn("250-BINARYMIME", lines)
        self.assertEqual(r.cmd("MAIL FROM:<%s> BODY=BINARYMIME" % ALICE)[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % rcpt)[0], 250)
        code, lines = r.cmd("BDAT %d LAST" % len(body), body)
        self.assertEqual(code, 250, lines)
        r.cmd("QUIT")
        r.close()

    def test_binarymime_with_data_is_refused(self):
        r = Raw(self.srv.port("smtp"), (TRUSTED_IP, 0))
        r.cmd("EHLO client.test")
        self.assertEqual(r.cmd("MAIL FROM:<%s> BODY=BINARYMIME" % ALICE)[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % BOB)[0], 250)
        code, lines = r.cmd("DATA")
        self.assertEqual((code, lines[0][4:9]), (503, "5.5.1"))
        # The transaction stays: BDAT may still carry the message.
        body = self.binary_body("after refused data")
        code, _ = r.cmd("BDAT %d LAST" % len(body), body)
        self.assertEqual(code, 250)
        self.assertEqual(r.cmd("MAIL FROM:<%s> BODY=BINARYMIME BODY=7BIT" % ALICE)[0], 501)
        self.assertEqual(r.cmd("QUIT")[0], 221)
        r.close()
        got = wait_for(lambda: [m for m in messages_of(self.srv, BOB)
                                if b"after refused data" in m])
        self.assertIn(body, got[0])

    def test_binarymime_relay(self):
        # To a Roost (it offers BINARYMIME and CHUNKING): the bytes arrive as sent.
        body = self.binary_body("binary to good")
        self.bdat_send("carol@good.test", body)
        got = wait_for(lambda: [m for m in messages_of(GOOD, "carol@good.test")
                                if b"binary to good" in m], what="binary delivery")
        self.assertIn(body, got[0])
        # The next hop is told BODY=BINARYMIME.
        body = self.binary_body("binary to full")
        self.bdat_send("u@full.test", body)
        got = wait_for(lambda: [m for m in FAKES["full"].messages if b"binary to full" in m])
        self.assertTrue(got[0].endswith(body))
        self.assertTrue(any(b"BODY=BINARYMIME" in c for c in FAKES["full"].mails()))
        # A peer without BINARYMIME: bounced (5.6.3), not converted.
        before = len(FAKES["basic"].mails())
        body = self.binary_body("binary to basic")
        self.bdat_send("u@basic.test", body)
        line = wait_for(lambda: deliver_lines(self.srv, "u@basic.test", "bounced"))[0]
        self.assertIn("code=554", line)
        self.assertIn("5.6.3", line)
        self.assertEqual(len(FAKES["basic"].mails()), before)
        wait_for(lambda: [m for m in messages_of(self.srv, ALICE)
                          if b"multipart/report" in m and b"binary to basic" in m])


class MtaStsTest(SharedServer, unittest.TestCase):
    """MTA-STS (RFC 8461): policies found by TXT record and fetched over
    HTTPS from the test's policy server, whose CA [relay] tls_ca_file names."""

    @classmethod
    def server_args(cls):
        return sender_args(("smtp",), mta_sts_port=str(POLICY_SERVER.server_address[1]))

    def relay(self, rcpt, extra=""):
        data, msgid = message("sts " + rcpt, rcpt, extra=extra)
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15,
                          source_address=(TRUSTED_IP, 0)) as s:
            s.sendmail(ALICE, [rcpt], data)
        return msgid

    def test_enforce_delivers_over_verified_tls_and_caches(self):
        first = self.relay("e@enforce.test")
        wait_for(lambda: with_text(GOOD, "e@enforce.test", first), what="delivery")
        line = deliver_lines(self.srv, "e@enforce.test", "sent")[0]
        self.assertIn("tls=verified", line)
        self.assertRegex(self.srv.log(), r"event=mta_sts domain=enforce\.test status=fetched "
                                         r"mode=enforce id=1 max_age=3600 mx=1")
        # max_age: the second message uses the cached policy.
        second = self.relay("e@enforce.test")
        wait_for(lambda: with_text(GOOD, "e@enforce.test", second), what="second delivery")
        self.assertEqual(POLICY_GETS.get("mta-sts.enforce.test"), 1)

    def test_enforce_defers_unverified_and_unlisted_hosts(self):
        # The domain's own policy says verify, whatever [relay] says.
        self.relay("es@enforce-self.test")
        line = wait_for(lambda: deliver_lines(self.srv, "es@enforce-self.test", "deferred"))[0]
        self.assertIn("not verified", line)
        # An MX host the policy does not name is never used.
        self.relay("em@enforce-mismatch.test")
        line = wait_for(lambda: deliver_lines(self.srv, "em@enforce-mismatch.test",
                                              "deferred"))[0]
        self.assertIn("4.7.5 MTA-STS: no MX host matches", line)
        self.assertIn("event=mta_sts_report domain=enforce-mismatch.test mode=enforce "
                      "host=mx.good.test problem=mx-mismatch", self.srv.log())
        self.assertEqual(messages_of(GOOD, "em@enforce-mismatch.test"), [])

    def test_tls_required_no_ignores_the_policy(self):
        msgid = self.relay("es@enforce-self.test", extra="TLS-Required: No\r\n")
        wait_for(lambda: with_text(SELF, "es@enforce-self.test", msgid), what="delivery")

    def test_testing_mode_reports_and_delivers(self):
        msgid = self.relay("t@testing.test")
        wait_for(lambda: with_text(SELF, "t@testing.test", msgid), what="delivery")
        log = self.srv.log()
        self.assertIn("event=mta_sts_report domain=testing.test mode=testing "
                      "host=mx.selfsigned.test problem=mx-mismatch", log)
        self.assertIn("event=mta_sts_report domain=testing.test mode=testing "
                      "host=mx.selfsigned.test problem=tls-unverified", log)

    def test_bad_policies_count_as_none(self):
        # A policy file that does not parse, a TXT record with a bad id, a
        # policy server that answers 404: no policy, delivery as [relay]
        # tls_policy says (may).
        ids = {rcpt: self.relay(rcpt) for rcpt in
               ("b@badpolicy.test", "bt@badtxt.test", "d@deadsts.test")}
        for rcpt, msgid in ids.items():
            wait_for(lambda: with_text(SELF, rcpt, msgid), what="delivery to " + rcpt)
        log = self.srv.log()
        self.assertRegex(log, r"event=mta_sts domain=badpolicy\.test status=none id=5 "
                              r"reason=\"invalid policy file\"")
        self.assertRegex(log, r"event=mta_sts domain=deadsts\.test status=none id=6 "
                              r"reason=\"HTTP status 404\"")
        self.assertNotIn("mta-sts.badtxt.test", POLICY_GETS)


if __name__ == "__main__":
    unittest.main()
