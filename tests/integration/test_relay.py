"""Outbound mail: relaying, the queue, MX delivery, retries, bounces, hostile
peers, kill -9. Everything on loopback: a DNS responder of our own
(dnsstub.py), a second Roost instance receiving for the test domains on
127.0.0.1 and 127.0.0.2, and scripted SMTP peers on 127.0.0.10-13, all on
one port number (the sender's [relay] mx_port)."""
import email
import os
import re
import smtplib
import socket
import subprocess
import threading
import time
import unittest

from dnsstub import DnsStub
from roosttest import BACKENDS, RoostServer, SharedServer, SmtpPeer, free_port, submission, wait_for
from test_smtp import fetch, uids

ALICE, BOB, DAN = "alice@example.org", "bob@example.org", "dan@roost.test"
PASSWORDS = {ALICE: "alice-secret", BOB: "bob-secret", DAN: "dan-secret"}
RECEIVER_USERS = {"carol@remote-a.test": "c", "dave@remote-b.test": "d",
                  "erin@remote-c.test": "e", "crash@remote-b.test": "x"}
TRUSTED_IP = "127.0.0.5"

ZONE = {
    # MX preference: the answer lists 20 before 10; 10 must be tried first.
    "remote-a.test": {"MX": [(20, "mx2.remote-a.test"), (10, "mx1.remote-a.test")]},
    "mx1.remote-a.test": {"A": ["127.0.0.2"]},
    "mx2.remote-a.test": {"A": ["127.0.0.1"]},
    # No MX: the domain's own address (implicit MX).
    "remote-b.test": {"A": ["127.0.0.1"]},
    # The preferred host refuses connections: fall back to the next.
    "remote-c.test": {"MX": [(10, "dead.remote-c.test"), (20, "mx2.remote-a.test")]},
    "dead.remote-c.test": {"A": ["127.0.0.3"]},
    "dead.test": {"A": ["127.0.0.3"]},
    "nullmx.test": {"MX": [(0, ".")]},
    "temp.test": {"MX": [(10, "mx.temp.test")]},
    "mx.temp.test": {"A": ["127.0.0.10"]},
    "silent.test": {"A": ["127.0.0.11"]},
    "longline.test": {"A": ["127.0.0.12"]},
    "dropdata.test": {"A": ["127.0.0.13"]},
    "gated.test": {"A": ["127.0.0.14"]},
    "notls.test": {"A": ["127.0.0.15"]},
    "plain.test": {"A": ["127.0.0.15"]},
    "badtls.test": {"A": ["127.0.0.16"]},
    "chunk.test": {"A": ["127.0.0.17"]},
    "chunk-nopipe.test": {"A": ["127.0.0.18"]},
    "bdat-silent.test": {"A": ["127.0.0.19"]},
    "bdat-refuse.test": {"A": ["127.0.0.20"]},
    "bdat-longline.test": {"A": ["127.0.0.21"]},
    "example.org": {"TXT": ["v=spf1 -all"]},
}

DNS = None
RECEIVER = None
PORT = None
FAKES = []


class FakePeer(SmtpPeer):
    """A scripted SMTP server on (ip, PORT)."""

    def __init__(self, ip, mode):
        self.mode = mode
        self.bdats = []  # the BDAT command lines received
        self.gate = threading.Event()  # "gated": the greeting waits for it
        super().__init__(ip, PORT)

    def greet(self, conn, n):
        if self.mode == "silent":
            self.held.append(conn)
            return False
        if self.mode == "longline":
            chunk = b"2" * 65536
            for _ in range(160):	# 10 MB, no line end
                conn.sendall(chunk)
            return False
        if self.mode == "gated":
            self.gate.wait(30)
        return super().greet(conn, n)

    def ehlo(self, s):
        if self.mode == "badtls":
            return b"250-fake\r\n250 STARTTLS\r\n"
        if self.mode == "chunking-nopipe":
            return b"250-fake\r\n250 CHUNKING\r\n"
        if self.mode.startswith(("chunking", "bdat")):
            return b"250-fake\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
        return super().ehlo(s)

    def command(self, s, verb, line, n):
        if verb == b"BDAT":
            # Read exactly the announced bytes, whatever follows.
            self.bdats.append(line.strip())
            words = line.split()
            size = int(words[1])
            data = s.f.read(size)
            if len(data) < size:
                return False
            s.chunks.append(data)
            last = len(words) > 2 and words[2].upper() == b"LAST"
            if self.mode == "bdat-silent":
                return True
            if self.mode == "bdat-refuse":
                s.send(b"554 5.6.0 Chunk refused\r\n")
            elif self.mode == "bdat-longline":
                s.send(b"2" * (10 * 1024 * 1024))
                return False
            elif last:
                self.messages.append(b"".join(s.chunks))
                s.chunks = []
                s.send(b"250 2.0.0 queued\r\n")
            else:
                s.send(b"250 2.0.0 chunk ok\r\n")
        elif verb == b"STAR":
            s.send(b"220 2.0.0 go ahead\r\n")
            s.send(b"this is not a TLS server hello\r\n")
            return False
        elif verb == b"RCPT" and self.mode == "temp-once" and n == 1:
            s.send(b"451 4.3.0 Try again later\r\n")
        elif verb == b"DATA" and self.mode == "drop-after-data":
            s.read_data()
            return False
        else:
            return super().command(s, verb, line, n)
        return True


