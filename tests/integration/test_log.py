"""Log lines keep one field per key whatever a client sends: a forged
envelope sender, a user name with blanks and "key=value" in it, bytes that
are not UTF-8. Values from clients are quoted and escaped (log_quote)."""
import base64
import os
import re
import socket
import subprocess
import time
import unittest

import roosttest

CONF = {"auth": {"fail_delay_initial": "1", "fail_delay_max": "1"}}
FORGED = '"x> status=ok user=bob@example.org id=FAKE"@evil.org'

# A value: a quoted string (with backslash escapes) or a run without blanks.
FIELD = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "]*)(?= |$)')


def fields(line):
    """key=value fields after the timestamp and level; fails if something in
    the line is neither."""
    rest = line.split(" ", 2)[2]
    keys = []
    pos = 0
    while pos < len(rest):
        m = FIELD.match(rest, pos)
        if m is None:
            raise AssertionError("not a key=value field at %r in %r" % (rest[pos:], line))
        keys.append(m.group(1))
        pos = m.end() + 1
    return keys


def wait_lines(srv, needle, count=1, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        lines = [l for l in srv.log().splitlines() if needle in l]
        if len(lines) >= count:
            return lines
        if time.monotonic() > deadline:
            raise AssertionError("not %d x %r in the log:\n%s" % (count, needle,
                                                               srv.log()[-3000:]))
        time.sleep(0.01)


class Lines:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall((data if isinstance(data, bytes) else data.encode()) + b"\r\n")

    def line(self):
        return self.f.readline().decode(errors="replace").rstrip("\r\n")

    def reply(self):
        while True:
            line = self.line()
            if len(line) < 4 or line[3] != "-":
                return line

    def close(self):
        self.sock.close()


class TestLogFields(unittest.TestCase):
    def test_forged_sender_stays_one_field(self):
        for backend in roosttest.BACKENDS:
            with self.subTest(backend=backend), \
                    roosttest.RoostServer(backend=backend, listeners=("smtp",), conf=CONF) as srv:
                c = Lines(srv.port("smtp"))
                c.reply()
                c.send("EHLO client.test")
                c.reply()
                c.send("MAIL FROM:<%s>" % FORGED)
                self.assertTrue(c.reply().startswith("250"))
                c.send("RCPT TO:<alice@example.org>")
                self.assertTrue(c.reply().startswith("250"))
                c.send("DATA")
                self.assertTrue(c.reply().startswith("354"))
                c.send("Subject: hi\r\n\r\nbody\r\n.")
                self.assertTrue(c.reply().startswith("250"))
                c.send("QUIT")
                c.close()
                line = wait_lines(srv, "event=delivered")[0]
                keys = fields(line)
                self.assertEqual(keys.count("id"), 1, line)
                self.assertEqual(keys.count("to_user"), 1, line)
                self.assertNotIn("user", keys, line)  # not logged in
                self.assertNotIn("status", keys, line)
                # Not even a naive grep finds the forged fields.
                self.assertEqual(len(re.findall(r"(?:^| )id=", line)), 1, line)
                self.assertNotIn("status=", line)
                self.assertIn(r'from="\"x> status\x3dok', line)

    def test_user_tried_is_quoted(self):
        with roosttest.RoostServer(listeners=("imap", "pop3", "submission"), conf=CONF) as srv:
            tried = 'x peer=192.0.2.66 "y'
            c = Lines(srv.port("imap"))
            c.line()
            c.send('a LOGIN "x peer=192.0.2.66 \\"y" wrong')
            c.send(b"b LOGIN {6+}\r\n\xff\xfe\x1b[2J wrong")
            c.send("c LOGOUT")
            while not c.line().startswith("c OK"):
                pass
            c.close()
            c = Lines(srv.port("pop3"))
            c.line()
            c.send('USER x"peer=192.0.2.66\\y')
            c.line()
            c.send("PASS wrong")
            c.line()
            c.close()
            c = Lines(srv.port("submission"))
            c.reply()
            c.send("EHLO client.test")
            c.reply()
            c.send("AUTH PLAIN " + base64.b64encode(("\0%s\0wrong" % tried).encode()).decode())
            c.reply()
            c.close()
            lines = wait_lines(srv, "event=auth_failed", 4)
            self.assertEqual(len(lines), 4, lines)
            for line in lines:
                keys = fields(line)
                self.assertEqual(keys.count("peer"), 1, line)
                self.assertEqual(keys.count("user"), 1, line)
                self.assertEqual(line.count("peer="), 1, line)
                self.assertIn("peer=127.0.0.1", line)
            self.assertEqual(sum(r'user="x peer\x3d192.0.2.66 \"y"' in l for l in lines), 2,
                             lines)
            self.assertTrue(any(r'user="x\"peer\x3d192.0.2.66\\y"' in l for l in lines), lines)
            self.assertTrue(any(r'user="\xff\xfe\x1b[2J"' in l for l in lines), lines)
            self.assertNotIn("\x1b", srv.log())


class TestDeliverLog(unittest.TestCase):
    def test_deliver_sender_quoted(self):
        with roosttest.RoostServer(listeners=("imap",), conf=CONF) as srv:
            res = srv.cli("deliver", "-f", "a b=c@x", "-a", "alice@example.org",
                          input="Subject: x\n\nbody\n")
            line = [l for l in res.stderr.splitlines() + srv.log().splitlines()
                    if "event=delivered" in l]
            if not line:
                self.skipTest("roost deliver logs elsewhere in this build")
            self.assertIn(r'from="a b\x3dc@x"', line[0])
            self.assertEqual(fields(line[0]).count("from"), 1)


if __name__ == "__main__":
    unittest.main()
