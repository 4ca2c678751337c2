"""NOTIFY (RFC 5465) on other users' and shared mailboxes: the MAILBOXES,
SUBTREE and SUBSCRIBED filters take "Shared/..." and "Other Users/<owner>/
..." mailboxes, and the session hears every user's changes there (APPEND,
STORE, EXPUNGE by another user's session, mail through the alias support@
-> #public+support) as STATUS, while it holds l and r; a revoked right
stops the reports. Hostile filters (too many names or stores, bad UTF-8,
"Other Users/../x") get protocol errors and leave the session working.
Three users: carol administers the shared namespace, alice shares a
mailbox, bob follows. Run on every backend (pgsql in a PostgreSQL of the
class's own, skipped without one)."""
import re
import unittest

from roosttest import PrivatePgsql, backend_classes
from test_imap_acl import ALICE, BOB, CAROL, USERS, SharedNsServer, message
from test_imap_raw import Raw

STATUS_RE = re.compile(rb'^\* STATUS "?(.*?)"? \((.*)\)\r\n$')
EVENTS = b"(MessageNew MessageExpunge FlagChange)"
TEAM = "Other Users/" + ALICE + "/Team"


def parse_status(line):
    m = STATUS_RE.match(line)
    if m is None:
        return None, None
    f = m.group(2).split()
    return m.group(1).decode(), {f[i].decode(): int(f[i + 1]) for i in range(0, len(f), 2)}


class Follower:
    """bob's raw session with NOTIFY set: every line read is kept."""

    def __init__(self, raw):
        self.r = raw
        self.r.sock.settimeout(60)
        self.lines = []

    def cmd(self, text):
        lines, t = self.r.cmd(text)
        self.lines += lines
        return lines, t

    def status_of(self, name, pred=lambda st: True):
        """Wait (60 s at most per line) for a STATUS of name that pred
        takes; return its fields. It and the lines of name before it are
        dropped, other lines read on the way are kept."""
        i = 0
        while True:
            while i < len(self.lines):
                n, st = parse_status(self.lines[i])
                i += 1
                if n == name and pred(st):
                    self.lines = [x for x in self.lines[:i] if parse_status(x)[0] != name] + \
                        self.lines[i:]
                    return st
            try:
                self.lines.append(self.r.line())
            except OSError as e:
                raise AssertionError("no STATUS of %s in %r" % (name, self.lines[-20:])) from e

    def settle(self):
        """Everything the server has written so far, then empty: a NOOP's
        answer comes after every report already made."""
        lines, t = self.cmd(b"NOOP")
        assert b"OK" in t, t
        out, self.lines = self.lines, []
        return out