def setUpModule():
    global DNS, RECEIVER, PORT
    DNS = DnsStub(ZONE).start()
    PORT = free_port()
    RECEIVER = RoostServer(backend=BACKENDS[0], users=RECEIVER_USERS, listeners=("smtp",), conf={
        "listen": {"smtp": "127.0.0.1:%d, 127.0.0.2:%d" % (PORT, PORT)},
        "smtp": {"domains": "remote-a.test, remote-b.test, remote-c.test"},
        "server": {"hostname": "receiver.test"},
    })
    RECEIVER.start()
    for ip, mode in (("127.0.0.10", "temp-once"), ("127.0.0.11", "silent"),
                     ("127.0.0.12", "longline"), ("127.0.0.13", "drop-after-data"),
                     ("127.0.0.14", "gated"), ("127.0.0.15", "ok"), ("127.0.0.16", "badtls"),
                     ("127.0.0.17", "chunking"), ("127.0.0.18", "chunking-nopipe"),
                     ("127.0.0.19", "bdat-silent"), ("127.0.0.20", "bdat-refuse"),
                     ("127.0.0.21", "bdat-longline")):
        FAKES.append(FakePeer(ip, mode))


def tearDownModule():
    for f in FAKES:
        f.stop()
    try:
        RECEIVER.stop()
    finally:
        RECEIVER.cleanup()
        DNS.stop()


def sender_conf(**relay):
    conf = {
        "relay": {"mx_port": str(PORT), "retry_min": "1", "retry_max": "2",
                  "connect_timeout": "5", "command_timeout": "10", "queue_lifetime": "1h",
                  "delay_warning": "0", "tls_required": "notls.test"},
        "dns": {"servers": DNS.server, "timeout": "3"},
        "smtp": {"trusted_networks": TRUSTED_IP + "/32"},
        "server": {"hostname": "sender.test"},
    }
    conf["relay"].update(relay)
    return conf


def sender_args(conf=None, **relay):
    """RoostServer's arguments for a sending server: sender_conf(**relay),
    conf's sections laid over it."""
    c = sender_conf(**relay)
    for section, keys in (conf or {}).items():
        c.setdefault(section, {}).update(keys)
    return {"backend": BACKENDS[0], "users": PASSWORDS, "listeners": ("smtp", "submission"),
            "conf": c}


def start_sender(conf=None, **relay):
    return RoostServer(**sender_args(conf, **relay)).start()


# dkimpy (Debian's python3-dkim) in the system interpreter, with the key
# record handed in instead of looked up.
DKIM_VERIFY = r"""
import sys, dkim
msg = sys.stdin.buffer.read()
record, want = sys.argv[1].encode(), sys.argv[2]
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return record if name.rstrip(".") == want else None
sys.exit(0 if dkim.verify(msg, dnsfunc=dnsfunc) else 1)
"""
SYSTEM_PYTHON = "/usr/bin/python3"


def have_dkimpy():
    return os.path.exists(SYSTEM_PYTHON) and subprocess.run(
        [SYSTEM_PYTHON, "-c", "import dkim, nacl"], capture_output=True).returncode == 0


def message(subject, sender=ALICE, to="carol@remote-a.test", msgid=None, body="Hello.\r\n"):
    msgid = msgid or "<%s.%f@example.org>" % (re.sub(r"\W", "", subject), time.time())
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n"
            "Date: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\n%s"
            % (sender, to, subject, msgid, body)).encode(), msgid


def submit(srv, sender, rcpts, data, user=ALICE):
    with submission(srv, user, PASSWORDS[user]) as s:
        return s.sendmail(sender, rcpts, data)


def trusted_client(srv):
    return smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=15,
                        source_address=(TRUSTED_IP, 0))


