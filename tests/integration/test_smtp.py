"""SMTP, submission, smtps and LMTP against a real `roost serve`, with real
clients (smtplib, swaks, curl) and a raw socket for the hostile cases.
Delivered mail is checked through the store with `roost mailbox`."""
import grp
import os
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from roosttest import (BACKENDS, LineClient, RoostServer, SharedServer, tls_context, wait_log,
                       wait_unix)

ALICE = "alice@example.org"
BOB = "bob@example.org"
PASSWORDS = {ALICE: "alice-secret", BOB: "bob-secret"}
LISTENERS = ("smtp", "submission", "smtps", "lmtp")


def start_server(backend=BACKENDS[0], conf=None):
    """A server with the SMTP-family listeners; None when this build has no
    such storage backend (yet)."""
    srv = RoostServer(backend=backend, conf=conf, listeners=LISTENERS)
    try:
        return srv.start()
    except AssertionError:
        log = srv.log()
        srv.cleanup()
        if "unknown backend" in log:
            return None
        if "runtime is not in this build" in log:
            raise unittest.SkipTest("`roost serve` is not wired to the runtime in this build")
        raise


def uids(srv, user, mailbox="INBOX"):
    """[(uid, size)] of the mailbox, via the storage interface."""
    res = srv.cli("mailbox", "uids", user, mailbox, check=False)
    if res.returncode != 0:
        return []
    out = []
    for line in res.stdout.splitlines():
        f = line.split()
        out.append((int(f[0]), int(f[1])))
    return out


def fetch(srv, user, uid, mailbox="INBOX"):
    res = subprocess.run([srv.binary, "mailbox", "fetch", user, mailbox, str(uid), "--config",
                          srv.conf_path], capture_output=True, timeout=30, check=True)
    return res.stdout


def wait_count(srv, user, n, mailbox="INBOX", timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        got = uids(srv, user, mailbox)
        if len(got) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def message(subject, body="Hello.\r\n", sender="sender@remote.example", to=ALICE):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (sender, to, subject, body)).encode()


class Raw(LineClient):
    """A line-level SMTP client that does exactly what it is told."""

    def __init__(self, port, greet=True, tls=False):
        super().__init__(port, timeout=15, tls=tls)
        self.greeting = self.reply() if greet else None

    def reply(self):
        """(code, [text lines]) of one possibly multi-line reply."""
        lines = []
        while True:
            line = self.crlf_line()
            lines.append(line[4:].decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), lines

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def starttls(self):
        self.sock = tls_context().wrap_socket(self.sock)

    def read_all(self):
        """Everything until the server closes."""
        try:
            self.read_to_close()
        except (ConnectionResetError, socket.timeout):
            pass
        data, self.buf = self.buf, b""
        return data


def enh(reply):
    """The enhanced status code of a reply's last line."""
    return reply[1][-1].split(" ", 1)[0]


class SmtpBackendTest(unittest.TestCase):
    """What must hold on every storage backend."""

    def test_backends(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                srv = start_server(backend)
                if srv is None:
                    continue    # backend not in this build
                with srv:
                    self.check_basic(srv)
                    self.check_big(srv)
                    self.check_concurrent(srv)

    def check_basic(self, srv):
        port = srv.port("smtp")
        with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
            code, _ = s.ehlo("client.example")
            self.assertEqual(code, 250)
            for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "starttls",
                        "chunking", "smtputf8", "dsn", "auth"):
                self.assertTrue(s.has_extn(ext), ext)
            body = "line one\r\n.leading dot\r\n..two dots\r\n.\r\nnot the end\r\n"
            s.mail("sender@remote.example")
            s.rcpt(ALICE)
            s.rcpt(BOB)
            code, resp = s.data(message("basic", body))
            self.assertEqual(code, 250, resp)
            m = re.search(rb"delivered as (\w+)", resp)
            self.assertIsNotNone(m, resp)
            qid = m.group(1).decode()
        got = wait_count(srv, ALICE, 1)
        self.assertEqual(len(got), 1)
        self.assertEqual(len(uids(srv, BOB)), 1)
        raw = fetch(srv, ALICE, got[0][0])
        self.assertTrue(raw.startswith(b"Return-Path: <sender@remote.example>\r\nReceived: "),
                        raw[:200])
        self.assertIn(b"from client.example ([127.0.0.1])", raw)
        self.assertIn(("id %s" % qid).encode(), raw)
        # smtplib dot-stuffs, the server undoes it: the text arrives as written
        self.assertIn(b"\r\n.leading dot\r\n..two dots\r\n.\r\nnot the end\r\n", raw)
        self.assertIn(qid, srv.log())

    def check_big(self, srv):
        """Messages past the in-memory threshold (1 MiB) are spooled to a
        file and stored intact, over DATA and over BDAT."""
        line = b"".join(b"%c" % (33 + i % 90) for i in range(998)) + b"\r\n"
        body = b"Subject: big\r\n\r\n" + b"".join(b"%06d" % i + line for i in range(3000))
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=60) as s:
            s.sendmail("big@remote.example", [ALICE], body)
        r = Raw(srv.port("smtp"))
        r.cmd("EHLO x")
        r.cmd("MAIL FROM:<big@remote.example>")
        r.cmd("RCPT TO:<%s>" % ALICE)
        half = len(body) // 2
        r.send(b"BDAT %d\r\n" % half + body[:half])
        self.assertEqual(r.reply()[0], 250)
        r.send(b"BDAT %d LAST\r\n" % (len(body) - half) + body[half:])
        self.assertEqual(r.reply()[0], 250)
        r.close()
        self.assertGreaterEqual(srv.log().count("event=spool "), 2)
        got = uids(srv, ALICE)[-2:]
        for uid, _ in got:
            raw = fetch(srv, ALICE, uid)
            self.assertTrue(raw.endswith(body), (len(raw), len(body)))

    def check_concurrent(self, srv):
        """20 senders x 100 messages, pipelined: each arrives exactly once.
        Every message has its own body length, so the sizes in the store
        tell which ones arrived."""
        port = srv.port("smtp")
        senders, per = 20, 100
        errors = []
        before = {u for u, _ in uids(srv, BOB)}

        def run(i):
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
                    s.ehlo("bulk.example")
                    for j in range(per):
                        pad = "x" * (i * per + j)
                        s.sendmail("bulk@remote.example", [BOB],
                                   message("bulk", "%s\r\n" % pad))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        got = [(u, size) for u, size in wait_count(srv, BOB, len(before) + senders * per)
               if u not in before]
        self.assertEqual(len(got), senders * per)
        sizes = sorted(size for _, size in got)
        base = sizes[0]
        self.assertEqual(sizes, list(range(base, base + senders * per)))


