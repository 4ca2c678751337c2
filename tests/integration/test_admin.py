"""Administration from the command line: users and their mail (del --purge,
the safe default, add over left-over mail), mailboxes of known users only,
flags by name, and passwd files that do not parse."""
import os
import smtplib
import unittest

from roosttest import BACKENDS, backend_classes, own_server


def msg(subject):
    return ("From: s@remote.example\r\nTo: x@example.org\r\nSubject: %s\r\n\r\nbody\r\n"
            % subject).encode()


class AdminCase:
    backend = BACKENDS[0]

    def setUp(self):
        self.srv = own_server(self, backend=self.backend, listeners=("smtp",))

    def roost(self, *args, input=None):
        return self.srv.cli(*args, input=input, check=False)

    def send(self, to, subject="hello"):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            self.assertEqual(s.sendmail("s@remote.example", [to], msg(subject)), {})

    def test_user_del_keeps_mail_and_add_refuses_it(self):
        self.send("bob@example.org")
        self.roost("mailbox", "create", "bob@example.org", "Archive")
        res = self.roost("user", "del", "bob@example.org")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("its mail (1 messages) is kept", res.stdout)
        # A new bob does not get the old bob's mail by accident.
        res = self.roost("user", "add", "bob@example.org", input="new-bob\n")
        self.assertEqual(res.returncode, 1)
        self.assertIn("1 messages of an earlier bob@example.org are still stored",
                      res.stderr)
        self.assertNotIn("bob@example.org", self.roost("user", "list").stdout)
        # --purge removes the old mail first.
        res = self.roost("user", "add", "bob@example.org", "--purge", input="new-bob\n")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("removed 1 earlier messages", res.stdout)
        lst = self.roost("mailbox", "list", "bob@example.org").stdout
        self.assertNotIn("Archive", lst)
        self.assertIn("INBOX messages=0", lst)

    def test_user_del_purge(self):
        self.send("bob@example.org", "one")
        self.send("bob@example.org", "two")
        self.assertEqual(self.roost("mailbox", "create", "bob@example.org",
                                    "Projects/2026").returncode, 0)
        res = self.roost("user", "del", "bob@example.org", "--purge")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(res.stdout, "deleted bob@example.org and its mail (2 messages)\n")
        res = self.roost("user", "add", "bob@example.org", input="x\n")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(res.stdout, "added bob@example.org\n")
        lst = self.roost("mailbox", "list", "bob@example.org").stdout
        self.assertNotIn("Projects", lst)
        self.assertIn("INBOX messages=0", lst)
        # del --purge of a name already gone removes left-overs; unknown
        # options are usage errors.
        self.send("alice@example.org")
        self.assertEqual(self.roost("user", "del", "alice@example.org").returncode, 0)
        res = self.roost("user", "del", "alice@example.org", "--purge")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("purged alice@example.org and its mail (1 messages)", res.stdout)
        self.assertEqual(self.roost("user", "del", "x@example.org", "--force").returncode, 2)
        self.assertEqual(self.roost("user", "del", "x@example.org").returncode, 1)

    def test_mailbox_commands_refuse_unknown_users(self):
        for args in (("list", "nobody@example.org"), ("create", "nobody@example.org", "Foo"),
                     ("delete", "nobody@example.org", "Foo"),
                     ("rename", "nobody@example.org", "A", "B"),
                     ("subscribe", "nobody@example.org", "Foo"),
                     ("uids", "nobody@example.org", "INBOX")):
            res = self.roost("mailbox", *args)
            self.assertEqual(res.returncode, 1, args)
            self.assertIn("nobody@example.org: no such user", res.stderr)
            self.assertEqual(res.stdout, "")
        # Nothing was created for nobody.
        self.assertFalse(os.path.exists(os.path.join(self.srv.data_dir, "maildir",
                                                     "nobody@example.org")))

    def test_mailbox_create_delete_rename_subscribe(self):
        u = "ALICE@example.org"  # the passwd file's spelling is used
        self.assertEqual(self.roost("mailbox", "create", u, "Foo").returncode, 0)
        self.assertEqual(self.roost("mailbox", "rename", u, "Foo", "Bar").returncode, 0)
        self.assertEqual(self.roost("mailbox", "subscribe", u, "Bar").returncode, 0)
        lst = self.roost("mailbox", "list", u).stdout
        self.assertIn("Bar messages=0", lst)
        self.assertNotIn("Foo", lst)
        res = self.roost("mailbox", "rename", u, "Nope", "X")
        self.assertEqual(res.returncode, 1)
        self.assertEqual(self.roost("mailbox", "unsubscribe", u, "Bar").returncode, 0)
        self.assertEqual(self.roost("mailbox", "delete", u, "Bar").returncode, 0)
        self.assertNotIn("Bar", self.roost("mailbox", "list", u).stdout)
        self.assertEqual(self.roost("mailbox", "delete", u, "Bar").returncode, 1)
        self.assertEqual(self.roost("mailbox", "create", u, "bad\x01name").returncode, 1)

    def test_uids_show_flags_by_name(self):
        import imaplib  # noqa: E402 (only this case needs IMAP)
        srv = own_server(self, backend=self.backend, listeners=("imap",))
        with imaplib.IMAP4("127.0.0.1", srv.port("imap")) as c:
            c.login("alice@example.org", "alice-secret")
            c.append("INBOX", r"(\Seen \Flagged $Label1)", None, msg("flagged"))
            c.append("INBOX", None, None, msg("plain"))
        res = srv.cli("mailbox", "uids", "alice@example.org", "INBOX")
        lines = res.stdout.splitlines()
        self.assertEqual(len(lines), 2)
        self.assertRegex(lines[0], r"^1 \d+ \(\\Seen \\Flagged \$Label1\)$")
        self.assertRegex(lines[1], r"^2 \d+ \(\)$")

    def test_broken_passwd_file_is_not_edited(self):
        passwd = os.path.join(self.srv.data_dir, "passwd")
        with open(passwd) as f:
            good = f.read()
        with open(passwd, "a") as f:
            f.write("this line has no colon\n")
        with open(passwd) as f:
            broken = f.read()
        res = self.roost("user", "add", "carol@example.org", input="c\n")
        self.assertEqual(res.returncode, 1)
        self.assertIn("does not parse", res.stderr)
        self.assertIn("line=", res.stderr)
        with open(passwd) as f:
            self.assertEqual(f.read(), broken)
        # A duplicated name: passwd names the problem, rewrites nothing.
        with open(passwd, "w") as f:
            f.write(good + good.splitlines()[0] + "\n")
        with open(passwd) as f:
            dup = f.read()
        res = self.roost("user", "passwd", "alice@example.org", input="new\n")
        self.assertEqual(res.returncode, 1)
        self.assertIn("duplicate user", res.stderr)
        with open(passwd) as f:
            self.assertEqual(f.read(), dup)


backend_classes(globals(), AdminCase, "TestAdmin_%s", BACKENDS)

if __name__ == "__main__":
    unittest.main()