def messages_of(srv, user, mailbox="INBOX"):
    return [fetch(srv, user, uid, mailbox) for uid, _ in uids(srv, user, mailbox)]


def with_msgid(srv, user, msgid):
    return [m for m in messages_of(srv, user) if msgid.encode() in m]


def deliver_lines(srv, rcpt):
    return [l for l in srv.log().splitlines()
            if "event=deliver " in l and "to=<%s>" % rcpt in l]


class RelayTest(SharedServer, unittest.TestCase):
    @classmethod
    def server_args(cls):
        return sender_args()

    def test_relay_after_auth_with_local_recipient(self):
        data, msgid = message("mixed")
        self.assertEqual(submit(self.srv, ALICE, ["carol@remote-a.test", BOB], data), {})
        got = wait_for(lambda: with_msgid(RECEIVER, "carol@remote-a.test", msgid),
                       what="delivery at the receiver")
        self.assertEqual(len(got), 1)
        self.assertTrue(with_msgid(self.srv, BOB, msgid), "the local copy is stored")
        # MX preference: mx1 (10) before mx2 (20), whatever the answer's order.
        line = wait_for(lambda: deliver_lines(self.srv, "carol@remote-a.test"))[-1]
        self.assertRegex(line, r"relay=mx1\.remote-a\.test ip=127\.0\.0\.2 tls=unverified "
                               r"tls_version=TLSv1\.[23] "
                               r"code=250 status=sent")
        self.assertIn("queue_id=", line)
        self.assertRegex(line, r"delay=\d+s")
        # The receiver saw our Received line, not a Return-Path of ours.
        self.assertNotIn(b"X-Roost-DSN", got[0])
        self.assertIn(b"by sender.test (Roost) with ESMTPSA", got[0])
        wait_for(lambda: "0 messages in the queue" in self.srv.cli("queue", "list").stdout)
        self.assertIn("consistent", self.srv.cli("check").stdout)

    def test_trusted_network_relays_with_fallbacks(self):
        d1, id1 = message("fallback", sender="someone@outside.test", to="erin@remote-c.test")
        d2, id2 = message("implicit", sender="someone@outside.test", to="dave@remote-b.test")
        with trusted_client(self.srv) as s:
            self.assertEqual(s.sendmail("someone@outside.test", ["erin@remote-c.test"], d1), {})
            self.assertEqual(s.sendmail("someone@outside.test", ["dave@remote-b.test"], d2), {})
        wait_for(lambda: with_msgid(RECEIVER, "erin@remote-c.test", id1))
        wait_for(lambda: with_msgid(RECEIVER, "dave@remote-b.test", id2))
        # dead.remote-c.test (10) refuses: mx2 (20) takes it.
        line = deliver_lines(self.srv, "erin@remote-c.test")[-1]
        self.assertRegex(line, r"relay=mx2\.remote-a\.test ip=127\.0\.0\.1 .*status=sent")
        # No MX at all: the domain's own A record.
        line = deliver_lines(self.srv, "dave@remote-b.test")[-1]
        self.assertRegex(line, r"relay=remote-b\.test ip=127\.0\.0\.1 .*status=sent")

    def test_refusals(self):
        # From 127.0.0.1, not a trusted network, no AUTH: no relaying, and
        # the organisation's own domain cannot be used as sender.
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.ehlo("outside.test")
            self.assertEqual(s.mail("someone@outside.test")[0], 250)
            code, resp = s.rcpt("carol@remote-a.test")
            self.assertEqual(code, 554)
            self.assertIn(b"5.7.1", resp)
            self.assertEqual(s.rset()[0], 250)
            code, resp = s.mail(BOB)
            self.assertEqual(code, 550)
            self.assertIn(b"5.7.1", resp)
        # Submission: bob's address is not alice's, neither in the envelope...
        with submission(self.srv, ALICE, PASSWORDS[ALICE]) as s:
            code, resp = s.mail(BOB)
            self.assertEqual(code, 553)
            self.assertIn(b"5.7.1", resp)
            self.assertEqual(s.mail("alice+tag@example.org")[0], 250)
            s.rset()
            # ...nor in From:.
            data, _ = message("spoof", sender=BOB)
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                s.sendmail(ALICE, ["carol@remote-a.test"], data)
            self.assertEqual(cm.exception.smtp_code, 553)
            self.assertIn(b"5.7.1", cm.exception.smtp_error)

    def test_null_mx_bounces_at_once(self):
        before = len(messages_of(self.srv, ALICE))
        data, msgid = message("to null mx", to="x@nullmx.test")
        submit(self.srv, ALICE, ["x@nullmx.test"], data)
        got = wait_for(lambda: [m for m in messages_of(self.srv, ALICE)[before:]
                                if msgid.encode() in m and b"multipart/report" in m])
        self.assertIn(b"Status: 5.1.10", got[0])

    def test_temporary_failure_then_success(self):
        data, msgid = message("temp", sender="someone@outside.test", to="u@temp.test")
        with trusted_client(self.srv) as s:
            s.sendmail("someone@outside.test", ["u@temp.test"], data)
        line = wait_for(lambda: [l for l in deliver_lines(self.srv, "u@temp.test")
                                 if "status=sent" in l])[0]
        lines = deliver_lines(self.srv, "u@temp.test")
        self.assertIn("code=451 status=deferred", lines[0])
        self.assertIn("attempt=1 ", lines[0])
        self.assertRegex(line, r"attempt=[2-9] ")
        temp = FAKES[0]
        self.assertEqual(sum(msgid.encode() in m for m in temp.messages), 1)

    def test_permanent_failure_gives_exactly_one_dsn(self):
        before = len(messages_of(self.srv, ALICE))
        data, msgid = message("to nobody", to="nobody@remote-a.test")
        submit(self.srv, ALICE, ["nobody@remote-a.test"], data)
        line = wait_for(lambda: [l for l in deliver_lines(self.srv, "nobody@remote-a.test")
                                 if "status=bounced" in l])[0]
        qid = re.search(r"queue_id=(\S+)", line).group(1)
        wait_for(lambda: "event=queue_done queue_id=%s " % qid in self.srv.log())
        wait_for(lambda: "event=dsn queue_id=%s " % qid in self.srv.log())
        dsns = [m for m in messages_of(self.srv, ALICE)[before:] if msgid.encode() in m]
        self.assertEqual(len(dsns), 1)
        msg = email.message_from_bytes(dsns[0])
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        parts = msg.get_payload()
        self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
        report = dsns[0].decode("utf-8", "replace")
        self.assertIn("Final-Recipient: rfc822; nobody@remote-a.test", report)
        self.assertIn("Action: failed", report)
        self.assertIn("Status: 5.1.1", report)
        self.assertEqual(parts[2].get_content_type(), "message/rfc822")
        self.assertEqual(msg["To"], "<%s>" % ALICE)

    def test_several_messages_over_one_connection(self):
        gated = FAKES[4]
        ids = []
        with trusted_client(self.srv) as s:
            for i in range(6):
                data, msgid = message("batch %d" % i, sender="someone@outside.test",
                                      to="u%d@gated.test" % i)
                s.sendmail("someone@outside.test", ["u%d@gated.test" % i], data)
                ids.append(msgid)
        # The six wait in at most max_per_domain (4) sessions while the
        # peer holds its greeting: some connection carries several.
        wait_for(lambda: self.srv.log().count("to=u5@gated.test size=") == 1)
        gated.gate.set()
        wait_for(lambda: len(gated.messages) == 6, what="six messages at the peer")
        self.assertLessEqual(gated.connections, 4)
        for msgid in ids:
            self.assertEqual(sum(msgid.encode() in m for m in gated.messages), 1)

    def test_tls_required_and_tls_fallback(self):
        with trusted_client(self.srv) as s:
            d1, _ = message("must be tls", sender="someone@outside.test", to="u@notls.test")
            s.sendmail("someone@outside.test", ["u@notls.test"], d1)
            d2, id2 = message("broken tls", sender="someone@outside.test", to="u@badtls.test")
            s.sendmail("someone@outside.test", ["u@badtls.test"], d2)
        # [relay] tls_required: a peer without STARTTLS gets nothing.
        line = wait_for(lambda: deliver_lines(self.srv, "u@notls.test"))[0]
        self.assertIn("status=deferred", line)
        self.assertIn("4.7.5 TLS required", line)
        self.assertEqual(FAKES[5].messages, [])
        # Opportunistic TLS that breaks: delivered in plain text instead.
        line = wait_for(lambda: [l for l in deliver_lines(self.srv, "u@badtls.test")
                                 if "status=sent" in l])[0]
        self.assertIn("tls=none", line)
        self.assertIn("event=relay_tls_fallback domain=badtls.test", self.srv.log())
        self.assertEqual(sum(id2.encode() in m for m in FAKES[6].messages), 1)

    def test_smtputf8_message_to_a_peer_without_it_bounces(self):
        before = len(messages_of(self.srv, ALICE))
        data, msgid = message("utf8", to="jörg@plain.test")
        with submission(self.srv, ALICE, PASSWORDS[ALICE]) as s:
            s.ehlo()
            s.sendmail(ALICE, ["jörg@plain.test"], data, mail_options=["SMTPUTF8"])
        got = wait_for(lambda: [m for m in messages_of(self.srv, ALICE)[before:]
                                if msgid.encode() in m and b"multipart/report" in m])
        self.assertIn(b"Status: 5.6.7", got[0])
        self.assertFalse([m for m in FAKES[5].messages if msgid.encode() in m],
                         "not sent mangled")

    def test_dsn_options(self):
        before = len(messages_of(self.srv, ALICE))
        data, msgid = message("dsn options", to="nobody3@remote-a.test")
        with submission(self.srv, ALICE, PASSWORDS[ALICE]) as s:
            s.sendmail(ALICE, ["nobody3@remote-a.test"], data,
                       mail_options=["RET=HDRS", "ENVID=env+2Bid"],
                       rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;Nobody3+40remote-a.test"])
            data2, msgid2 = message("never tell", to="nobody4@remote-a.test")
            s.sendmail(ALICE, ["nobody4@remote-a.test"], data2, rcpt_options=["NOTIFY=NEVER"])
        got = wait_for(lambda: [m for m in messages_of(self.srv, ALICE)[before:]
                                if msgid.encode() in m])
        report = got[0].decode("utf-8", "replace")
        self.assertIn("Original-Envelope-Id: env+2Bid", report)
        self.assertIn("Original-Recipient: rfc822; Nobody3@remote-a.test", report)
        self.assertIn("Content-Type: text/rfc822-headers", report)
        self.assertNotIn("Hello.", report.split("text/rfc822-headers", 1)[1])
        line = wait_for(lambda: [l for l in deliver_lines(self.srv, "nobody4@remote-a.test")
                                 if "status=bounced" in l])[0]
        qid = re.search(r"queue_id=(\S+)", line).group(1)
        wait_for(lambda: "event=queue_done queue_id=%s " % qid in self.srv.log())
        self.assertNotIn("event=dsn queue_id=%s " % qid, self.srv.log())
        self.assertFalse([m for m in messages_of(self.srv, ALICE) if msgid2.encode() in m])

    def test_null_sender_gets_no_dsn(self):
        data, _ = message("bounce of a bounce", sender="MAILER-DAEMON@outside.test",
                          to="nobody2@remote-a.test")
        with trusted_client(self.srv) as s:
            s.sendmail("", ["nobody2@remote-a.test"], data)
        line = wait_for(lambda: [l for l in deliver_lines(self.srv, "nobody2@remote-a.test")
                                 if "status=bounced" in l])[0]
        qid = re.search(r"queue_id=(\S+)", line).group(1)
        wait_for(lambda: "event=queue_done queue_id=%s " % qid in self.srv.log())
        self.assertNotIn("event=dsn queue_id=%s " % qid, self.srv.log())

    def test_hostile_peers_and_queue_commands(self):
        ids = {}
        for rcpt in ("a@silent.test", "b@longline.test", "c@dropdata.test"):
            data, _ = message("hostile " + rcpt, sender="someone@outside.test", to=rcpt)
            with trusted_client(self.srv) as s:
                s.ehlo("x")
                s.mail("someone@outside.test")
                s.rcpt(rcpt)
                code, resp = s.data(data)
                self.assertEqual(code, 250)
                ids[rcpt] = re.search(rb"queued as (\S+)", resp).group(1).decode()
        reasons = {"a@silent.test": "Timeout in state greeting",
                   "b@longline.test": "over 2048 bytes",
                   "c@dropdata.test": "lost in state end-of-data"}
        for rcpt, why in reasons.items():
            line = wait_for(lambda: [l for l in deliver_lines(self.srv, rcpt)
                                     if "status=deferred" in l], what=rcpt)[0]
            self.assertIn(why, line)
        # Meanwhile the server answers as ever.
        with smtplib.SMTP("127.0.0.1", self.srv.port("submission"), timeout=5) as s:
            self.assertEqual(s.ehlo("x")[0], 250)
        out = self.srv.cli("queue", "list").stdout
        for qid in ids.values():
            self.assertIn(qid, out)
        qid = ids["a@silent.test"]
        show = self.srv.cli("queue", "show", qid).stdout
        self.assertIn("recipient: <a@silent.test> pending 421", show)
        self.srv.cli("queue", "hold", qid)
        self.assertIn("held: yes", self.srv.cli("queue", "show", qid).stdout)
        self.srv.cli("queue", "release", qid)
        self.assertIn("held: no", self.srv.cli("queue", "show", qid).stdout)
        self.srv.cli("queue", "flush")
        for qid in ids.values():
            self.srv.cli("queue", "delete", qid)
        wait_for(lambda: all(i not in self.srv.cli("queue", "list").stdout for i in ids.values()))
        self.assertNotEqual(self.srv.cli("queue", "show", "NOSUCHID", check=False).returncode, 0)


    def test_chunking_to_peers_that_offer_it(self):
        """BDAT instead of DATA: 1 MiB chunks pipelined, one chunk to a
        peer without PIPELINING, the bytes raw (no dot-stuffing)."""
        body = "".join(".line %05d with a leading dot\r\n" % i for i in range(80000))
        for rcpt, peer, want in (("big@chunk.test", FAKES[7], 3),
                                 ("big@chunk-nopipe.test", FAKES[8], 1)):
            data, msgid = message("chunks " + rcpt, sender="someone@outside.test", to=rcpt,
                                  body=body)
            before = len(peer.bdats)
            with trusted_client(self.srv) as s:
                s.sendmail("someone@outside.test", [rcpt], data)
            try:
                line = wait_for(lambda: [l for l in deliver_lines(self.srv, rcpt)
                                         if "status=sent" in l], timeout=60, what=rcpt)[0]
            except AssertionError:
                raise AssertionError("%s: %s %s" % (rcpt, deliver_lines(self.srv, rcpt),
                                                    peer.bdats[before:]))
            self.assertIn("code=250", line)
            got = [m for m in peer.messages if msgid.encode() in m]
            self.assertEqual(len(got), 1)
            # What arrived is the queued message, Received: line first.
            self.assertTrue(got[0].endswith(data), rcpt)
            self.assertTrue(got[0].startswith(b"Received: "), got[0][:80])
            bdats = peer.bdats[before:]
            self.assertEqual(len(bdats), want, bdats)
            self.assertTrue(bdats[-1].endswith(b" LAST"), bdats)
            self.assertEqual(sum(int(b.split()[1]) for b in bdats), len(got[0]))
            if want > 1:
                self.assertEqual(bdats[0], b"BDAT 1048576")
            self.assertNotIn(b"DATA", [c[:4].upper() for c in peer.commands])
        # (The second Roost offers CHUNKING and PIPELINING too, so every
        # other test here relays to it with BDAT: DKIM verifies its bytes,
        # the crash test counts its messages.)

    def test_hostile_chunking_peers(self):
        """A peer that never answers BDAT, one that refuses the chunk, one
        that answers with 10 MB of garbage."""
        for rcpt, status, why in (("a@bdat-silent.test", "deferred", "Timeout in state"),
                                  ("b@bdat-refuse.test", "bounced", "5.6.0 Chunk refused"),
                                  ("c@bdat-longline.test", "deferred", "over 2048 bytes")):
            data, _ = message("hostile chunks " + rcpt, sender="", to=rcpt)
            with trusted_client(self.srv) as s:
                s.sendmail("", [rcpt], data)
            line = wait_for(lambda: [l for l in deliver_lines(self.srv, rcpt)
                                     if "status=" + status in l], what=rcpt)[0]
            self.assertIn(why, line)
            qid = re.search(r"queue_id=(\S+)", line).group(1)
            if status == "deferred":
                self.srv.cli("queue", "delete", qid)
        # After a refused chunk the client said RSET before anything else.
        cmds = FAKES[10].commands
        i = max(k for k, c in enumerate(cmds) if c.startswith(b"BDAT"))
        self.assertIn(cmds[i + 1][:4].upper(), (b"RSET",), cmds)
        with smtplib.SMTP("127.0.0.1", self.srv.port("submission"), timeout=5) as s:
            self.assertEqual(s.ehlo("x")[0], 250)

    def test_receiver_bdat_wrong_sizes(self):
        """The receiving side of BDAT against wrong sizes: too few bytes
        then a close, too many (the rest read as commands), no number,
        a number past 2^64, a negative one."""
        port = PORT
        def talk(cmds, read_until=b"\r\n"):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"EHLO x\r\n")
            while not f.readline().startswith(b"250 "):
                pass
            s.sendall(b"MAIL FROM:<x@outside.test>\r\nRCPT TO:<carol@remote-a.test>\r\n")
            self.assertTrue(f.readline().startswith(b"250"))
            self.assertTrue(f.readline().startswith(b"250"))
            s.sendall(cmds)
            return s, f
        # No number, a huge one, a negative one: the size of what follows
        # is unknown, so 501 and the connection closed (nothing stored).
        for bad in (b"BDAT\r\n", b"BDAT abc LAST\r\n", b"BDAT 99999999999999999999999 LAST\r\n",
                    b"BDAT -5 LAST\r\n", b"BDAT 5 LAST junk\r\n"):
            s, f = talk(bad + b"NOOP\r\n")
            reply = f.readline()
            self.assertTrue(reply.startswith(b"501 5.5.4 "), (bad, reply))
            self.assertEqual(f.readline(), b"", bad)
            s.close()
        # More bytes than announced: the surplus is read as a command.
        s, f = talk(b"BDAT 5 LAST\r\nHello" + b"GARBAGE\r\nNOOP\r\n")
        self.assertTrue(f.readline().startswith(b"250"))   # the 5-byte message
        self.assertTrue(f.readline()[:1] == b"5")           # GARBAGE
        self.assertTrue(f.readline().startswith(b"250"))   # NOOP
        s.close()
        # Fewer bytes than announced, then the client goes: nothing stored,
        # the server carries on.
        before = len(uids(RECEIVER, "carol@remote-a.test"))
        s, f = talk(b"BDAT 100000 LAST\r\nshort")
        s.close()
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
            self.assertEqual(c.noop()[0], 250)
        self.assertEqual(len(uids(RECEIVER, "carol@remote-a.test")), before)

    @unittest.skipUnless(have_dkimpy(), "python3-dkim not installed")
    def test_dkim_signatures_verify(self):
        for domain, user, kind in (("example.org", ALICE, "rsa"), ("roost.test", DAN, "ed25519")):
            res = self.srv.cli("dkim", "keygen", domain, kind)
            self.assertTrue(res.stdout.startswith("roost._domainkey.%s. IN TXT" % domain))
            record = "".join(re.findall(r'"([^"]*)"', res.stdout))
            self.assertTrue(record.startswith("v=DKIM1; k=%s; p=" % kind), record)
            again = self.srv.cli("dkim", "keygen", domain, kind, check=False)
            self.assertNotEqual(again.returncode, 0, "an existing key is kept")
            data, msgid = message("dkim %s" % kind, sender=user,
                                  body="Line  one \t \r\n\r\n.dot line\r\n\r\n\r\n")
            submit(self.srv, user, ["carol@remote-a.test"], data, user=user)
            got = wait_for(lambda: with_msgid(RECEIVER, "carol@remote-a.test", msgid))[0]
            self.assertIn(("a=%s-sha256; c=relaxed/relaxed; d=%s; s=roost;" % (kind, domain))
                          .encode(), got)
            res = subprocess.run([SYSTEM_PYTHON, "-c", DKIM_VERIFY, record,
                                  "roost._domainkey." + domain], input=got, capture_output=True,
                                 timeout=60)
            self.assertEqual(res.returncode, 0, res.stderr.decode() + got.decode())
            # A changed body fails: the verifier is really checking.
            res = subprocess.run([SYSTEM_PYTHON, "-c", DKIM_VERIFY, record,
                                  "roost._domainkey." + domain],
                                 input=got.replace(b".dot line", b".dot lime"),
                                 capture_output=True, timeout=60)
            self.assertNotEqual(res.returncode, 0)


