"""The failed-login delay must not become an oracle.

After one failure from an address, a new connection from it must not learn
whether a password is right sooner than the delay: the right password is
answered no earlier than a wrong one would be (IMAP LOGIN, POP3 PASS, SMTP
AUTH, and SCRAM's server signature). Only lower bounds on times are asserted:
an upper bound would fail on a loaded machine.
"""
import base64
import hashlib
import hmac
import socket
import time
import unittest

import roosttest

DELAY = 1.0  # seconds: fail_delay_initial below
CONF = {"auth": {"fail_delay_initial": "1", "fail_delay_max": "1"}}
USER, RIGHT = "alice@example.org", "alice-secret"


def b64(data):
    return base64.b64encode(data).decode()


class Client:
    """One connection, driven line by line; answer() is the time the reply
    to the last command arrived."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.sock.makefile("rb")

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def line(self):
        line = self.f.readline().decode(errors="replace").rstrip("\r\n")
        if not line:
            raise AssertionError("connection closed")
        return line

    def close(self):
        self.sock.close()


class Imap(Client):
    def __init__(self, port):
        super().__init__(port)
        self.line()

    def attempt(self, password):
        self.send("a LOGIN %s %s" % (USER, password))

    def answer(self):
        line = self.line()
        while line.startswith("* "):
            line = self.line()
        return line.startswith("a OK")


class Pop3(Client):
    def __init__(self, port):
        super().__init__(port)
        self.line()
        self.send("USER " + USER)
        assert self.line().startswith("+OK")

    def attempt(self, password):
        self.send("PASS " + password)

    def answer(self):
        return self.line().startswith("+OK")

    def close(self):
        # QUIT and its answer: the maildrop is unlocked before the next login.
        try:
            self.send("QUIT")
            self.line()
        except (OSError, AssertionError):
            pass
        super().close()


class Smtp(Client):
    def __init__(self, port):
        super().__init__(port)
        self.reply()
        self.send("EHLO client.test")
        self.reply()

    def reply(self):
        while True:
            line = self.line()
            if len(line) < 4 or line[3] != "-":
                return line

    def attempt(self, password):
        self.send("AUTH PLAIN " + b64(("\0%s\0%s" % (USER, password)).encode()))

    def answer(self):
        return self.reply().startswith("235")


class SmtpScram(Smtp):
    """SCRAM-SHA-256: the server signature ("334 v=...") tells a client its
    password was right, so it is the answer that must wait."""

    def attempt(self, password):
        bare = "n=%s,r=clientnonce123" % USER
        self.send("AUTH SCRAM-SHA-256 " + b64(("n,," + bare).encode()))
        first = self.reply()
        assert first.startswith("334 "), first
        server_first = base64.b64decode(first[4:]).decode()
        f = dict(kv.split("=", 1) for kv in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(f["s"]),
                                     int(f["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        final_wo_proof = "c=biws,r=" + f["r"]
        auth_message = ",".join((bare, server_first, final_wo_proof)).encode()
        sig = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
        self.send(b64((final_wo_proof + ",p=" +
                       b64(bytes(a ^ b for a, b in zip(client_key, sig)))).encode()))

    def answer(self):
        rep = self.reply()
        if not rep.startswith("334 ") or not base64.b64decode(rep[4:]).startswith(b"v="):
            return False
        self.send("")
        return self.reply().startswith("235")


def wait_log(srv, text, count, timeout=60):
    deadline = time.monotonic() + timeout
    while srv.log().count(text) < count:
        if time.monotonic() > deadline:
            raise AssertionError("no %d x %r in the log:\n%s" % (count, text, srv.log()[-3000:]))
        time.sleep(0.01)


class TestThrottleOracle(unittest.TestCase):
    def check(self, srv, make):
        """One failure, then the right password and a wrong one on new
        connections, sent before the failure is answered."""
        failures = srv.log().count("event=auth_failed")
        first = make()
        t0 = time.monotonic()
        first.attempt("wrong-1")
        wait_log(srv, "event=auth_failed", failures + 1)
        right, wrong = make(), make()
        right.attempt(RIGHT)
        wrong.attempt("wrong-2")
        ok = right.answer()
        t_right = time.monotonic() - t0
        self.assertTrue(ok, "the right password was refused")
        self.assertFalse(wrong.answer())
        t_wrong = time.monotonic() - t0
        self.assertFalse(first.answer())
        # The right password is not answered before the delay has passed
        # since the failure (it was answered within milliseconds before).
        self.assertGreaterEqual(t_right, DELAY * 0.9)
        self.assertGreaterEqual(t_wrong, DELAY * 0.9)
        for c in (first, right, wrong):
            c.close()
        # Once the turns have passed, a login is answered at once and
        # forgets the address for the next check.
        again = make()
        again.attempt(RIGHT)
        self.assertTrue(again.answer())
        again.close()

    def test_imap_pop3_smtp(self):
        with roosttest.RoostServer(listeners=("imap", "pop3", "submission"), conf=CONF) as srv:
            for name, make in (("imap", lambda: Imap(srv.port("imap"))),
                               ("pop3", lambda: Pop3(srv.port("pop3"))),
                               ("smtp", lambda: Smtp(srv.port("submission")))):
                with self.subTest(proto=name):
                    self.check(srv, make)

    def test_scram_signature(self):
        conf = {"auth": dict(CONF["auth"], password_scheme="SCRAM-SHA-256")}
        with roosttest.RoostServer(listeners=("submission",), conf=conf) as srv:
            self.check(srv, lambda: SmtpScram(srv.port("submission")))

    def test_pop3_in_use_is_no_shortcut(self):
        """A right password for a locked maildrop is refused ([IN-USE]), but
        not before a wrong password would have been answered."""
        with roosttest.RoostServer(listeners=("pop3",), conf=CONF) as srv:
            port = srv.port("pop3")
            holder = Pop3(port)
            holder.attempt(RIGHT)
            self.assertTrue(holder.answer())
            failures = srv.log().count("event=auth_failed")
            first = Pop3(port)
            t0 = time.monotonic()
            first.attempt("wrong-1")
            wait_log(srv, "event=auth_failed", failures + 1)
            probe = Pop3(port)
            probe.attempt(RIGHT)
            reply = probe.line()
            self.assertIn("[IN-USE]", reply)
            self.assertGreaterEqual(time.monotonic() - t0, DELAY * 0.9)
            for c in (holder, first, probe):
                c.close()


if __name__ == "__main__":
    unittest.main()