class SmtpTest(SharedServer, unittest.TestCase):
    server_options = {
        "backend": BACKENDS[0], "listeners": LISTENERS,
        "conf": {
            "limits": {"max_recipients": "3", "max_message_size": "20K"},
            # Nothing trusted: loopback clients are "outside" here.
            "smtp": {"max_errors": "8", "trusted_networks": ""},
        },
    }

    def count(self, user=ALICE, mailbox="INBOX"):
        return len(uids(self.srv, user, mailbox))

    def session(self, listener="smtp", ehlo=True):
        r = Raw(self.srv.port(listener))
        if ehlo:
            self.assertEqual(r.cmd("LHLO x" if listener == "lmtp" else "EHLO x")[0], 250)
        return r

    # -- replies and commands --
    def test_every_reply_has_an_enhanced_code(self):
        r = self.session()
        for line, code, ecode in (("NOOP", 250, "2.0.0"), ("HELP", 214, "2.0.0"),
                                  ("VRFY alice", 252, "2.5.0"), ("EXPN list", 502, "5.5.1"),
                                  ("RSET", 250, "2.0.0"), ("FOO", 500, "5.5.1"),
                                  ("RCPT TO:<alice@example.org>", 503, "5.5.1"),
                                  ("DATA", 503, "5.5.1"),
                                  ("MAIL FROM:<a@b.example> BODY=BINARYMIME X=1", 555, "5.5.4")):
            rep = r.cmd(line)
            self.assertEqual((rep[0], enh(rep)), (code, ecode), line)
        self.assertEqual(r.cmd("QUIT")[0], 221)
        r.close()

    def test_recipients(self):
        r = self.session()
        self.assertEqual(r.cmd("MAIL FROM:<s@remote.example>")[0], 250)
        rep = r.cmd("RCPT TO:<nobody@example.org>")
        self.assertEqual((rep[0], enh(rep)), (550, "5.1.1"))
        rep = r.cmd("RCPT TO:<someone@elsewhere.example>")
        self.assertEqual((rep[0], enh(rep)), (554, "5.7.1"))
        rep = r.cmd("RCPT TO:<Alice@Example.ORG> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Alice+40x")
        self.assertEqual((rep[0], enh(rep)), (250, "2.1.5"))
        rep = r.cmd("RCPT TO:<a@b.example> XFOO=1")
        self.assertEqual(rep[0], 555)
        r.cmd("QUIT")
        r.close()

    def test_too_many_recipients_keeps_earlier(self):
        users = [ALICE, BOB, "alice+x@example.org", "alice+y@example.org"]
        a0, b0 = self.count(ALICE), self.count(BOB)
        r = self.session()
        r.send(b"MAIL FROM:<s@remote.example>\r\n" +
               b"".join(b"RCPT TO:<%s>\r\n" % u.encode() for u in users) + b"DATA\r\n")
        self.assertEqual(r.reply()[0], 250)
        for _ in range(3):
            self.assertEqual(r.reply()[0], 250)
        rep = r.reply()
        self.assertEqual((rep[0], enh(rep)), (452, "4.5.3"))
        self.assertEqual(r.reply()[0], 354)
        r.send(b"Subject: many\r\n\r\nx\r\n.\r\n")
        self.assertEqual(r.reply()[0], 250)
        r.close()
        # alice was named three times, she gets one copy
        self.assertEqual(self.count(ALICE), a0 + 1)
        self.assertEqual(self.count(BOB), b0 + 1)

    def test_size_limits_stay_in_sync(self):
        r = self.session()
        rep = r.cmd("MAIL FROM:<s@remote.example> SIZE=999999")
        self.assertEqual((rep[0], enh(rep)), (552, "5.3.4"))
        before = self.count()
        self.assertEqual(r.cmd("MAIL FROM:<s@remote.example> SIZE=100")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 40 + b".\r\n")
        rep = r.reply()
        self.assertEqual((rep[0], enh(rep)), (552, "5.3.4"))
        self.assertEqual(r.cmd("NOOP")[0], 250)
        # BDAT over the limit: read, answered, still in sync
        self.assertEqual(r.cmd("MAIL FROM:<s@remote.example>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
        chunk = b"z" * 30000
        r.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        self.assertEqual(r.reply()[0], 552)
        self.assertEqual(r.cmd("NOOP")[0], 250)
        r.close()
        self.assertEqual(self.count(), before)

    def test_long_line(self):
        r = self.session()
        rep = r.cmd("NOOP " + "a" * 20000)
        self.assertEqual((rep[0], enh(rep)), (500, "5.5.2"))
        self.assertEqual(r.cmd("NOOP")[0], 250)
        r.close()

    def test_too_many_errors(self):
        r = self.session()
        codes = [r.cmd("BOGUS")[0] for _ in range(7)]
        self.assertEqual(codes, [500] * 7)
        r.send(b"BOGUS\r\n")
        data = r.read_all()
        self.assertTrue(data.startswith(b"500 "), data)
        self.assertIn(b"\r\n421 4.7.0 ", data)
        r.close()

    def test_pipelining_before_greeting_refused(self):
        before = self.count()
        r = Raw(self.srv.port("smtp"), greet=False)
        r.send(b"EHLO spam\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\n"
               b"DATA\r\nSubject: spam\r\n\r\nspam\r\n.\r\nQUIT\r\n")
        data = r.read_all()
        r.close()
        self.assertTrue(data.startswith(b"220 "), data)
        self.assertIn(b"554 5.5.0", data)
        self.assertNotIn(b"354", data)
        self.assertEqual(self.count(), before)

    def test_bdat(self):
        before = self.count()
        r = self.session()
        self.assertEqual(r.cmd("MAIL FROM:<s@remote.example> BODY=8BITMIME")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
        part1 = b"Subject: chunked\r\n\r\n"
        part2 = b"..not unstuffed\r\n.\r\nstill body\r\n"
        r.send(b"BDAT %d\r\n" % len(part1) + part1 + b"BDAT %d LAST\r\n" % len(part2) + part2)
        self.assertEqual(r.reply()[0], 250)
        rep = r.reply()
        self.assertEqual((rep[0], enh(rep)), (250, "2.0.0"))
        # BDAT without a transaction: the chunk is still consumed
        r.send(b"BDAT 10 LAST\r\nNOOP\r\nNOOP")
        self.assertEqual(r.reply()[0], 503)
        self.assertEqual(r.cmd("NOOP")[0], 250)
        r.close()
        got = uids(self.srv, ALICE)
        self.assertEqual(len(got), before + 1)
        raw = fetch(self.srv, ALICE, got[-1][0])
        self.assertTrue(raw.endswith(part1 + part2), raw[-200:])

    def test_smuggling(self):
        """Each smuggling sequence in reject mode: the message is refused
        (550) and the smuggled commands are never run."""
        seqs = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n", b"\r\n.\n",
                b"\n.\r", b"\r\n.\r\r\n"]
        before_a, before_b = self.count(ALICE), self.count(BOB)
        for seq in seqs:
            r = self.session()
            self.assertEqual(r.cmd("MAIL FROM:<s@remote.example>")[0], 250)
            self.assertEqual(r.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
            self.assertEqual(r.cmd("DATA")[0], 354)
            r.send(b"Subject: smuggle\r\n\r\nhello" + seq +
                   b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\n"
                   b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
            rep = r.reply()
            self.assertEqual((rep[0], enh(rep)), (550, "5.6.0"), seq)
            self.assertEqual(r.cmd("RSET")[0], 250)
            r.close()
        self.assertEqual(self.count(ALICE), before_a)
        self.assertEqual(self.count(BOB), before_b)

    def test_pipelined_bulk(self):
        """RFC 2920 groups: MAIL, RCPT, DATA in one write; the body and the
        next group's commands in the next."""
        n = 50
        before = self.count(BOB)
        r = self.session()
        group = b"MAIL FROM:<p@remote.example>\r\nRCPT TO:<%s>\r\nDATA\r\n" % BOB.encode()
        r.send(group)
        for i in range(n):
            self.assertEqual([r.reply()[0] for _ in range(3)], [250, 250, 354])
            body = b"Subject: pipelined %d\r\n\r\nbody\r\n.\r\n" % i
            r.send(body + (group if i + 1 < n else b"QUIT\r\n"))
            self.assertEqual(r.reply()[0], 250)
        self.assertEqual(r.reply()[0], 221)
        r.close()
        self.assertEqual(self.count(BOB), before + n)

    def test_lmtp(self):
        a0, b0 = self.count(ALICE), self.count(BOB)
        with smtplib.LMTP("127.0.0.1", self.srv.port("lmtp"), timeout=15) as s:
            s.sendmail("s@remote.example", [ALICE], message("lmtp one"))
        r = self.session("lmtp")
        self.assertEqual(r.cmd("EHLO x")[0], 500)
        self.assertEqual(r.cmd("MAIL FROM:<s@remote.example>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<nobody@example.org>")[0], 550)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % BOB)[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: lmtp two\r\n\r\nx\r\n.\r\n")
        first, second = r.reply(), r.reply()
        self.assertEqual(first[0], 250)
        self.assertIn(ALICE, first[1][0])
        self.assertEqual(second[0], 250)
        self.assertIn(BOB, second[1][0])
        self.assertEqual(r.cmd("QUIT")[0], 221)
        r.close()
        self.assertEqual(self.count(ALICE), a0 + 2)
        self.assertEqual(self.count(BOB), b0 + 1)

    def test_lmtp_rejected_message_gets_a_reply_per_recipient(self):
        # RFC 2033 4.2: after the data, one reply per accepted recipient,
        # refusals included; a single 552 left the client waiting for the
        # second and taking our reply to its next command for it.
        a0, b0 = self.count(ALICE), self.count(BOB)
        big = b"Subject: big\r\n\r\n" + b"x" * 78 + b"\r\n"
        big *= 300                                  # > max_message_size 20K
        for bare in (False, True):
            r = self.session("lmtp")
            self.assertEqual(r.cmd("MAIL FROM:<s@remote.example>")[0], 250)
            self.assertEqual(r.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
            self.assertEqual(r.cmd("RCPT TO:<%s>" % BOB)[0], 250)
            self.assertEqual(r.cmd("DATA")[0], 354)
            r.send(b"Subject: bare\n\nx\r\n.\r\n" if bare else big + b".\r\n")
            want = 550 if bare else 552
            self.assertEqual((r.reply()[0], r.reply()[0]), (want, want))
            self.assertEqual(r.cmd("NOOP")[0], 250)
            r.close()
        r = self.session("lmtp")
        self.assertEqual(r.cmd("MAIL FROM:<s@remote.example>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % BOB)[0], 250)
        r.send(b"BDAT %d LAST\r\n" % len(big) + big)
        self.assertEqual((r.reply()[0], r.reply()[0]), (552, 552))
        self.assertEqual(r.cmd("NOOP")[0], 250)
        r.close()
        self.assertEqual((self.count(ALICE), self.count(BOB)), (a0, b0))

    def test_lmtp_unknown_recipients_are_not_errors(self):
        r = self.session("lmtp")
        self.assertEqual(r.cmd("MAIL FROM:<s@remote.example>")[0], 250)
        for i in range(12):     # more than max_errors
            self.assertEqual(r.cmd("RCPT TO:<gone%d@example.org>" % i)[0], 550)
        self.assertEqual(r.cmd("NOOP")[0], 250)
        r.close()

    def test_lmtp_sees_users_added_and_removed_while_running(self):
        # An LMTP RCPT may run on the event loop (LMDB) from the user table
        # in memory, but only while the passwd file is unchanged: a user
        # added or removed by another process counts at the next RCPT.
        who = "late-lmtp@example.org"
        r = self.session("lmtp")
        self.assertEqual(r.cmd("MAIL FROM:<s@remote.example>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % who)[0], 550)
        self.srv.add_user(who, "pw")
        try:
            for _ in range(2):
                self.assertEqual(r.cmd("RCPT TO:<%s>" % who)[0], 250)
        finally:
            self.srv.cli("user", "del", who)
        self.assertEqual(r.cmd("RCPT TO:<%s>" % who)[0], 550)
        self.assertEqual(r.cmd("RSET")[0], 250)
        r.close()

    def test_lmtp_data_without_recipients_is_503(self):
        # RFC 2033 4.2: with no successful RCPT, DATA MUST fail with 503
        # over LMTP (SMTP may answer 554 instead, and does).
        r = self.session("lmtp")
        self.assertEqual(r.cmd("MAIL FROM:<s@remote.example>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<nobody@example.org>")[0], 550)
        self.assertEqual(r.cmd("DATA")[0], 503)
        r.send(b"BDAT 3 LAST\r\nabc")
        self.assertEqual(r.reply()[0], 503)
        self.assertEqual(r.cmd("NOOP")[0], 250)
        r.close()
        r = self.session("smtp")
        self.assertEqual(r.cmd("MAIL FROM:<s@remote.example>")[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 554)
        r.close()

    def test_bdat_as_auth_response_stays_in_sync(self):
        r = self.session("submission")
        self.assertEqual(r.cmd("AUTH PLAIN")[0], 334)
        r.send(b"BDAT 5\r\nMAIL NOOP\r\n")
        self.assertEqual(r.reply()[0], 501)    # not base64: the exchange ends
        self.assertEqual(r.reply()[0], 503)    # the chunk was read and dropped
        self.assertEqual(r.reply()[0], 250)
        r.close()

    # -- TLS and AUTH --
    def test_starttls_received_and_pipelined_input_discarded(self):
        r = self.session()
        r.send(b"STARTTLS\r\nMAIL FROM:<evil@remote.example>\r\n")
        rep = r.reply()
        self.assertEqual((rep[0], enh(rep)), (220, "2.0.0"))
        r.buf = b""
        r.starttls()
        # The pipelined MAIL was thrown away with the plaintext buffer.
        rep = r.cmd("RCPT TO:<%s>" % ALICE)
        self.assertEqual(rep[0], 503)
        r.close()

        before = self.count()
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.starttls(context=tls_context())
            s.ehlo("tls.example")
            self.assertFalse(s.has_extn("starttls"))
            s.sendmail("s@remote.example", [ALICE], message("over tls"))
        got = wait_count(self.srv, ALICE, before + 1)
        raw = fetch(self.srv, ALICE, got[-1][0])
        self.assertRegex(raw, rb"with ESMTPS\r\n\t\(version=TLSv1\.[23] cipher=\S+\)")

    def test_starttls_forgets_an_earlier_login(self):
        # RFC 3207 4.2: after STARTTLS the client starts over, AUTH included.
        with smtplib.SMTP("127.0.0.1", self.srv.port("submission"), timeout=15) as s:
            s.ehlo()
            s.login(ALICE, PASSWORDS[ALICE])
            s.starttls(context=tls_context())
            s.ehlo()
            code, _ = s.mail("sender@remote.example")
            self.assertEqual(code, 530)
            s.login(ALICE, PASSWORDS[ALICE])
            code, _ = s.mail(ALICE)
            self.assertEqual(code, 250)

    def test_submission_requires_auth(self):
        with smtplib.SMTP("127.0.0.1", self.srv.port("submission"), timeout=15) as s:
            s.ehlo("sub.example")
            code, resp = s.mail("alice@example.org")
            self.assertEqual(code, 530)
            self.assertIn(b"5.7.0", resp)
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.login(ALICE, "wrong")
            self.assertEqual(cm.exception.smtp_code, 535)
        before = self.count(BOB)
        with smtplib.SMTP("127.0.0.1", self.srv.port("submission"), timeout=15) as s:
            s.starttls(context=tls_context())
            s.login(ALICE, PASSWORDS[ALICE])
            s.mail(ALICE)
            code, resp = s.rcpt("friend@elsewhere.example")
            self.assertEqual(code, 250)  # queued for relay after AUTH
            self.assertEqual(s.rcpt(BOB)[0], 250)
            self.assertEqual(s.data(message("submitted", sender=ALICE, to=BOB))[0], 250)
        got = wait_count(self.srv, BOB, before + 1)
        raw = fetch(self.srv, BOB, got[-1][0])
        self.assertIn(b"with ESMTPSA", raw)

    def test_smtps_auth_login(self):
        with smtplib.SMTP_SSL("127.0.0.1", self.srv.port("smtps"), timeout=15,
                              context=tls_context()) as s:
            s.ehlo("ssl.example")
            self.assertFalse(s.has_extn("starttls"))
            s.login(BOB, PASSWORDS[BOB])  # smtplib picks a mechanism it likes
            self.assertEqual(s.noop()[0], 250)
        r = Raw(self.srv.port("smtps"), tls=True)
        r.cmd("EHLO x")
        import base64
        self.assertEqual(r.cmd("AUTH LOGIN")[0], 334)
        self.assertEqual(r.cmd(base64.b64encode(ALICE.encode()).decode())[0], 334)
        rep = r.cmd(base64.b64encode(PASSWORDS[ALICE].encode()).decode())
        self.assertEqual((rep[0], enh(rep)), (235, "2.7.0"))
        r.close()

    def test_recipient_delimiter_folder(self):
        self.srv.cli("mailbox", "create", ALICE, "lists")
        lists0, inbox0 = self.count(ALICE, "lists"), self.count(ALICE)
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.sendmail("s@remote.example", ["alice+lists@example.org"], message("to lists"))
            s.sendmail("s@remote.example", ["alice+nofolder@example.org"], message("to inbox"))
        self.assertEqual(self.count(ALICE, "lists"), lists0 + 1)
        self.assertEqual(self.count(ALICE), inbox0 + 1)

    def test_recipient_delimiter_cannot_leave_the_users_store(self):
        # The detail names one of the recipient's own existing folders or
        # nothing: paths that try to climb out of the user's storage (or
        # into another user's) end in the recipient's INBOX.
        self.srv.cli("mailbox", "create", BOB, "lists")
        a0, b0, bl0 = self.count(ALICE), self.count(BOB), self.count(BOB, "lists")
        for detail in ("../bob", "../../bob/lists", "/bob/lists", "..", "INBOX/..",
                       "~bob/lists"):
            res = self.srv.cli("deliver", "-a", "alice+%s@example.org" % detail,
                               input=b"Subject: x\n\nx\n", check=False)
            self.assertEqual(res.returncode, 0, (detail, res.stderr))
        self.assertEqual(self.count(ALICE), a0 + 6)
        self.assertEqual((self.count(BOB), self.count(BOB, "lists")), (b0, bl0))

    def test_user_named_without_domain(self):
        self.srv.add_user("carol", "carol-secret")
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.sendmail("s@remote.example", ["carol@example.org", "carol+x@roost.test"],
                       message("to carol"))
        res = self.srv.cli("deliver", "-a", "carol", input=b"Subject: x\n\nx\n", check=False)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(len(uids(self.srv, "carol")), 2)

    def test_deliver_refuses_control_bytes_in_recipient(self):
        # The detail after the delimiter is only a folder hint, so an
        # address with CR LF in it used to resolve to alice's INBOX and its
        # text went into "Received: ... for <...>": a header injection by
        # whoever picks the envelope recipient of `roost deliver`.
        n0 = self.count(ALICE)
        for bad in ("alice+\r\nX-Injected: yes@example.org", "alice+a\tb@example.org",
                    "alice\x7f@example.org"):
            res = self.srv.cli("deliver", "-a", bad, input=b"Subject: x\n\nx\n", check=False)
            self.assertNotEqual(res.returncode, 0, bad)
        self.assertEqual(self.count(ALICE), n0)
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.sendmail("s@remote.example", ["alice+x@example.org"], message("still fine"))
        self.assertEqual(self.count(ALICE), n0 + 1)

    def test_dsn_and_utf8_kept(self):
        before = self.count()
        r = self.session()
        self.assertEqual(r.cmd("MAIL FROM:<j\u00f6rg@remote.example>")[0], 553)
        self.assertEqual(r.cmd("MAIL FROM:<j\u00f6rg@remote.example> SMTPUTF8 RET=HDRS "
                               "ENVID=QQ314159")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<%s> NOTIFY=SUCCESS,DELAY "
                               "ORCPT=rfc822;alice+40example.org" % ALICE)[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send("Subject: caf\u00e9\r\n\r\n\u00fcnicode\r\n.\r\n".encode())
        self.assertEqual(r.reply()[0], 250)
        r.close()
        got = wait_count(self.srv, ALICE, before + 1)
        raw = fetch(self.srv, ALICE, got[-1][0])
        self.assertIn("Return-Path: <j\u00f6rg@remote.example>".encode(), raw)
        self.assertIn(b"with UTF8SMTP", raw)
        self.assertIn(b"X-Roost-DSN: ENVID=QQ314159; RET=HDRS; NOTIFY=SUCCESS,DELAY; "
                      b"ORCPT=rfc822;alice+40example.org\r\n", raw)

    # -- real clients --
    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks(self):
        before = self.count()
        for extra in ([], ["--pipeline"], ["-tls"]):
            res = subprocess.run(["swaks", "--server", "127.0.0.1", "--port",
                                  str(self.srv.port("smtp")), "--from", "s@remote.example",
                                  "--to", ALICE, "--helo", "swaks.example"] + extra,
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        res = subprocess.run(["swaks", "--server", "127.0.0.1", "--port",
                              str(self.srv.port("submission")), "--from", ALICE, "--to", ALICE,
                              "-tls", "--auth", "PLAIN", "--auth-user", ALICE,
                              "--auth-password", PASSWORDS[ALICE]],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(self.count(), before + 4)

    @unittest.skipUnless(shutil.which("curl"), "curl not installed")
    def test_curl(self):
        before = self.count()
        msg = message("from curl")
        res = subprocess.run(["curl", "-sS", "smtp://127.0.0.1:%d" % self.srv.port("smtp"),
                              "--mail-from", "s@remote.example", "--mail-rcpt", ALICE, "-T", "-"],
                             input=msg, capture_output=True, timeout=60)
        self.assertEqual(res.returncode, 0, res.stderr)
        res = subprocess.run(["curl", "-sS", "-k", "smtps://127.0.0.1:%d" % self.srv.port("smtps"),
                              "--user", "%s:%s" % (ALICE, PASSWORDS[ALICE]),
                              "--mail-from", ALICE, "--mail-rcpt", ALICE, "-T", "-"],
                             input=message("from curl", sender=ALICE), capture_output=True,
                             timeout=60)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(self.count(), before + 2)

    # -- roost deliver --
    def test_roost_deliver(self):
        before = self.count()
        msg = b"Subject: via deliver\n\nline\n"
        res = self.srv.cli("deliver", "-f", "mda@remote.example", "-a", ALICE, input=msg,
                           check=False)
        self.assertEqual(res.returncode, 0, res.stderr)
        got = uids(self.srv, ALICE)
        self.assertEqual(len(got), before + 1)
        raw = fetch(self.srv, ALICE, got[-1][0])
        self.assertTrue(raw.startswith(b"Return-Path: <mda@remote.example>\r\n"), raw[:100])
        self.assertTrue(raw.endswith(b"Subject: via deliver\r\n\r\nline\r\n"), raw)
        res = self.srv.cli("deliver", "-a", "nobody@example.org", input=msg, check=False)
        self.assertEqual(res.returncode, 67)   # EX_NOUSER
        res = self.srv.cli("deliver", input=msg, check=False)
        self.assertEqual(res.returncode, 64)   # EX_USAGE
        res = self.srv.cli("deliver", "-a", ALICE, input=b"x" * 30000, check=False)
        self.assertEqual(res.returncode, 65)   # EX_DATAERR: over max_message_size
        self.assertEqual(self.count(), before + 1)


class SmtpStorageFailureTest(unittest.TestCase):
    """Storage trouble answers 451 and leaves nothing half-stored: a copy
    made for one recipient is taken back when another's failed (SMTP), while
    LMTP answers per recipient. Maildir lets the test break one user's store
    (tmp/ replaced by a file)."""

    def test_storage_failure(self):
        srv = start_server("maildir")
        if srv is None:
            self.skipTest("maildir backend not in this build")
        with srv:
            with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=15) as s:
                s.sendmail("s@remote.example", [ALICE, BOB], message("setup"))
            tmp = os.path.join(srv.data_dir, "maildir", BOB, "tmp")
            self.assertTrue(os.path.isdir(tmp), tmp)
            os.rename(tmp, tmp + ".away")
            with open(tmp, "w") as f:
                f.write("not a directory\n")
            try:
                with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=15) as s:
                    s.ehlo("x")
                    s.mail("s@remote.example")
                    s.rcpt(ALICE)
                    s.rcpt(BOB)
                    code, resp = s.data(message("fails for bob"))
                    self.assertEqual(code, 451, resp)
                    self.assertIn(b"4.3.0", resp)
                self.assertEqual(len(uids(srv, ALICE)), 1)   # taken back
                self.assertEqual(len(uids(srv, BOB)), 1)
                r = Raw(srv.port("lmtp"))
                r.cmd("LHLO x")
                r.cmd("MAIL FROM:<s@remote.example>")
                r.cmd("RCPT TO:<%s>" % ALICE)
                r.cmd("RCPT TO:<%s>" % BOB)
                r.cmd("DATA")
                r.send(b"Subject: lmtp\r\n\r\nx\r\n.\r\n")
                self.assertEqual(r.reply()[0], 250)
                rep = r.reply()
                self.assertEqual((rep[0], enh(rep)), (451, "4.3.0"))
                r.close()
                self.assertEqual(len(uids(srv, ALICE)), 2)
                res = srv.cli("deliver", "-a", BOB, input=b"Subject: x\n\nx\n", check=False)
                self.assertEqual(res.returncode, 75, res.stderr)   # EX_TEMPFAIL
            finally:
                os.unlink(tmp)
                os.rename(tmp + ".away", tmp)
            with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=15) as s:
                s.sendmail("s@remote.example", [ALICE, BOB], message("retry"))
            self.assertEqual(len(uids(srv, ALICE)), 3)
            self.assertEqual(len(uids(srv, BOB)), 2)
            res = srv.cli("deliver", "-a", BOB, input=b"Subject: x\n\nx\n", check=False)
            self.assertEqual(res.returncode, 0, res.stderr)


def host_address():
    """A non-loopback address of this host, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))     # no packet is sent
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


class SmtpNonLoopbackTest(unittest.TestCase):
    """Off loopback, plaintext AUTH waits for TLS and submission needs it."""

    def test_auth_needs_tls(self):
        addr = host_address()
        if addr is None:
            self.skipTest("no non-loopback address")
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        srv = RoostServer(backend=BACKENDS[0], listeners=("smtp",),
                          conf={"listen": {"submission": "*:%d" % port}})
        with srv:
            r = Raw((addr, port))
            code, lines = r.cmd("EHLO x")
            self.assertEqual(code, 250)
            self.assertIn("STARTTLS", lines)
            self.assertFalse(any(line.startswith("AUTH") for line in lines), lines)
            rep = r.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXNlY3JldA==")
            self.assertEqual((rep[0], enh(rep)), (538, "5.7.11"))
            rep = r.cmd("MAIL FROM:<%s>" % ALICE)
            self.assertEqual((rep[0], enh(rep)), (530, "5.7.0"))
            self.assertEqual(r.cmd("STARTTLS")[0], 220)
            r.starttls()
            code, lines = r.cmd("EHLO x")
            self.assertIn("AUTH PLAIN LOGIN", lines)
            rep = r.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXNlY3JldA==")
            self.assertEqual((rep[0], enh(rep)), (235, "2.7.0"))
            self.assertEqual(r.cmd("MAIL FROM:<%s>" % ALICE)[0], 250)
            r.close()


class LmtpUnixSocketTest(unittest.TestCase):
    def test_lmtp_over_unix_socket(self):
        sockdir = tempfile.mkdtemp(prefix="roost-lmtp-")
        path = os.path.join(sockdir, "lmtp.sock")
        try:
            srv = RoostServer(backend=BACKENDS[0], listeners=("smtp",),
                              conf={"listen": {"lmtp": "unix:" + path}})
            with srv:
                self.assertTrue(wait_unix(path), "the LMTP socket never accepted")
                with smtplib.LMTP(path, timeout=15) as s:
                    s.sendmail("s@remote.example", [ALICE], message("over a unix socket"))
                got = uids(srv, ALICE)
                self.assertEqual(len(got), 1)
                self.assertIn(b"with LMTP", fetch(srv, ALICE, got[0][0]))
        finally:
            shutil.rmtree(sockdir, ignore_errors=True)


class LmtpDefaultSocketTest(unittest.TestCase):
    """LMTP hands mail to any user past every SMTP check: by default it is a
    unix socket under data_dir, not a TCP port any local process reaches."""

    def test_default_is_a_unix_socket_under_data_dir(self):
        srv = RoostServer(backend=BACKENDS[0], listeners=("smtp",),
                          conf={"listen": {"lmtp": None}})
        with srv:
            path = os.path.join(srv.data_dir, "lmtp.sock")
            self.assertTrue(wait_unix(path), "the default LMTP socket never accepted")
            st = os.stat(path)
            self.assertTrue(stat.S_ISSOCK(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
            # the socket accepts once listen() returned; its log line
            # follows (wait for it, or a loaded machine reads the log first)
            self.assertTrue(wait_log(srv, r"event=listen proto=lmtp addr=unix:%s" % re.escape(path),
                                     timeout=60), srv.log())
            self.assertNotRegex(srv.log(), r"proto=lmtp addr=[^u]")
            with smtplib.LMTP(path, timeout=15) as s:
                s.sendmail("s@remote.example", [ALICE], message("default socket"))
            self.assertEqual(len(uids(srv, ALICE)), 1)
            self.assertIn("lmtp = unix:%s" % path, srv.cli("config").stdout)
        self.assertFalse(os.path.exists(path), "the socket outlived the server")

    def test_mode_and_group(self):
        group = grp.getgrgid(os.getgid()).gr_name
        if os.geteuid() == 0:  # root may give the socket to any group
            for name in ("nogroup", "daemon", "mail"):
                try:
                    grp.getgrnam(name)
                    group = name
                    break
                except KeyError:
                    pass
        srv = RoostServer(backend=BACKENDS[0], listeners=("smtp",),
                          conf={"listen": {"lmtp": None, "lmtp_socket_mode": "0600",
                                           "lmtp_socket_group": group}})
        with srv:
            path = os.path.join(srv.data_dir, "lmtp.sock")
            self.assertTrue(wait_unix(path))
            st = os.stat(path)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
            self.assertEqual(st.st_gid, grp.getgrnam(group).gr_gid)

    def test_unknown_group_stops_the_start(self):
        srv = RoostServer(backend=BACKENDS[0], listeners=(),
                          conf={"listen": {"lmtp": None,
                                           "lmtp_socket_group": "no-such-group-here"}})
        res = srv.serve_refused()
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("unknown group no-such-group-here", res.stdout + res.stderr)


class SmtpNormalizeTest(unittest.TestCase):
    def test_bare_lf_normalized_one_message(self):
        with start_server(conf={"smtp": {"bare_lf": "normalize"}}) as srv:
            r = Raw(srv.port("smtp"))
            r.cmd("EHLO x")
            for seq in (b"\n.\n", b"\r.\r", b"\r\n.\n"):
                self.assertEqual(r.cmd("MAIL FROM:<s@remote.example>")[0], 250)
                self.assertEqual(r.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
                self.assertEqual(r.cmd("DATA")[0], 354)
                r.send(b"Subject: n\r\n\r\nhello" + seq +
                       b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\n"
                       b"DATA\r\nevil\r\n.\r\n")
                self.assertEqual(r.reply()[0], 250)
                self.assertEqual(r.cmd("NOOP")[0], 250)
            r.close()
            got = uids(srv, ALICE)
            self.assertEqual(len(got), 3)
            self.assertEqual(uids(srv, BOB), [])
            raw = fetch(srv, ALICE, got[0][0])
            self.assertNotIn(b"\n.\n", raw)
            self.assertIsNone(re.search(rb"[^\r]\n|\r[^\n]", raw))


if __name__ == "__main__":
    unittest.main()