class NotifySharedBase(SharedNsServer):
    shared_conf = {"acl": {"shared_admins": CAROL}}

    def raw(self, user):
        r = Raw(self.srv.port("imap"), timeout=60).login(user.encode(), USERS[user].encode())
        self.addCleanup(r.close)
        return r

    def follower(self, user, notify):
        f = Follower(self.raw(user))
        lines, t = f.cmd(b"ENABLE CONDSTORE")
        self.assertIn(b"OK", t)
        lines, t = f.cmd(b"NOTIFY SET " + notify)
        self.assertIn(b"OK", t, notify)
        return f

    def shared(self, name, grants):
        c = self.imap(CAROL)
        self.assertEqual(c.create(name)[0], "OK")
        for who, rights in grants.items():
            self.assertEqual(c.setacl(name, who, rights)[0], "OK")
        return c

    def test_mailboxes_and_subtree_other_users(self):
        """MAILBOXES "Shared/support" and SUBTREE "Other Users/alice":
        APPEND, SMTP through the alias, STORE and EXPUNGE of carol and
        alice reach bob as STATUS."""
        c = self.shared("Shared/support", {BOB: "lrs"})
        a = self.imap(ALICE)
        self.assertEqual(a.create("Team")[0], "OK")
        self.assertEqual(a.setacl("Team", BOB, "lr")[0], "OK")
        f = self.follower(BOB, b'STATUS (mailboxes "Shared/support" ' + EVENTS + b') '
                          b'(subtree "Other Users/' + ALICE.encode() + b'" ' + EVENTS + b')')
        st = f.status_of("Shared/support")
        self.assertEqual(st["MESSAGES"], 0)
        self.assertEqual(f.status_of(TEAM)["MESSAGES"], 0)

        self.assertEqual(c.append("Shared/support", None, None, message("one"))[0], "OK")
        st = f.status_of("Shared/support", lambda s: s["MESSAGES"] == 1)
        self.assertEqual(st["UNSEEN"], 1)
        self.assertEqual(self.send("support@example.org", "by mail"), {})
        st = f.status_of("Shared/support", lambda s: s["MESSAGES"] == 2)
        modseq = st["HIGHESTMODSEQ"]
        self.assertEqual(c.select("Shared/support")[0], "OK")
        self.assertEqual(c.store("1", "+FLAGS", "(\\Flagged)")[0], "OK")
        st = f.status_of("Shared/support", lambda s: s["HIGHESTMODSEQ"] > modseq)
        self.assertEqual(st["MESSAGES"], 2)
        self.assertEqual(c.store("1", "+FLAGS", "(\\Deleted)")[0], "OK")
        self.assertEqual(c.expunge()[0], "OK")
        f.status_of("Shared/support", lambda s: s["MESSAGES"] == 1)

        self.assertEqual(a.append("Team", None, None, message("team"))[0], "OK")
        f.status_of(TEAM, lambda s: s["MESSAGES"] == 1)
        # the owner's own mailbox not shared with bob is not told of
        self.assertEqual(a.create("Private")[0], "OK")
        self.assertEqual(a.append("Private", None, None, message("secret"))[0], "OK")
        self.assertEqual(a.append("Team", None, None, message("team 2"))[0], "OK")
        f.status_of(TEAM, lambda s: s["MESSAGES"] == 2)
        out = b"".join(f.settle())
        self.assertNotIn(b"Private", out)
        # bob's own \Seen is his: UNSEEN moves for him only
        r = self.raw(BOB)
        lines, t = r.cmd(b'SELECT "Shared/support"')
        self.assertIn(b"OK", t)
        lines, t = r.cmd(b"STORE 1 +FLAGS (\\Seen)")
        self.assertIn(b"OK", t)
        f.status_of("Shared/support", lambda s: s["UNSEEN"] == 0)
        c.close()

    def test_subtree_shared_and_subscribed(self):
        """SUBTREE "Shared" follows every shared mailbox bob may see,
        one made later too (MailboxName); SUBSCRIBED a subscribed one."""
        c = self.shared("Shared/desk", {BOB: "lr"})
        self.shared("Shared/hidden", {})
        f = self.follower(BOB, b'(subtree "Shared" (MessageNew MessageExpunge MailboxName))')
        self.assertEqual(c.append("Shared/desk", None, None, message("a"))[0], "OK")
        f.status_of("Shared/desk", lambda s: s["MESSAGES"] == 1)
        # a mailbox made later, once bob may see it
        self.assertEqual(c.create("Shared/later")[0], "OK")
        self.assertEqual(c.setacl("Shared/later", BOB, "lr")[0], "OK")
        self.assertEqual(c.append("Shared/later", None, None, message("b"))[0], "OK")
        f.status_of("Shared/later", lambda s: s["MESSAGES"] == 1)
        self.assertEqual(c.append("Shared/hidden", None, None, message("c"))[0], "OK")
        self.assertEqual(c.append("Shared/desk", None, None, message("d"))[0], "OK")
        f.status_of("Shared/desk", lambda s: s["MESSAGES"] == 2)
        out = b"".join(f.settle())
        self.assertNotIn(b"hidden", out)

        # SUBSCRIBED: a subscription to a shared mailbox
        b = self.imap(BOB)
        self.assertEqual(b.subscribe("Shared/desk")[0], "OK")
        g = self.follower(BOB, b"(subscribed (MessageNew MessageExpunge))")
        self.assertEqual(c.append("Shared/desk", None, None, message("e"))[0], "OK")
        g.status_of("Shared/desk", lambda s: s["MESSAGES"] == 3)
        self.assertEqual(c.append("Shared/later", None, None, message("f"))[0], "OK")
        self.assertEqual(c.append("Shared/desk", None, None, message("g"))[0], "OK")
        g.status_of("Shared/desk", lambda s: s["MESSAGES"] == 4)
        out = b"".join(g.settle())
        self.assertNotIn(b"later", out)
        # PERSONAL does not take them
        h = self.follower(BOB, b"(personal (MessageNew MessageExpunge))")
        self.assertEqual(c.append("Shared/desk", None, None, message("h"))[0], "OK")
        self.assertEqual(b.append("INBOX", None, None, message("mine"))[0], "OK")
        h.status_of("INBOX")
        out = b"".join(h.settle())
        self.assertNotIn(b"Shared/desk", out)

    def test_revoked_right_stops_reports(self):
        c = self.shared("Shared/rev", {BOB: "lr"})
        self.shared("Shared/marker", {BOB: "lr"})
        f = self.follower(BOB, b'(mailboxes ("Shared/rev" "Shared/marker") '
                          b'(MessageNew MessageExpunge))')
        self.assertEqual(c.append("Shared/rev", None, None, message("1"))[0], "OK")
        f.status_of("Shared/rev", lambda s: s["MESSAGES"] == 1)
        # r taken away, l kept; then everything
        for rights in ("l", None):
            if rights is None:
                self.assertEqual(c.deleteacl("Shared/rev", BOB)[0], "OK")
            else:
                self.assertEqual(c.setacl("Shared/rev", BOB, rights)[0], "OK")
            self.assertEqual(c.append("Shared/rev", None, None, message("2"))[0], "OK")
            self.assertEqual(c.append("Shared/marker", None, None, message("m"))[0], "OK")
            f.status_of("Shared/marker")
            out = b"".join(f.settle())
            self.assertNotIn(b"Shared/rev", out)
        # a third user without rights, naming it, hears nothing either
        a = self.follower(ALICE, b'(mailboxes ("Shared/rev" "INBOX") (MessageNew MessageExpunge))')
        self.assertEqual(c.append("Shared/rev", None, None, message("3"))[0], "OK")
        self.assertEqual(self.imap(ALICE).append("INBOX", None, None, message("x"))[0], "OK")
        a.status_of("INBOX")
        out = b"".join(a.settle())
        self.assertNotIn(b"Shared/rev", out)

    def test_hostile_filters(self):
        r = Follower(self.raw(BOB))
        ev = b" (MessageNew MessageExpunge)"
        for spec in (b'(subtree "Other Users/../x"' + ev + b")",
                     b'(mailboxes "Other Users/#public/x"' + ev + b")",
                     b'(subtree ("Other Users" "Shared")' + ev + b")",
                     b'(subtree "Other Users/' + BOB.encode() + b'"' + ev + b")",
                     b'(mailboxes "Shared/' + b"x" * 600 + b'"' + ev + b")"):
            lines, t = r.cmd(b"NOTIFY SET " + spec)
            self.assertRegex(t, rb"^t\d+ (OK|NO|BAD) ", spec[:60])
        for name in (b"Shared/\xff\xfe", b"Shared/\xed\xa0\x80", b"Shared/" + b"\xe2\x82" * 300):
            r.r.send(b"u NOTIFY SET (mailboxes {%d+}\r\n" % len(name) + name + ev + b")\r\n")
            lines, t = r.r.until(b"u")
            self.assertRegex(t, rb"^u (NO|BAD) ", name[:20])
        # more names than a session follows
        names = b" ".join(b'"Shared/n%d"' % i for i in range(1001))
        lines, t = r.cmd(b"NOTIFY SET (mailboxes (" + names + b")" + ev + b")")
        self.assertIn(b"NO [NOTIFICATIONOVERFLOW]", t)
        # more stores than a session watches
        names = b" ".join(b'"Other Users/u%d@example.org/x"' % i for i in range(40))
        lines, t = r.cmd(b"NOTIFY SET (mailboxes (" + names + b")" + ev + b")")
        self.assertIn(b"NO [NOTIFICATIONOVERFLOW]", t)
        lines, t = r.cmd(b"NOTIFY NONE")
        self.assertIn(b"OK", t)
        lines, t = r.cmd(b"NOOP")
        self.assertIn(b"OK", t)

    def test_selected_shared_mailbox_between_commands(self):
        """SELECTED on another user's mailbox: its new messages and
        expunges reach bob between commands (not in IDLE), whether NOTIFY
        was set before the SELECT or after it; no other filter watches
        alice's store."""
        a = self.imap(ALICE)
        self.assertEqual(a.create("Desk")[0], "OK")
        self.assertEqual(a.setacl("Desk", BOB, "lr")[0], "OK")
        desk = ("Other Users/" + ALICE + "/Desk").encode()
        before = Follower(self.raw(BOB))
        lines, t = before.cmd(b"NOTIFY SET (selected (MessageNew MessageExpunge))")
        self.assertIn(b"OK", t)
        lines, t = before.cmd(b'SELECT "' + desk + b'"')
        self.assertIn(b"OK", t)
        after = Follower(self.raw(BOB))
        lines, t = after.cmd(b'SELECT "' + desk + b'"')
        self.assertIn(b"OK", t)
        lines, t = after.cmd(b"NOTIFY SET (selected (MessageNew MessageExpunge))")
        self.assertIn(b"OK", t)

        def wait_line(f, want):
            while True:
                for i, x in enumerate(f.lines):
                    if x == want:
                        del f.lines[:i + 1]
                        return
                try:
                    f.lines.append(f.r.line())
                except OSError as e:
                    raise AssertionError("no %r in %r" % (want, f.lines[-20:])) from e

        self.assertEqual(a.append("Desk", None, None, message("new"))[0], "OK")
        for f in (before, after):
            wait_line(f, b"* 1 EXISTS\r\n")
        self.assertEqual(a.select("Desk")[0], "OK")
        self.assertEqual(a.store("1", "+FLAGS", "(\\Deleted)")[0], "OK")
        self.assertEqual(a.expunge()[0], "OK")
        for f in (before, after):
            wait_line(f, b"* 1 EXPUNGE\r\n")
        # Back to no selection: nothing of alice's store is reported.
        lines, t = before.cmd(b"UNSELECT")
        self.assertIn(b"OK", t)
        self.assertEqual(a.append("Desk", None, None, message("unheard"))[0], "OK")
        self.assertFalse([x for x in before.settle() if b"EXISTS" in x or b"STATUS" in x])


class NotifySharedPgsql(PrivatePgsql, NotifySharedBase):
    pg_database = "roost_notify_shared"


TestNotifyShared_pgsql = type("TestNotifyShared_pgsql", (NotifySharedPgsql, unittest.TestCase), {})

# pgsql runs in the PrivatePgsql class above, which brings its database.
backend_classes(globals(), NotifySharedBase, "TestNotifyShared_%s")

if __name__ == "__main__":
    unittest.main()
