"""Per-user submission rates ([smtp] user_messages_per_hour and
user_recipients_per_hour): an authenticated user past the hour's allowance
gets 451 4.7.1 at MAIL or 452 4.5.3 at RCPT, others are not touched, the
session goes on, and clients that did not log in are not counted."""
import smtplib
import unittest

from roosttest import RoostServer, SharedServer, submission
from test_smtp import uids

USERS = {"alice@example.org": "alice-secret", "bob@example.org": "bob-secret",
         "carol@example.org": "carol-secret"}


def msg(subject, sender="alice@example.org"):
    return ("From: %s\r\nTo: bob@example.org\r\nSubject: %s\r\n\r\nHi.\r\n"
            % (sender, subject)).encode()


def login(srv, user):
    return submission(srv, user, USERS[user])


class RateLimitTest(SharedServer, unittest.TestCase):
    server_options = {"users": USERS, "listeners": ("smtp", "submission"), "conf": {
        "smtp": {"user_messages_per_hour": "3", "user_recipients_per_hour": "5",
                 "trusted_networks": "127.0.0.0/8"}}}

    def login(self, user):
        return login(self.srv, user)

    def test_messages_per_hour(self):
        with self.login("alice@example.org") as s:
            for i in range(3):
                self.assertEqual(s.sendmail("alice@example.org", ["bob@example.org"],
                                            msg("m%d" % i)), {})
            code, text = s.mail("alice@example.org")
            self.assertEqual(code, 451, text)
            self.assertIn(b"4.7.1", text)
            self.assertIn(b"at most 3 an hour", text)
            # The refusal leaves no transaction, and the session works on.
            code, _ = s.rcpt("bob@example.org")
            self.assertEqual(code, 503)
            self.assertEqual(s.rset()[0], 250)
            self.assertEqual(s.noop()[0], 250)
        # Another connection of the same user is counted with the first.
        with self.login("alice@example.org") as s:
            self.assertEqual(s.mail("alice@example.org")[0], 451)
        self.assertRegex(self.srv.log(), r"event=rate_limited conn=\d+ peer=\S+ proto=\w+ "
                                         r"user=\"?alice@example\.org\"? kind=messages retry_after=\d+")
        self.assertEqual(len(uids(self.srv, "bob@example.org")) >= 3, True)

    def test_recipients_per_hour(self):
        with self.login("bob@example.org") as s:
            self.assertEqual(s.mail("bob@example.org")[0], 250)
            codes = [s.rcpt("u%d@example.org" % i if i % 2 else "alice@example.org")[0]
                     for i in range(7)]
            # Unknown users are refused (550) and use no allowance.
            self.assertEqual(codes, [250, 550, 250, 550, 250, 550, 250])
            codes = [s.rcpt(r) for r in ("alice@example.org", "carol@example.org",
                                         "alice@example.org")]
            self.assertEqual([c for c, _ in codes], [250, 452, 452])
            self.assertIn(b"4.5.3", codes[1][1])
            # What was accepted is delivered.
            code, _ = s.data(msg("five", sender="bob@example.org"))
            self.assertEqual(code, 250)

    def test_trusted_unauthenticated_not_counted(self):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            for i in range(8):
                self.assertEqual(s.sendmail("someone@outside.test", ["carol@example.org"],
                                            msg("t%d" % i)), {})

class RateLimitOtherTest(unittest.TestCase):
    def test_table_bounded(self):
        # rate_users = 2: a third user pushes out the one idle longest,
        # who then starts afresh; the others keep their counts.
        with RoostServer(users=USERS, listeners=("submission",), conf={
                "smtp": {"user_messages_per_hour": "1", "rate_users": "2"}}) as srv:
            def mail(user):
                with login(srv, user) as s:
                    return s.mail(user)[0]
            self.assertEqual(mail("alice@example.org"), 250)
            self.assertEqual(mail("bob@example.org"), 250)
            self.assertEqual(mail("alice@example.org"), 451)
            self.assertEqual(mail("carol@example.org"), 250)  # bob goes
            self.assertEqual(mail("alice@example.org"), 451)
            self.assertEqual(mail("bob@example.org"), 250)  # afresh; carol goes
            self.assertEqual(mail("alice@example.org"), 451)

    def test_zero_is_off(self):
        with RoostServer(users=USERS, listeners=("submission",), conf={
                "smtp": {"user_messages_per_hour": "0",
                         "user_recipients_per_hour": "0"}}) as srv:
            with submission(srv, "alice@example.org", USERS["alice@example.org"]) as s:
                for i in range(12):
                    self.assertEqual(s.sendmail("alice@example.org", ["bob@example.org"],
                                                msg("off%d" % i)), {})
            self.assertNotIn("event=rate_limited", srv.log())


if __name__ == "__main__":
    unittest.main()
