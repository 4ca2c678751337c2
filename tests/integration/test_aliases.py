"""Local domains and the aliases file: [smtp] domains decides what is ours,
aliases expand to local users, lists and other domains' addresses (the
outbound queue), postmaster is always deliverable, and an alias naming a
user may be that user's sender on submission."""
import os
import smtplib
import subprocess
import unittest

from roosttest import BACKENDS, RoostServer, SharedServer, own_server, wait_log

ALIASES = """# site aliases
postmaster: alice
Team:  alice,
    bob@example.org
abuse@example.org: bob
ext: carol@remote.example, alice
loop1: loop2
loop2: loop1
ghost: nobody-here
alice: alice, archive
archive: bob
"""
USERS = {"alice@example.org": "alice-pw", "bob@example.org": "bob-pw",
         "dora@elsewhere.test": "dora-pw"}


def msg(subject, sender="s@remote.example", to="x@example.org"):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (sender, to, subject)).encode()


def count(srv, user, mailbox="INBOX"):
    res = srv.cli("mailbox", "uids", user, mailbox, check=False)
    return len(res.stdout.splitlines()) if res.returncode == 0 else 0


class AliasServer(SharedServer):
    """A server whose aliases file (cls.aliases) sits in its own
    directory; cls.extra laid over its configuration."""
    backend = BACKENDS[0]
    aliases = ALIASES
    extra = {}

    @classmethod
    def server_args(cls):
        return dict(backend=cls.backend, users=USERS, listeners=("smtp", "submission", "lmtp"),
                    conf=cls.extra, aliases=cls.aliases)


class TestAliases(AliasServer, unittest.TestCase):
    def send(self, rcpts, subject, sender="s@remote.example"):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            return s.sendmail(sender, rcpts, msg(subject, sender))

    def test_list_reaches_every_member(self):
        a, b = count(self.srv, "alice@example.org"), count(self.srv, "bob@example.org")
        self.assertEqual(self.send(["TEAM@example.org"], "to the team"), {})
        self.assertEqual(count(self.srv, "alice@example.org"), a + 1)
        self.assertEqual(count(self.srv, "bob@example.org"), b + 1)
        self.assertTrue(wait_log(self.srv, r"event=alias_expanded conn=\d+ peer=\S+ proto=\w+ to=TEAM@example.org "
                                           r"destinations=2 remote=0"))

    def test_alias_in_every_local_domain_and_domain_key(self):
        b = count(self.srv, "bob@example.org")
        # "abuse" is an alias in example.org only; "team" in every local domain.
        self.assertEqual(self.send(["abuse@example.org", "team@roost.test"], "two"), {})
        self.assertEqual(count(self.srv, "bob@example.org"), b + 1)  # once, deduplicated
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.ehlo()
            s.mail("s@remote.example")
            self.assertEqual(s.rcpt("abuse@roost.test")[0], 550)

    def test_self_naming_alias_is_the_user(self):
        a, b = count(self.srv, "alice@example.org"), count(self.srv, "bob@example.org")
        self.assertEqual(self.send(["alice@example.org"], "alice and her archive"), {})
        self.assertEqual(count(self.srv, "alice@example.org"), a + 1)
        self.assertEqual(count(self.srv, "bob@example.org"), b + 1)

    def test_external_target_is_queued(self):
        a = count(self.srv, "alice@example.org")
        self.assertEqual(self.send(["ext@example.org"], "forwarded"), {})
        self.assertEqual(count(self.srv, "alice@example.org"), a + 1)
        res = self.srv.cli("queue", "list")
        self.assertIn("carol@remote.example", res.stdout)

    def test_loops_and_dangling_targets_are_unknown(self):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.ehlo()
            s.mail("s@remote.example")
            self.assertEqual(s.rcpt("loop1@example.org")[0], 550)
            self.assertEqual(s.rcpt("ghost@example.org")[0], 550)
            self.assertEqual(s.rcpt("team@example.org")[0], 250)
        self.assertTrue(wait_log(self.srv, r"event=alias_error alias=ghost@example.org "
                                           r"target=nobody-here"))
        self.assertTrue(wait_log(self.srv, r"event=rcpt_rejected .*reason=unknown_user .*"
                                           r"to=loop1@example.org"))

    def test_postmaster_in_any_case(self):
        a = count(self.srv, "alice@example.org")
        self.assertEqual(self.send(["PostMaster@roost.test", "postmaster"], "pm"), {})
        self.assertEqual(count(self.srv, "alice@example.org"), a + 1)

    def test_lmtp_answers_an_alias_once(self):
        with smtplib.LMTP("127.0.0.1", self.srv.port("lmtp"), timeout=15) as s:
            s.ehlo_or_helo_if_needed()
            s.mail("s@remote.example")
            self.assertEqual(s.rcpt("team@example.org")[0], 250)
            self.assertEqual(s.rcpt("bob@example.org")[0], 250)
            code, _ = s.docmd("DATA")
            self.assertEqual(code, 354)
            s.send(b"Subject: lmtp alias\r\n\r\nx\r\n.\r\n")
            replies = [s.getreply() for _ in range(2)]
            self.assertEqual([r[0] for r in replies], [250, 250])
            # No third reply: the line after is NOOP's.
            self.assertEqual(s.docmd("NOOP")[0], 250)

    def test_sender_alias_on_submission(self):
        with smtplib.SMTP("127.0.0.1", self.srv.port("submission"), timeout=15) as s:
            s.login("alice@example.org", "alice-pw")
            # team names alice among its targets: she may send as team.
            self.assertEqual(s.sendmail("team@example.org", ["bob@example.org"],
                                        msg("as team", "team@example.org", "bob@example.org")),
                             {})
            # abuse names only bob.
            s.ehlo()
            code, _ = s.mail("abuse@example.org")
            self.assertEqual(code, 553)
            s.rset()
            # The envelope may be hers while From: is an alias that is not.
            s.mail("alice@example.org")
            s.rcpt("bob@example.org")
            code, _ = s.data(msg("From abuse", "abuse@example.org", "bob@example.org"))
            self.assertEqual(code, 553)

    def test_roost_deliver_expands_and_is_quiet(self):
        a, b = count(self.srv, "alice@example.org"), count(self.srv, "bob@example.org")
        # Quiet unless log_level = debug (the test servers' level).
        quiet = os.path.join(self.srv.dir, "quiet.conf")
        with open(self.srv.conf_path) as f, open(quiet, "w") as g:
            g.write(f.read().replace("log_level = debug", "log_level = info"))
        res = subprocess.run([self.srv.binary, "deliver", "-f", "s@remote.example", "-a",
                              "team@example.org", "--config", quiet],
                             input=msg("deliver"), capture_output=True, timeout=60)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual((res.stdout, res.stderr), (b"", b""))
        self.assertEqual(count(self.srv, "alice@example.org"), a + 1)
        self.assertEqual(count(self.srv, "bob@example.org"), b + 1)
        res = subprocess.run([self.srv.binary, "deliver", "-a", "ext@example.org",
                              "--config", self.srv.conf_path],
                             input=msg("deliver ext"), capture_output=True, timeout=60)
        self.assertEqual(res.returncode, 69)
        self.assertIn(b"carol@remote.example", res.stderr)