class RelaySmarthostTest(unittest.TestCase):
    """[relay] smarthost: everything through one host, with TLS and AUTH."""

    def test_smarthost_with_tls_and_auth(self):
        isp = RoostServer(backend=BACKENDS[0], listeners=("submission",),
                          users={ALICE: "isp-password", "carol@remote-a.test": "c"},
                          conf={"smtp": {"domains": "remote-a.test"},
                                "server": {"hostname": "isp.test"}})
        with isp:
            srv = start_sender(smarthost="127.0.0.1:%d" % isp.port("submission"),
                               smarthost_user=ALICE, smarthost_password="isp-password",
                               smarthost_tls_verify="no")
            with srv:
                data, msgid = message("via the isp")
                submit(srv, ALICE, ["carol@remote-a.test"], data)
                wait_for(lambda: with_msgid(isp, "carol@remote-a.test", msgid))
                line = wait_for(lambda: deliver_lines(srv, "carol@remote-a.test"))[-1]
                self.assertRegex(line, r"relay=127\.0\.0\.1 ip=127\.0\.0\.1 tls=unverified "
                                       r"tls_version=TLSv1\.[23] code=250 status=sent")
                self.assertRegex(isp.log(), r"event=login conn=\d+ .*user=alice@example\.org")


class RelayLifetimeTest(unittest.TestCase):
    def test_delay_warning_then_expiry_bounce(self):
        srv = start_sender(queue_lifetime="4", delay_warning="1")
        with srv:
            data, msgid = message("doomed", to="x@dead.test")
            submit(srv, ALICE, ["x@dead.test"], data)
            line = wait_for(lambda: [l for l in deliver_lines(srv, "x@dead.test")
                                     if "status=expired" in l])[0]
            qid = re.search(r"queue_id=(\S+)", line).group(1)
            wait_for(lambda: "event=queue_done queue_id=%s " % qid in srv.log())
            dsns = [m for m in messages_of(srv, ALICE) if msgid.encode() in m]
            kinds = sorted(re.search(rb"Action: (\w+)", m).group(1) for m in dsns)
            self.assertEqual(kinds, [b"delayed", b"failed"])
            failed = [m for m in dsns if b"Action: failed" in m][0]
            self.assertIn(b"expired", failed)
            self.assertIn(b"Status: 5.4.7", failed)  # delivery time expired


    def test_held_entry_expires(self):
        """A held entry is not tried, but its lifetime ends all the same:
        the engine wakes for it (the time index, not an attempt) and
        bounces it."""
        srv = start_sender(queue_lifetime="6", delay_warning="0", retry_min="30",
                           retry_max="60")
        with srv:
            data, msgid = message("held and doomed", to="x@dead.test")
            submit(srv, ALICE, ["x@dead.test"], data)
            line = wait_for(lambda: [l for l in deliver_lines(srv, "x@dead.test")
                                     if "status=deferred" in l])[0]
            qid = re.search(r"queue_id=(\S+)", line).group(1)
            srv.cli("queue", "hold", qid)
            self.assertIn("held: yes", srv.cli("queue", "show", qid).stdout)
            line = wait_for(lambda: [l for l in deliver_lines(srv, "x@dead.test")
                                     if "status=expired" in l], timeout=30)[0]
            self.assertIn("(held)", line)
            self.assertIn("relay=- ", line)
            wait_for(lambda: "event=queue_done queue_id=%s " % qid in srv.log())
            # One attempt only: held, it was never tried again.
            self.assertEqual(len([l for l in deliver_lines(srv, "x@dead.test")
                                  if "status=deferred" in l]), 1)
            dsn = wait_for(lambda: [m for m in messages_of(srv, ALICE)
                                    if msgid.encode() in m and b"Action: failed" in m])[0]
            self.assertIn(b"Status: 5.4.7", dsn)
            self.assertIn(b"held", dsn)
            self.assertIn(b"last error", dsn)
            self.assertIn("0 messages in the queue", srv.cli("queue", "list").stdout)


