"""Quota (RFC 9208 over IMAP, SMTP/LMTP refusals, `roost deliver` exit codes,
`roost quota`) against a real `roost serve`, on both backends.

Limits are set with `roost quota set` while the server runs (it edits the
passwd file, which the server reads again at its next lookup), each test on
its own users, so the tests share one server."""
import imaplib
import os
import smtplib
import socket
import time
import unittest

from roosttest import BACKENDS, SharedServer, backend_classes

ADMIN = "admin@example.org"
USERS = {"alice@example.org": "alice-secret", "bob@example.org": "bob-secret",
         ADMIN: "admin-secret"}
for _n in range(1, 11):
    USERS["q%d@example.org" % _n] = "q%d-secret" % _n


def message(size, subject="quota"):
    """A message of exactly size octets (CR LF line ends)."""
    head = ("From: s@remote.example\r\nTo: x@example.org\r\nSubject: %s\r\n\r\n"
            % subject).encode()
    body_len = size - len(head)
    assert body_len >= 2
    lines = []
    left = body_len
    while left > 0:
        n = min(left, 78)
        if n <= 2:
            lines.append(b"\r\n"[:n] if n == 2 else b"x")
            left -= n
            continue
        lines.append(b"y" * (n - 2) + b"\r\n")
        left -= n
    data = head + b"".join(lines)
    assert len(data) == size, (len(data), size)
    return data


class RawImap:
    """Exact lines over a socket, for what imaplib would not send."""

    def __init__(self, port, user, password):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buf = b""
        self.n = 0
        self.line()
        typ, _ = self.cmd("LOGIN %s %s" % (user, password))
        assert typ == "OK"

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def cmd(self, text):
        """(tagged status, [untagged lines and the tagged one])."""
        return self.cmd_bytes(text.encode())

    def cmd_bytes(self, text):
        self.n += 1
        tag = "q%d" % self.n
        self.sock.sendall(tag.encode() + b" " + text + b"\r\n")
        untagged = []
        while True:
            line = self.line()
            if line.startswith(tag + " "):
                return line[len(tag) + 1:].split(" ", 1)[0], untagged + [line]
            untagged.append(line)

    def close(self):
        try:
            self.cmd("LOGOUT")
        except (OSError, EOFError):
            pass
        self.sock.close()