class TestLocalDomains(AliasServer, unittest.TestCase):
    """dora@elsewhere.test is a user, but elsewhere.test is no local domain:
    her address is another host's."""
    aliases = "postmaster: alice\n"
    extra = {"smtp": {"trusted_networks": ""}}

    def test_user_outside_local_domains_is_not_ours(self):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.ehlo()
            s.mail("s@remote.example")
            code, text = s.rcpt("dora@elsewhere.test")
            self.assertEqual(code, 554, text)
            self.assertEqual(s.rcpt("alice@example.org")[0], 250)
        self.assertTrue(wait_log(self.srv, r"event=rcpt_rejected conn=\d+ peer=127.0.0.1 proto=smtp "
                                           r"reason=relay_denied from=s@remote.example "
                                           r"to=dora@elsewhere.test"))
        with smtplib.LMTP("127.0.0.1", self.srv.port("lmtp"), timeout=15) as s:
            s.ehlo_or_helo_if_needed()
            s.mail("s@remote.example")
            self.assertEqual(s.rcpt("dora@elsewhere.test")[0], 550)
        res = subprocess.run([self.srv.binary, "deliver", "-a", "dora@elsewhere.test",
                              "--config", self.srv.conf_path],
                             input=msg("x"), capture_output=True, timeout=60)
        self.assertEqual(res.returncode, 67)


class TestPostmasterWithoutAlias(unittest.TestCase):
    def test_kept_for_the_postmaster_user(self):
        srv = own_server(self, backend=BACKENDS[0], listeners=("smtp",))
        self.assertIn("warning=no_postmaster", srv.log())
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=15) as s:
            self.assertEqual(s.sendmail("s@remote.example", ["Postmaster@Example.ORG"],
                                        msg("pm")), {})
            s.ehlo()
            s.mail("s@remote.example")
            self.assertEqual(s.rcpt("someone@example.org")[0], 550)
        # Kept for the user postmaster@example.org, who does not exist
        # yet: adding that name hands the mail over only when asked to.
        self.assertEqual(count(srv, "postmaster@example.org"), 0)
        res = srv.cli("user", "add", "postmaster@example.org", input="pm-pw\n",
                      check=False)
        self.assertEqual(res.returncode, 1)
        self.assertIn("1 messages of an earlier postmaster@example.org", res.stderr)
        res = srv.cli("user", "add", "postmaster@example.org", "--keep-mail",
                      input="pm-pw\n")
        self.assertIn("with 1 earlier messages", res.stdout)
        self.assertEqual(count(srv, "postmaster@example.org"), 1)


class TestBadAliasesFile(unittest.TestCase):
    def check(self, text, words):
        def prepare(srv):
            path = os.path.join(srv.dir, "aliases")
            with open(path, "w") as f:
                f.write(text)
            srv.extra_conf = {"smtp": {"aliases": path}}

        res = RoostServer(backend=BACKENDS[0], listeners=()).serve_refused(prepare)
        self.assertEqual(res.returncode, 2, res.stdout + res.stderr)
        for w in words:
            self.assertIn(w, res.stdout + res.stderr)

    def test_refusals(self):
        self.check("postmaster: alice\npipe: |/bin/sh\n", ["aliases:2", "programs"])
        self.check("a: b\nA: c\n", ["aliases:2", "defined twice"])
        self.check("x@elsewhere.test: alice\n", ["aliases:1", "not in a local domain"])
        self.check("nocolon alice\n", ["aliases:1", "expected"])
        self.check("empty:\n", ["no target"])
        self.check("bad: \"quoted\"@x\n", ["bad target"])
        self.check("ok: alice\nbin: a\x00b\n", ["aliases:2", "NUL"])


if __name__ == "__main__":
    unittest.main()