class RelayCrashTest(unittest.TestCase):
    N = 40

    def test_kill_9_loses_and_repeats_nothing(self):
        srv = start_sender(max_per_domain="2")
        try:
            ids = []
            with trusted_client(srv) as s:
                for i in range(self.N):
                    data, msgid = message("crash %d" % i, sender="someone@outside.test",
                                          to="crash@remote-b.test",
                                          msgid="<crash-%d.%f@outside.test>" % (i, time.time()))
                    s.sendmail("someone@outside.test", ["crash@remote-b.test"], data)
                    ids.append(msgid)
                    if i == self.N // 2:
                        # The queue is busy delivering the first half.
                        wait_for(lambda: "status=sent" in srv.log())
            srv.kill()
            sent_before = len([l for l in deliver_lines(srv, "crash@remote-b.test")
                               if "status=sent" in l])
            self.assertLess(sent_before, self.N, "killed before the queue was drained")
            res = srv.cli("check", check=False)
            self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
            srv.launch()
            wait_for(lambda: len(uids(RECEIVER, "crash@remote-b.test")) >= self.N, timeout=60,
                     what="every message after the restart")
            wait_for(lambda: "0 messages in the queue" in srv.cli("queue", "list").stdout)
            got = messages_of(RECEIVER, "crash@remote-b.test")
            counts = {m: sum(m.encode() in g for g in got) for m in ids}
            self.assertEqual([m for m, c in counts.items() if c == 0], [], "lost messages")
            dups = sum(c - 1 for c in counts.values())
            # SMTP's at-least-once: only a message whose remote 250 came
            # in just before the kill may be sent twice, at most one per
            # connection in flight.
            self.assertLessEqual(dups, 2, counts)
            srv.stop()
        finally:
            srv.kill()
            srv.cleanup()


if __name__ == "__main__":
    unittest.main()