class QuotaBase(SharedServer):
    backend = "lmdb"
    server_options = {"users": USERS, "listeners": ("imap", "smtp", "lmtp"),
                      "conf": {"quota": {"admins": ADMIN}}}

    def set_quota(self, user, *settings):
        self.srv.cli("quota", "set", user, *settings)

    def quota_get(self, user):
        out = self.srv.cli("quota", "get", user).stdout
        return dict(line.split("=", 1) for line in out.splitlines())

    def imap(self, user):
        m = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=15)
        m.login(user, USERS[user])
        return m

    def raw(self, user):
        return RawImap(self.srv.port("imap"), user, USERS[user])

    def count(self, user, mailbox="INBOX"):
        res = self.srv.cli("mailbox", "uids", user, mailbox, check=False)
        return len(res.stdout.splitlines()) if res.returncode == 0 else 0

    # -- IMAP --

    def test_capability_and_getquotaroot(self):
        user = "q1@example.org"
        self.set_quota(user, "storage=1M", "messages=100")
        r = self.raw(user)
        try:
            typ, lines = r.cmd("CAPABILITY")
            caps = lines[0].split()
            for cap in ("QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"):
                self.assertIn(cap, caps)
            typ, lines = r.cmd("GETQUOTAROOT INBOX")
            self.assertEqual(typ, "OK", lines)
            self.assertEqual(lines[0], '* QUOTAROOT "INBOX" ""')
            self.assertEqual(lines[1], '* QUOTA "" (STORAGE 0 1024 MESSAGE 0 100)')
            msg = message(1500)
            r.sock.sendall(b"a1 APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
            self.assertTrue(r.line().startswith("a1 OK"))
            typ, lines = r.cmd('GETQUOTA ""')
            self.assertEqual(typ, "OK", lines)
            self.assertEqual(lines[0], '* QUOTA "" (STORAGE 2 1024 MESSAGE 1 100)')
            # another user's root is not this user's to see
            typ, lines = r.cmd('GETQUOTA "bob@example.org"')
            self.assertEqual(typ, "NO")
            self.assertIn("[NONEXISTENT]", lines[-1])
            typ, lines = r.cmd("GETQUOTAROOT NoSuchBox")
            self.assertEqual(typ, "NO")
            self.assertIn("[NONEXISTENT]", lines[-1])
            # hostile and malformed: a protocol error, the session goes on
            for bad in ("GETQUOTA", "GETQUOTAROOT", 'GETQUOTA "" extra', "GETQUOTA (x)",
                        'SETQUOTA ""', 'SETQUOTA "" STORAGE', 'SETQUOTA "" (STORAGE)',
                        'SETQUOTA "" (STORAGE x)', 'SETQUOTA "" (STORAGE -1)',
                        'SETQUOTA "" (STORAGE 99999999999999999999)',
                        'SETQUOTA "" ((STORAGE) 1)'):
                typ, lines = r.cmd(bad)
                self.assertEqual(typ, "BAD", (bad, lines))
            for bad in (b'GETQUOTAROOT "bad\xc3"', b"GETQUOTAROOT " + b"a" * 5000,
                        b'GETQUOTA "\xff\xfe"'):
                typ, lines = r.cmd_bytes(bad)
                self.assertIn(typ, ("BAD", "NO"), (bad, lines))
            typ, _ = r.cmd("NOOP")
            self.assertEqual(typ, "OK")
        finally:
            r.close()
        # without a limit the root lists no resource
        r = self.raw("bob@example.org")
        try:
            typ, lines = r.cmd("GETQUOTAROOT INBOX")
            self.assertEqual(lines[1], '* QUOTA "" ()')
        finally:
            r.close()

    def test_setquota_admin_only(self):
        user = "q2@example.org"
        r = self.raw(user)
        try:
            typ, lines = r.cmd('SETQUOTA "" (STORAGE 100)')
            self.assertEqual(typ, "NO")
            self.assertIn("[NOPERM]", lines[-1])
        finally:
            r.close()
        self.assertEqual(self.quota_get(user)["storage_limit"], "none")
        a = self.raw(ADMIN)
        try:
            typ, lines = a.cmd('SETQUOTA "%s" (STORAGE 10 MESSAGE 5)' % user)
            self.assertEqual(typ, "OK", lines)
            self.assertEqual(lines[0], '* QUOTA "%s" (STORAGE 0 10 MESSAGE 0 5)' % user)
            typ, lines = a.cmd('GETQUOTA "%s"' % user)
            self.assertEqual(lines[0], '* QUOTA "%s" (STORAGE 0 10 MESSAGE 0 5)' % user)
            typ, lines = a.cmd('SETQUOTA "%s" (FOO 1)' % user)
            self.assertEqual(typ, "NO")
            typ, lines = a.cmd('SETQUOTA "nobody@example.org" (STORAGE 1)')
            self.assertEqual(typ, "NO")
            self.assertIn("[NONEXISTENT]", lines[-1])
            # a resource left out loses its limit (RFC 9208 4.1.3)
            typ, lines = a.cmd('SETQUOTA "%s" (MESSAGE 7)' % user)
            self.assertEqual(typ, "OK", lines)
            self.assertEqual(lines[0], '* QUOTA "%s" (MESSAGE 0 7)' % user)
        finally:
            a.close()
        q = self.quota_get(user)
        self.assertEqual((q["storage_limit"], q["messages_limit"]), ("none", "7"))
        # imaplib's own QUOTA calls read the same
        m = self.imap(user)
        try:
            typ, data = m.getquotaroot("INBOX")
            self.assertEqual(typ, "OK")
            self.assertEqual(data[1], [b'"" (MESSAGE 0 7)'])
        finally:
            m.logout()

    def test_append_copy_move_over_quota(self):
        user = "q3@example.org"
        self.set_quota(user, "storage=2K")
        m = self.imap(user)
        try:
            self.assertEqual(m.append("INBOX", None, None, message(1500))[0], "OK")
            typ, data = m.append("INBOX", None, None, message(1500))
            self.assertEqual(typ, "NO")
            self.assertIn(b"[OVERQUOTA]", data[0])
            typ, data = m.append("INBOX", None, None, message(3000))
            self.assertEqual(typ, "NO")
            self.assertIn(b"[OVERQUOTA]", data[0])
            m.select("INBOX")
            typ, data = m.copy("1", "Archive")
            self.assertEqual(typ, "NO")
            self.assertIn(b"[OVERQUOTA]", data[0])
            typ, data = m._simple_command("MOVE", "1", "Archive")
            self.assertEqual(typ, "OK", data)
        finally:
            m.logout()
        self.assertEqual(self.count(user), 0)
        self.assertEqual(self.count(user, "Archive"), 1)
        q = self.quota_get(user)
        self.assertEqual((q["storage"], q["messages"]), ("1500", "1"))

    def test_status_deleted(self):
        user = "q9@example.org"
        m = self.imap(user)
        try:
            self.assertEqual(m.append("INBOX", None, None, message(1500))[0], "OK")
            self.assertEqual(m.append("INBOX", None, None, message(2100))[0], "OK")
            typ, data = m.status("INBOX", "(DELETED DELETED-STORAGE MESSAGES)")
            self.assertEqual(typ, "OK")
            self.assertIn(b"(MESSAGES 2 DELETED 0 DELETED-STORAGE 0)", data[0])
            m.select("INBOX")
            m.store("2", "+FLAGS", "\\Deleted")
            typ, data = m.status("INBOX", "(DELETED-STORAGE DELETED)")
            self.assertIn(b"DELETED 1", data[0])
            self.assertIn(b"DELETED-STORAGE 3", data[0])  # 2100 octets, in KiB rounded up
            m.expunge()
            typ, data = m.status("INBOX", "(DELETED DELETED-STORAGE)")
            self.assertIn(b"DELETED 0 DELETED-STORAGE 0", data[0])
            with self.assertRaises(imaplib.IMAP4.error):
                m.status("INBOX", "(DELETED BOGUS)")
        finally:
            m.logout()
        q = self.quota_get(user)
        self.assertEqual((q["storage"], q["messages"]), ("1500", "1"))

    # -- SMTP and LMTP --

    def test_smtp_452_and_552(self):
        user = "q4@example.org"
        self.set_quota(user, "storage=4K")
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.sendmail("s@remote.example", [user], message(3000))
            # smtplib sends SIZE=: refused at RCPT
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                s.sendmail("s@remote.example", [user], message(3000))
            code, text = cm.exception.recipients[user]
            self.assertEqual(code, 452)
            self.assertTrue(text.startswith(b"4.2.2"), text)
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                s.sendmail("s@remote.example", [user], message(5000))
            code, text = cm.exception.recipients[user]
            self.assertEqual(code, 552)
            self.assertTrue(text.startswith(b"5.2.2"), text)
            # the other recipient still gets it
            refused = s.sendmail("s@remote.example", [user, "bob@example.org"], message(3000))
            self.assertEqual(refused[user][0], 452)
            # without SIZE= the store refuses after the data
            s.rset()
            self.assertEqual(s.mail("s@remote.example")[0], 250)
            self.assertEqual(s.rcpt(user)[0], 250)
            code, text = s.data(message(1500))
            self.assertEqual(code, 452)
            self.assertTrue(text.startswith(b"4.2.2"), text)
        self.assertEqual(self.count(user), 1)
        self.assertGreaterEqual(self.count("bob@example.org"), 1)

    def test_lmtp_per_recipient(self):
        user = "q5@example.org"
        self.set_quota(user, "storage=2K")
        self.srv.cli("deliver", "-a", user, input=message(1500))
        bob0 = self.count("bob@example.org")
        sock = socket.create_connection(("127.0.0.1", self.srv.port("lmtp")), timeout=15)
        f = sock.makefile("rb")

        def reply():
            lines = []
            while True:
                line = f.readline().decode()
                lines.append(line)
                if line[3:4] != "-":
                    return lines

        try:
            reply()
            sock.sendall(b"LHLO test\r\n")
            reply()
            # no SIZE=: both recipients pass RCPT, the store decides per recipient
            sock.sendall(b"MAIL FROM:<s@remote.example>\r\n")
            self.assertTrue(reply()[0].startswith("250"))
            sock.sendall(b"RCPT TO:<%s>\r\n" % user.encode())
            self.assertTrue(reply()[0].startswith("250"))
            sock.sendall(b"RCPT TO:<bob@example.org>\r\n")
            self.assertTrue(reply()[0].startswith("250"))
            sock.sendall(b"DATA\r\n")
            self.assertTrue(reply()[0].startswith("354"))
            sock.sendall(message(1000) + b".\r\n")
            first, second = reply()[0], reply()[0]
            self.assertTrue(first.startswith("452 4.2.2"), first)
            self.assertTrue(second.startswith("250"), second)
            # SIZE= larger than the limit itself: 552 5.2.2 at RCPT
            sock.sendall(b"MAIL FROM:<s@remote.example> SIZE=5000\r\n")
            self.assertTrue(reply()[0].startswith("250"))
            sock.sendall(b"RCPT TO:<%s>\r\n" % user.encode())
            self.assertTrue(reply()[0].startswith("552 5.2.2"))
            sock.sendall(b"QUIT\r\n")
            reply()
        finally:
            sock.close()
        self.assertEqual(self.count(user), 1)
        self.assertEqual(self.count("bob@example.org"), bob0 + 1)

    def test_smtplib_lmtp(self):
        user = "q6@example.org"
        self.set_quota(user, "messages=1")
        with smtplib.LMTP("127.0.0.1", self.srv.port("lmtp"), timeout=15) as s:
            s.sendmail("s@remote.example", [user], message(500))
            refused = s.sendmail("s@remote.example", [user, "alice@example.org"], message(500))
            self.assertEqual(refused[user][0], 452)
        self.assertEqual(self.count(user), 1)

    # -- roost deliver and roost quota --

    def test_deliver_exit_codes(self):
        user = "q7@example.org"
        self.set_quota(user, "storage=2K")
        res = self.srv.cli("deliver", "-a", user, input=message(1000), check=False)
        self.assertEqual(res.returncode, 0, res.stderr)
        # over quota: EX_TEMPFAIL, the MTA retries
        res = self.srv.cli("deliver", "-a", user, input=message(1500), check=False)
        self.assertEqual(res.returncode, 75, res.stderr)
        # larger than the quota itself: EX_CANTCREAT, the MTA bounces
        res = self.srv.cli("deliver", "-a", user, input=message(3000), check=False)
        self.assertEqual(res.returncode, 73, res.stderr)
        # all or nothing: the other recipient got nothing either
        a0 = self.count("alice@example.org")
        res = self.srv.cli("deliver", "-a", "alice@example.org", "-a", user,
                           input=message(1500), check=False)
        self.assertEqual(res.returncode, 75, res.stderr)
        self.assertEqual(self.count("alice@example.org"), a0)
        self.assertEqual(self.count(user), 1)

    def test_quota_cli(self):
        user = "q8@example.org"
        m = self.imap(user)
        try:
            self.assertEqual(m.append("INBOX", None, None, message(700))[0], "OK")
            self.assertEqual(m.append("INBOX", None, None, message(800))[0], "OK")
        finally:
            m.logout()
        q = self.quota_get(user)
        self.assertEqual(q["user"], user)
        self.assertEqual((q["storage"], q["messages"]), ("1500", "2"))
        self.assertEqual((q["storage_limit"], q["messages_limit"]), ("none", "none"))
        self.set_quota(user, "storage=10M", "messages=50")
        q = self.quota_get(user)
        self.assertEqual((q["storage_limit"], q["messages_limit"]), (str(10 << 20), "50"))
        self.set_quota(user, "storage=default")
        self.assertEqual(self.quota_get(user)["storage_limit"], "none")
        for bad in (["set", user, "storage=lots"], ["set", user, "bytes=1"],
                    ["set", user, "messages=-1"], ["get"], ["recalc", user, "x"]):
            res = self.srv.cli("quota", *bad, check=False)
            self.assertEqual(res.returncode, 2, (bad, res.stderr))
        res = self.srv.cli("quota", "set", "nobody@example.org", "storage=1M", check=False)
        self.assertEqual(res.returncode, 1)
        res = self.srv.cli("quota", "get", "bad/name", check=False)
        self.assertEqual(res.returncode, 1)

        out = self.srv.cli("quota", "recalc", user).stdout
        self.assertIn("storage=1500 was=1500 difference=+0", out)
        self.assertIn("messages=2 was=2 difference=+0", out)
        if self.backend == "maildir":
            # a file another program dropped in, without a maildirsize line
            new = os.path.join(self.srv.data_dir, "maildir", user, "new")
            with open(os.path.join(new, "%d.dropped.host" % time.time()), "wb") as f:
                f.write(message(600))
            self.assertEqual(self.quota_get(user)["storage"], "1500")
            out = self.srv.cli("quota", "recalc", user).stdout
            self.assertIn("storage=2100 was=1500 difference=+600", out)
            self.assertIn("messages=3 was=2 difference=+1", out)
            self.assertEqual(self.quota_get(user)["storage"], "2100")

backend_classes(globals(), QuotaBase, "TestQuota_%s", BACKENDS)

if __name__ == "__main__":
    unittest.main()
