"""Shared mailboxes through ACL (RFC 4314), LIST-MYRIGHTS (RFC 8440) and the
other users' namespace (RFC 2342), on every backend, with imaplib and raw
IMAP: alice grants bob lr, bob SELECTs (read-only) and FETCHes but cannot
STORE or EXPUNGE; alice grants more, bob can; alice revokes, bob's open
session and new SELECTs are refused; carol, a third user, sees nothing.
IDLE of bob sees alice's changes. Mail to alice+folder needs p for anyone.
Hostile names and identifiers are refused. `roost acl` sets, gets, lists."""
import imaplib
import os
import shutil
import smtplib
import subprocess
import unittest

from roosttest import PrivatePgsql, SharedServer, backend_classes, imap_session, quiet_logout
from test_imap_imapflow import ensure_imapflow, run_imapflow
from test_imap_raw import Raw

ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"
USERS = {ALICE: "alice-secret", BOB: "bob-secret", CAROL: "carol-secret"}
PREFIX = "Other Users/" + ALICE + "/"

imaplib.Commands.setdefault("LISTRIGHTS", ("AUTH", "SELECTED"))


def q(name):
    return '"' + name + '"'


def message(subject):
    return ("From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\n\r\nbody %s\r\n"
            % (subject, subject)).encode()


def select_and_idle(test, r, select, tag=b"i1"):
    """On raw session r: SELECT select (the command's argument, quoted as
    needed), then IDLE as tag, up to its continuation."""
    lines, t = r.cmd(b"SELECT " + select)
    test.assertIn(b"OK", t)
    r.send(tag + b" IDLE\r\n")
    test.assertTrue(r.line().startswith(b"+ "))


def idle_hears(test, r, want, tag=b"i1"):
    """On raw session r, in IDLE as tag: the next line is want; then DONE
    and the tagged OK. Returns the lines before that."""
    r.sock.settimeout(60)
    test.assertEqual(r.line(), want)
    r.send(b"DONE\r\n")
    lines, t = r.until(tag)
    test.assertIn(b"OK", t)
    return lines


class AclBase(SharedServer):
    backend = "lmdb"
    server_options = {"users": USERS, "listeners": ("imap", "smtp")}

    def imap(self, user):
        return imap_session(self, self.srv.port("imap"), user, USERS[user], 15)

    logout = staticmethod(quiet_logout)

    def raw(self, user):
        r = Raw(self.srv.port("imap")).login(user.encode(), USERS[user].encode())
        self.addCleanup(r.close)
        return r

    def team(self, name, n=2):
        """alice's mailbox name with n messages; the name bob uses for it."""
        a = self.imap(ALICE)
        self.assertEqual(a.create(name)[0], "OK")
        for i in range(n):
            self.assertEqual(a.append(name, None, None, message("%s %d" % (name, i)))[0], "OK")
        return a, q(PREFIX + name)

    def test_capability_and_namespace(self):
        r = self.raw(BOB)
        lines, t = r.cmd(b"CAPABILITY")
        caps = lines[0].split()
        for cap in (b"ACL", b"RIGHTS=texk", b"LIST-MYRIGHTS", b"NAMESPACE"):
            self.assertIn(cap, caps)
        lines, t = r.cmd(b"NAMESPACE")
        self.assertIn(b"OK", t)
        self.assertEqual(lines[0], b'* NAMESPACE (("" "/")) (("Other Users/" "/")) '
                                   b'(("Shared/" "/"))\r\n')

    def test_share_grant_more_revoke(self):
        a, shared = self.team("Team")
        b = self.imap(BOB)
        # nothing granted: bob cannot see it
        typ, dat = b.select(shared)
        self.assertEqual(typ, "NO")
        self.assertIn(b"NONEXISTENT", dat[0])
        self.assertNotIn(b"/Team", b"".join(x for x in b.list(q(""), q("Other Users/*"))[1] if x))

        # lr: read-only, FETCH works, STORE and EXPUNGE do not
        self.assertEqual(a.setacl("Team", BOB, "lr")[0], "OK")
        typ, dat = a.getacl("Team")
        self.assertEqual(typ, "OK")
        self.assertIn(b'"bob@example.org" "lr"', dat[0])
        self.assertIn(b'"alice@example.org" "lrswipkxteacd"', dat[0])
        typ, dat = b.myrights(shared)
        self.assertEqual(typ, "OK")
        self.assertTrue(dat[0].endswith(b' "lrp"'), dat)
        typ, dat = b.list(q(""), q("Other Users/*"))
        self.assertEqual(typ, "OK")
        names = [l.split(b' "/" ')[1] for l in dat]
        self.assertIn(b'"Other Users/alice@example.org/Team"', names)
        self.assertIn(b'"Other Users/alice@example.org"', names)
        # SELECT comes back [READ-ONLY] (imaplib takes that for an error:
        # raw IMAP here)
        r = self.raw(BOB)
        lines, t = r.cmd(b"SELECT " + shared.encode())
        self.assertIn(b"OK [READ-ONLY]", t)
        self.assertIn(b"* 2 EXISTS\r\n", lines)
        lines, t = r.cmd(b"FETCH 1:* (BODY.PEEK[])")
        self.assertIn(b"OK", t)
        self.assertEqual(len(lines), 2)
        self.assertIn(b"Subject: Team 0", lines[0])
        lines, t = r.cmd(b"STORE 1 +FLAGS (\\Seen)")
        self.assertIn(b" NO ", t)
        lines, t = r.cmd(b"FETCH 1 (BODY[])")  # \Seen not set either
        self.assertNotIn(b"\\Seen", b"".join(lines))
        lines, t = r.cmd(b"EXPUNGE")
        self.assertIn(b" NO ", t)
        lines, t = r.cmd(b"MOVE 1 INBOX")
        self.assertIn(b" NO ", t)
        a.select("Team")
        self.assertEqual(a.search(None, "ALL")[1][0], b"1 2")
        typ, dat = b.setacl(shared, BOB, "lrswipkxtea")
        self.assertEqual(typ, "NO")
        self.assertIn(b"NOPERM", dat[0])
        self.assertEqual(b.getacl(shared)[0], "NO")

        # more rights: a new SELECT is read-write; STORE, EXPUNGE, APPEND
        self.assertEqual(a.setacl("Team", BOB, "+stei")[0], "OK")
        typ, dat = b.select(shared)
        self.assertEqual(typ, "OK")
        self.assertIn("READ-WRITE", b.untagged_responses)
        self.assertEqual(b.store("1", "+FLAGS", "(\\Seen \\Deleted)")[0], "OK")
        self.assertEqual(b.expunge()[0], "OK")
        self.assertEqual(b.append(shared, None, None, message("from bob"))[0], "OK")
        a.select("Team")
        typ, dat = a.search(None, "ALL")
        self.assertEqual(len(dat[0].split()), 2)
        typ, dat = a.fetch("1", "(FLAGS)")
        self.assertNotIn(b"\\Deleted", dat[0])
        # a copy from the shared mailbox into bob's own
        b.select(shared)
        self.assertEqual(b.copy("1:*", "INBOX")[0], "OK")
        self.assertEqual(b.status("INBOX", "(MESSAGES)")[0], "OK")

        # revoked: the open session's next change fails, a new SELECT too
        self.assertEqual(a.deleteacl("Team", BOB)[0], "OK")
        typ, dat = b.store("1", "+FLAGS", "(\\Flagged)")
        self.assertEqual(typ, "NO")
        typ, dat = b.select(shared)
        self.assertEqual(typ, "NO")

    def test_third_user_sees_nothing(self):
        a, shared = self.team("Private")
        self.assertEqual(a.setacl("Private", BOB, "lrswite")[0], "OK")
        c = self.imap(CAROL)
        self.assertEqual(c.select(shared)[0], "NO")
        self.assertEqual(c.status(shared, "(MESSAGES)")[0], "NO")
        self.assertEqual(c.getacl(shared)[0], "NO")
        self.assertEqual(c.myrights(shared)[0], "NO")
        self.assertNotIn(b"Private",
                         b"".join(x for x in c.list(q(""), q("Other Users/*"))[1] if x))
        self.assertEqual(c.list(q(""), "*")[0], "OK")
        self.assertNotIn(b"Private", b"".join(x for x in c.list(q(""), "*")[1] if x))
        self.assertEqual(c.append(shared, None, None, message("x"))[0], "NO")
        self.assertEqual(c.delete(shared)[0], "NO")
        self.assertEqual(c.rename(shared, "Mine")[0], "NO")
        # nor anyone's INBOX
        self.assertEqual(c.select(q("Other Users/" + ALICE + "/INBOX"))[0], "NO")
        self.assertEqual(c.select(q("Other Users/" + BOB + "/INBOX"))[0], "NO")

    def test_authenticated_and_list_myrights(self):
        a, shared = self.team("Notices", 1)
        self.assertEqual(a.setacl("Notices", "authenticated", "lr")[0], "OK")
        r = self.raw(CAROL)
        lines, t = r.cmd(b'LIST "" "Other Users/*" RETURN (MYRIGHTS)')
        self.assertIn(b"OK", t)
        self.assertIn(b'* MYRIGHTS "Other Users/alice@example.org/Notices" "lrp"\r\n', lines)
        lines, t = r.cmd(b'LIST "" "%" RETURN (MYRIGHTS)')
        self.assertIn(b'* MYRIGHTS "INBOX" "lrswipkxteacd"\r\n', lines)
        self.assertIn(b'* LIST (\\Noselect \\HasChildren) "/" "Other Users"\r\n', lines)
        lines, t = r.cmd(b'LISTRIGHTS "Notices" "bob@example.org"')
        self.assertIn(b"NO", t)  # carol owns no Notices
        lines, t = r.cmd(b'EXAMINE "Other Users/alice@example.org/Notices"')
        self.assertIn(b"OK [READ-ONLY]", t)
        ra = self.raw(ALICE)
        lines, t = ra.cmd(b'LISTRIGHTS "Notices" "bob@example.org"')
        self.assertIn(b"OK", t)
        self.assertEqual(lines[0], b'* LISTRIGHTS "Notices" "bob@example.org" "" '
                                   b'l r s w i p k x t e a\r\n')
        lines, t = ra.cmd(b'LISTRIGHTS "Notices" "alice@example.org"')
        self.assertEqual(lines[0], b'* LISTRIGHTS "Notices" "alice@example.org" '
                                   b'lrswipkxtea\r\n')
        # the obsolete c and d
        lines, t = ra.cmd(b'SETACL "Notices" "bob@example.org" "lrcd"')
        self.assertIn(b"OK", t)
        lines, t = ra.cmd(b'GETACL "Notices"')
        self.assertIn(b'"bob@example.org" "lrkxtecd"', lines[0])

    def test_subscribe_shared(self):
        a, shared = self.team("Subs", 1)
        self.assertEqual(a.setacl("Subs", BOB, "lr")[0], "OK")
        r = self.raw(BOB)
        lines, t = r.cmd(b"SUBSCRIBE " + shared.encode())
        self.assertIn(b"OK", t)
        lines, t = r.cmd(b'LSUB "" "Other Users/*"')
        self.assertIn(b'* LSUB (\\HasNoChildren) "/" ' + shared.encode() + b"\r\n", lines)
        lines, t = r.cmd(b'LIST (SUBSCRIBED) "" "Other Users/*"')
        self.assertIn(b'* LIST (\\HasNoChildren \\Subscribed) "/" ' + shared.encode() + b"\r\n",
                      lines)
        # revoked: still subscribed, no longer there for bob
        self.assertEqual(a.deleteacl("Subs", BOB)[0], "OK")
        lines, t = r.cmd(b'LIST (SUBSCRIBED) "" "Other Users/*"')
        self.assertIn(b'* LIST (\\NonExistent \\Subscribed) "/" ' + shared.encode() + b"\r\n",
                      lines)

    def test_idle_sees_the_owners_changes(self):
        a, shared = self.team("Watched", 1)
        self.assertEqual(a.setacl("Watched", BOB, "lr")[0], "OK")
        r = self.raw(BOB)
        select_and_idle(self, r, b'"Other Users/alice@example.org/Watched"')
        self.assertEqual(a.append("Watched", None, None, message("new"))[0], "OK")
        idle_hears(self, r, b"* 2 EXISTS\r\n")

    def test_per_user_seen(self):
        """Each reader's \\Seen is its own; the owner's stays the owner's."""
        a, shared = self.team("Desk", 3)
        self.assertEqual(a.setacl("Desk", BOB, "lrsw")[0], "OK")
        self.assertEqual(a.setacl("Desk", CAROL, "lrs")[0], "OK")
        a.select("Desk")
        self.assertEqual(a.store("1", "+FLAGS", "(\\Seen)")[0], "OK")
        # alice IDLEs on her mailbox; bob has a second session IDLE too
        ra = self.raw(ALICE)
        select_and_idle(self, ra, b'"Desk"')
        rb = self.raw(BOB)
        select_and_idle(self, rb, shared.encode(), b"i2")

        b = self.imap(BOB)
        self.assertEqual(b.select(shared)[0], "OK")
        typ, dat = b.fetch("1:*", "(FLAGS)")
        self.assertNotIn(b"\\Seen", b"".join(dat))
        typ, dat = b.store("2", "+FLAGS", "(\\Seen)")
        self.assertEqual(typ, "OK")
        self.assertIn(b"\\Seen", dat[0])
        typ, dat = b.fetch("3", "(BODY[])")  # sets bob's \\Seen
        typ, dat = b.fetch("1:*", "(FLAGS)")
        flags = [d for d in dat if isinstance(d, bytes)]
        self.assertNotIn(b"\\Seen", flags[0])
        self.assertIn(b"\\Seen", flags[1])
        self.assertIn(b"\\Seen", flags[2])
        # bob's other session hears of it in IDLE
        rb.sock.settimeout(15)
        got = b""
        while b"3 FETCH" not in got:
            got += rb.line()
        self.assertIn(b"* 2 FETCH (FLAGS (\\Seen))", got)
        self.assertIn(b"* 3 FETCH (FLAGS (\\Seen))", got)
        rb.send(b"DONE\r\n")
        lines, t = rb.until(b"i2")
        self.assertIn(b"OK", t)
        # alice's IDLE hears nothing of bob's \\Seen: the next thing it
        # tells is the new message alice appends after it
        self.assertEqual(a.append("Desk", None, None, message("later"))[0], "OK")
        lines = idle_hears(self, ra, b"* 4 EXISTS\r\n")
        self.assertNotIn(b"FETCH", b"".join(lines))

        # owner's flags as they were
        a.select("Desk")
        typ, dat = a.fetch("1:3", "(FLAGS)")
        self.assertIn(b"\\Seen", dat[0])
        self.assertNotIn(b"\\Seen", dat[1])
        self.assertNotIn(b"\\Seen", dat[2])
        # SEARCH and STATUS per user
        self.assertEqual(a.search(None, "UNSEEN")[1][0], b"2 3 4")
        self.assertEqual(a.search(None, "SEEN")[1][0], b"1")
        b.noop()
        self.assertEqual(b.search(None, "UNSEEN")[1][0], b"1 4")
        self.assertEqual(b.search(None, "SEEN")[1][0], b"2 3")
        c = self.imap(CAROL)
        self.assertEqual(c.select(shared)[0], "OK")
        self.assertEqual(c.search(None, "UNSEEN")[1][0], b"1 2 3 4")
        self.assertEqual(c.store("4", "+FLAGS", "(\\Seen)")[0], "OK")
        self.assertEqual(c.search(None, "UNSEEN")[1][0], b"1 2 3")
        # carol has s but not w: \\Flagged is refused, \\Seen kept
        typ, dat = c.store("1", "+FLAGS", "(\\Flagged)")
        self.assertEqual(typ, "NO")
        st = lambda m, name: m.status(name, "(UNSEEN MESSAGES)")[1][0]
        self.assertIn(b"(MESSAGES 4 UNSEEN 3)", st(a, "Desk"))
        self.assertIn(b"(MESSAGES 4 UNSEEN 2)", st(self.imap(BOB), shared))
        self.assertIn(b"(MESSAGES 4 UNSEEN 3)", st(self.imap(CAROL), shared))
        # bob takes \\Seen away again: only bob's goes
        self.assertEqual(b.store("2:3", "-FLAGS", "(\\Seen)")[0], "OK")
        self.assertEqual(b.search(None, "UNSEEN")[1][0], b"1 2 3 4")
        self.assertEqual(a.search(None, "UNSEEN")[1][0], b"2 3 4")
        self.assertEqual(c.search(None, "UNSEEN")[1][0], b"1 2 3")
        # a SELECT reports the reader's first unseen
        r = self.raw(CAROL)
        lines, t = r.cmd(b"SELECT " + shared.encode())
        self.assertIn(b"* OK [UNSEEN 1]", b"".join(lines))

    def test_shared_rights_quota_metadata(self):
        """PERMANENTFLAGS by the reader's rights, the owner's quota root,
        the owner's /shared METADATA, and a revoked r in an open session."""
        a, shared = self.team("Ops", 1)
        ra = self.raw(ALICE)
        lines, t = ra.cmd(b'SETMETADATA "Ops" (/shared/comment "ops desk" '
                          b'/private/comment "mine")')
        self.assertIn(b"OK", t)
        self.assertEqual(a.setacl("Ops", BOB, "lrs")[0], "OK")
        rb = self.raw(BOB)
        lines, t = rb.cmd(b"SELECT " + shared.encode())
        self.assertIn(b"OK [READ-WRITE]", t)
        self.assertIn(b"* OK [PERMANENTFLAGS (\\Seen)] Flags permitted\r\n", lines)
        # the owner's quota root, by the owner's name
        lines, t = rb.cmd(b"GETQUOTAROOT " + shared.encode())
        self.assertIn(b"OK", t)
        self.assertEqual(lines[0], b"* QUOTAROOT " + shared.encode() + b' "alice@example.org"\r\n')
        self.assertTrue(lines[1].startswith(b'* QUOTA "alice@example.org" ('), lines)
        lines, t = rb.cmd(b'GETQUOTA "alice@example.org"')
        self.assertIn(b"OK", t)
        lines, t = rb.cmd(b'GETQUOTAROOT "INBOX"')
        self.assertIn(b'* QUOTAROOT "INBOX" ""\r\n', lines)
        rc = self.raw(CAROL)
        lines, t = rc.cmd(b'GETQUOTA "bob@example.org"')  # bob shares nothing
        self.assertIn(b"NO [NONEXISTENT]", t)
        lines, t = rc.cmd(b'GETQUOTA "' + b"\xff" * 10 + b'"')
        self.assertRegex(t, rb"^t\d+ (NO|BAD) ")
        # the owner's /shared entries; never the owner's /private ones
        lines, t = rb.cmd(b"GETMETADATA " + shared.encode() +
                          b" (/shared/comment /private/comment)")
        self.assertIn(b"OK", t)
        got = b"".join(lines)
        self.assertIn(b"ops desk", got)
        self.assertNotIn(b"mine", got)
        lines, t = rb.cmd(b"SETMETADATA " + shared.encode() + b' (/shared/comment "bob")')
        self.assertIn(b"NO", t)
        lines, t = rc.cmd(b"GETMETADATA " + shared.encode() + b" (/shared/comment)")
        self.assertIn(b"NO [NONEXISTENT]", t)
        self.assertEqual(a.setacl("Ops", BOB, "lrsw")[0], "OK")
        lines, t = rb.cmd(b"SETMETADATA " + shared.encode() + b' (/shared/comment "bob")')
        self.assertIn(b"OK", t)
        lines, t = rb.cmd(b"SETMETADATA " + shared.encode() + b' (/private/comment "bob")')
        self.assertIn(b"NO", t)
        lines, t = ra.cmd(b'GETMETADATA "Ops" (/shared/comment /private/comment)')
        self.assertIn(b'"/shared/comment" "bob"', b"".join(lines))
        self.assertIn(b'"/private/comment" "mine"', b"".join(lines))
        # t without w: \\Deleted and \\Seen, no other flag, no keyword
        self.assertEqual(a.setacl("Ops", BOB, "lrste")[0], "OK")
        lines, t = rb.cmd(b"SELECT " + shared.encode())
        self.assertIn(b"* OK [PERMANENTFLAGS (\\Deleted \\Seen)] Flags permitted\r\n", lines)
        lines, t = rb.cmd(b"STORE 1 +FLAGS (\\Deleted \\Flagged $Work)")
        self.assertIn(b"OK", t)
        self.assertNotIn(b"Flagged", b"".join(lines))
        self.assertNotIn(b"$Work", b"".join(lines))
        lines, t = rb.cmd(b"STORE 1 -FLAGS (\\Deleted)")
        self.assertIn(b"OK", t)
        # r revoked while selected: the next command, a read, is refused
        self.assertEqual(a.setacl("Ops", BOB, "l")[0], "OK")
        lines, t = rb.cmd(b"FETCH 1 (FLAGS)")
        self.assertIn(b"* OK [CLOSED]", b"".join(lines))
        self.assertIn(b"NO [NOPERM]", t)
        lines, t = rb.cmd(b"NOOP")
        self.assertIn(b"OK", t)
        lines, t = rb.cmd(b"SELECT " + shared.encode())
        self.assertIn(b"NO", t)
        # and with nothing left, in IDLE too: the session hears nothing more
        self.assertEqual(a.setacl("Ops", BOB, "lr")[0], "OK")
        select_and_idle(self, rb, shared.encode())
        self.assertEqual(a.deleteacl("Ops", BOB)[0], "OK")
        self.assertEqual(a.append("Ops", None, None, message("after"))[0], "OK")
        rb.send(b"DONE\r\n")
        lines, t = rb.until(b"i1")
        self.assertNotIn(b"EXISTS", b"".join(lines))
        lines, t = rb.cmd(b"FETCH 1 (FLAGS)")
        self.assertIn(b"* OK [CLOSED]", b"".join(lines))
        self.assertIn(b"NO [NOPERM]", t)

    def test_hostile(self):
        a, shared = self.team("Hostile", 0)
        r = self.raw(ALICE)
        for ident in (b'"-bob@example.org"', b'"a/b"', b'""', b'"' + b"x" * 5000 + b'"',
                      b"{3+}\r\nb\xff@", b'"#shared"'):
            lines, t = r.cmd(b'SETACL "Hostile" ' + ident + b' "lr"')
            self.assertIn(b" BAD ", t, ident[:40])
        for rights in (b'"lrz"', b'"l r"', b'"+-l"', b'"' + b"l" * 5000 + b'"'):
            lines, t = r.cmd(b'SETACL "Hostile" "bob@example.org" ' + rights)
            self.assertIn(b" BAD ", t, rights[:40])
        lines, t = r.cmd(b'SETACL "Hostile" "alice@example.org" "lr"')
        self.assertIn(b"NO [CANNOT]", t)
        lines, t = r.cmd(b'SETACL "Nope" "bob@example.org" "lr"')
        self.assertIn(b"NO [NONEXISTENT]", t)
        lines, t = r.cmd(b'SETACL "Hostile" "bob@example.org"')
        self.assertIn(b" BAD ", t)
        b = self.raw(BOB)
        for name in (b'"Other Users/../alice@example.org/Hostile"',
                     b'"Other Users/alice@example.org/../bob@example.org/INBOX"',
                     b'"Other Users/%"', b'"Other Users/*"', b'"Other Users"',
                     b'"Other Users/alice@example.org"',
                     b'"Other Users/alice@example.org/Hostile/../../x"',
                     b'"Other Users/' + b"a" * 600 + b'/INBOX"'):
            for verb in (b"SELECT ", b"STATUS ", b"GETACL ", b"MYRIGHTS ", b"DELETE "):
                args = b" (MESSAGES)" if verb == b"STATUS " else b""
                lines, t = b.cmd(verb + name + args)
                self.assertRegex(t, rb"^t\d+ (NO|BAD) ", (verb, name[:60], t))
            lines, t = b.cmd(b"CREATE " + name)
            self.assertRegex(t, rb"^t\d+ (NO|BAD) ", (name[:60], t))
        # bad UTF-8 and overlong names in every command that takes a
        # shared mailbox (as a literal: a quoted string must be ASCII)
        bad = [b"Other Users/alice@example.org/\xff\xfe", b"Other Users/\xc3(/INBOX",
               b"Other Users/alice@example.org/Hostile/\xed\xa0\x80",
               b"Other Users/" + b"\xe2\x82" * 300 + b"/x"]
        for name in bad:
            lit = b"{%d+}\r\n" % len(name) + name
            for verb, args in ((b"SELECT ", b""), (b"STATUS ", b" (UNSEEN)"),
                               (b"GETACL ", b""), (b"MYRIGHTS ", b""),
                               (b"SETACL ", b' "bob@example.org" "lr"'),
                               (b"DELETEACL ", b' "bob@example.org"'),
                               (b"LISTRIGHTS ", b' "bob@example.org"'),
                               (b"GETQUOTAROOT ", b""), (b"GETMETADATA ", b" (/shared/x)"),
                               (b"SETMETADATA ", b' (/shared/x "v")')):
                lines, t = b.cmd(verb + lit + args)
                self.assertRegex(t, rb"^t\d+ (NO|BAD) ", (verb, name[:40], t))
        self.assertEqual(a.setacl("Hostile", BOB, "lr")[0], "OK")
        # a huge ACL: at most 64 identifiers, then NO, and the ACL stays
        for i in range(70):
            lines, t = r.cmd(b'SETACL "Hostile" "user%d@example.org" "lr"' % i)
            if i < 62:
                self.assertIn(b"OK", t, i)
        self.assertRegex(t, rb"^t\d+ NO ")
        lines, t = r.cmd(b'GETACL "Hostile"')
        self.assertIn(b"OK", t)
        self.assertLessEqual(lines[0].count(b"@example.org"), 65)
        # a huge entry list on a shared mailbox
        lines, t = b.cmd(b'GETMETADATA "Other Users/alice@example.org/Hostile" (' +
                         b" ".join(b"/shared/e%d" % i for i in range(3000)) + b")")
        self.assertRegex(t, rb"^t\d+ (OK|NO|BAD) ")
        # still serving
        lines, t = b.cmd(b"NOOP")
        self.assertIn(b"OK", t)

    def test_folder_delivery_needs_post(self):
        a = self.imap(ALICE)
        self.assertEqual(a.create("lists")[0], "OK")
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.sendmail("s@remote.example", ["alice+lists@example.org"], message("one"))
        self.assertEqual(a.status("lists", "(MESSAGES)")[1][0], b'"lists" (MESSAGES 1)')
        inbox = int(a.status("INBOX", "(MESSAGES)")[1][0].split()[-1].rstrip(b")"))
        self.assertEqual(a.deleteacl("lists", "anyone")[0], "OK")
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.sendmail("s@remote.example", ["alice+lists@example.org"], message("two"))
        self.assertEqual(a.status("lists", "(MESSAGES)")[1][0], b'"lists" (MESSAGES 1)')
        self.assertEqual(a.status("INBOX", "(MESSAGES)")[1][0],
                         b'"INBOX" (MESSAGES %d)' % (inbox + 1))
        # bob's address cannot deliver into alice's mailboxes
        self.assertEqual(a.setacl("lists", "anyone", "p")[0], "OK")
        b = self.imap(BOB)
        b0 = int(b.status("INBOX", "(MESSAGES)")[1][0].split()[-1].rstrip(b")"))
        res = self.srv.cli("deliver", "-a", "bob+Other Users/alice@example.org/lists@example.org",
                           input=b"Subject: x\n\nx\n", check=False)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(a.status("lists", "(MESSAGES)")[1][0], b'"lists" (MESSAGES 1)')
        self.assertEqual(b.status("INBOX", "(MESSAGES)")[1][0],
                         b'"INBOX" (MESSAGES %d)' % (b0 + 1))

    @unittest.skipIf(shutil.which("node") is None, "node not installed")
    def test_imapflow(self):
        if not ensure_imapflow():
            self.skipTest("imapflow could not be installed with npm")
        a, shared = self.team("Flow", 2)
        self.srv.cli("acl", "set", ALICE, "Flow", BOB, "lr")
        out = run_imapflow(self, "imap_imapflow_acl.js", 90, IMAP_PORT=str(self.srv.port("imap")),
                           SHARED=PREFIX + "Flow")
        self.assertIn(PREFIX + "Flow", out["list"])
        self.assertTrue(out["readOnly"])
        self.assertEqual(out["exists"], 2)
        self.assertEqual(out["subjects"], ["Flow 0", "Flow 1"])
        self.assertNotEqual(out["flagged"], True)
        other = out["namespaces"]["other"]
        self.assertEqual(other[0]["prefix"], "Other Users/")
        a.select("Flow")
        self.assertNotIn(b"\\Flagged", a.fetch("1", "(FLAGS)")[1][0])

    def test_cli(self):
        a, shared = self.team("Cli", 1)
        self.srv.cli("acl", "set", ALICE, "Cli", BOB, "lr")
        self.srv.cli("acl", "set", ALICE, "Cli", BOB, "+w")
        out = self.srv.cli("acl", "get", ALICE, "Cli").stdout
        self.assertEqual(out, "alice@example.org lrswipkxteacd\nanyone p\nbob@example.org lrw\n")
        out = self.srv.cli("acl", "list", BOB).stdout
        self.assertIn("shared\tOther Users/alice@example.org/Cli\tlrwp\n", out)
        out = self.srv.cli("acl", "list", ALICE).stdout
        self.assertIn("Cli\tbob@example.org\tlrw\n", out)
        b = self.imap(BOB)
        self.assertEqual(b.select(shared)[0], "OK")
        self.srv.cli("acl", "set", ALICE, "Cli", BOB, "none")
        self.assertEqual(b.select(shared)[0], "NO")
        res = self.srv.cli("acl", "set", ALICE, "Cli", BOB, "lrz", check=False)
        self.assertNotEqual(res.returncode, 0)
        res = self.srv.cli("acl", "set", ALICE, "Cli", ALICE, "lr", check=False)
        self.assertNotEqual(res.returncode, 0)
        res = self.srv.cli("acl", "get", ALICE, "Nope", check=False)
        self.assertNotEqual(res.returncode, 0)


class SharedNsServer(SharedServer):
    """AclBase's server (on cls.backend), and its imap, logout and raw,
    with an aliases file of its own (cls.aliases its text, RoostServer's
    aliases); cls.shared_conf is laid over the configuration, then the
    class's extra_conf (PrivatePgsql's). The base of the shared-namespace
    classes here and in test_imap_notify_shared."""
    aliases = "support: #public+support\n"
    shared_conf = {}

    @classmethod
    def server_args(cls):
        conf = dict(cls.shared_conf)
        conf.update(getattr(cls, "extra_conf", {}))
        return dict(AclBase.server_options, backend=cls.backend, conf=conf, aliases=cls.aliases)

    imap = AclBase.imap
    logout = AclBase.__dict__["logout"]
    raw = AclBase.raw

    def send(self, rcpt, subject):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            return s.sendmail("s@remote.example", [rcpt], message(subject))

    def messages(self, m, name):
        typ, dat = m.status(q(name), "(MESSAGES)")
        self.assertEqual(typ, "OK", dat)
        return int(dat[0].split()[-1].rstrip(b")"))


class SharedNsBase(SharedNsServer):
    """The shared namespace "Shared/" (RFC 2342): carol is its
    administrator ([acl] shared_admins), nobody owns its mailboxes, every
    user is a reader with its own \\Seen, and mail reaches Shared/support
    through the alias support@ -> #public+support."""
    aliases = "support: #public+support\nsneaky: #public+INBOX\n"
    shared_conf = {"acl": {"shared_admins": CAROL},
                   "quota": {"shared_messages": "100", "admins": CAROL}}

    def test_shared_namespace(self):
        a, b, c = self.imap(ALICE), self.imap(BOB), self.imap(CAROL)
        # only the administrator makes its top-level mailboxes
        self.assertEqual(b.create("Shared/support")[0], "NO")
        self.assertEqual(c.create("Shared/support")[0], "OK")
        self.assertEqual(c.setacl("Shared/support", BOB, "lrswite")[0], "OK")
        self.assertEqual(c.setacl("Shared/support", ALICE, "lr")[0], "OK")
        typ, dat = c.getacl("Shared/support")
        self.assertEqual(typ, "OK")
        self.assertIn(b'"bob@example.org" "lrswite"', dat[0])
        self.assertNotIn(b"#public", dat[0])
        self.assertEqual(b.getacl("Shared/support")[0], "NO")
        self.assertEqual(c.myrights("Shared/support")[1][0],
                         b'"Shared/support" "lrswipkxteacd"')

        # mail through the alias, twice
        self.assertEqual(self.send("support@example.org", "help one"), {})
        self.assertEqual(self.send("support@example.org", "help two"), {})
        self.assertEqual(self.messages(b, "Shared/support"), 2)
        self.assertEqual(self.messages(a, "Shared/support"), 2)

        # LIST, LIST-EXTENDED, LIST-MYRIGHTS, LSUB
        typ, dat = b.list(q(""), q("*"))
        self.assertIn(b'(\\HasNoChildren) "/" "Shared/support"', dat)
        self.assertTrue(any(x.endswith(b' "/" "Shared"') and b"\\Noselect" in x for x in dat),
                        dat)
        r = self.raw(BOB)
        lines, t = r.cmd(b'LIST "" "Shared/%" RETURN (MYRIGHTS SUBSCRIBED)')
        self.assertIn(b"OK", t)
        self.assertIn(b'* MYRIGHTS "Shared/support" "lrswipte"\r\n', lines)
        self.assertEqual(b.subscribe("Shared/support")[0], "OK")
        typ, dat = b.lsub(q(""), q("Shared/*"))
        self.assertIn(b'"Shared/support"', b"".join(dat))
        lines, t = r.cmd(b'LIST (SUBSCRIBED) "" "Shared/*"')
        self.assertIn(b"\\Subscribed", b"".join(lines))
        typ, dat = self.imap(ALICE).list(q(""), q("Shared/*"))
        self.assertIn(b'"Shared/support"', b"".join(x for x in dat if x))

        # per-user \Seen: every user is a reader
        self.assertEqual(b.select("Shared/support")[0], "OK")
        self.assertEqual(b.store("1", "+FLAGS", "(\\Seen)")[0], "OK")
        ra = self.raw(ALICE)
        lines, t = ra.cmd(b'EXAMINE "Shared/support"')
        self.assertIn(b"OK [READ-ONLY]", t)
        lines, t = ra.cmd(b"FETCH 1:* (FLAGS)")
        self.assertNotIn(b"\\Seen", b"".join(lines))
        typ, dat = c.status("Shared/support", "(UNSEEN)")
        self.assertEqual(dat[0], b'"Shared/support" (UNSEEN 2)')
        typ, dat = b.status("Shared/support", "(UNSEEN)")
        self.assertEqual(dat[0], b'"Shared/support" (UNSEEN 1)')
        lines, t = ra.cmd(b"STORE 1 +FLAGS (\\Flagged)")
        self.assertIn(b" NO ", t)
        self.assertEqual(a.append("Shared/support", None, None, message("no"))[0], "NO")

        # IDLE of alice (a reader with lr) hears carol's APPEND
        select_and_idle(self, ra, b'"Shared/support"')
        self.assertEqual(c.append("Shared/support", None, None, message("by carol"))[0], "OK")
        idle_hears(self, ra, b"* 3 EXISTS\r\n")

        # APPEND, COPY, MOVE, EXPUNGE by bob under his rights
        self.assertEqual(b.append("Shared/support", "(\\Seen)", None, message("by bob"))[0],
                         "OK")
        self.assertEqual(b.select("Shared/support")[0], "OK")
        self.assertEqual(b.copy("1", "INBOX")[0], "OK")
        typ, dat = b.uid("MOVE", "1", "INBOX")
        self.assertEqual(typ, "OK", dat)
        self.assertEqual(b.store("1", "+FLAGS", "(\\Deleted)")[0], "OK")
        self.assertEqual(b.expunge()[0], "OK")
        self.assertEqual(self.messages(c, "Shared/support"), 2)
        b.close()

        # the quota root of the namespace
        typ, dat = b.getquotaroot("Shared/support")
        self.assertEqual(typ, "OK", dat)
        self.assertIn(b'"Shared/support" "#public"', dat[0][0])
        self.assertIn(b"MESSAGE 2 100", dat[1][0])
        typ, dat = b.getquota(q("#public"))
        self.assertEqual(typ, "OK", dat)
        self.assertEqual(self.imap(CAROL).getquota(q("#public"))[0], "OK")
        rc = self.raw(CAROL)
        lines, t = rc.cmd(b'SETQUOTA "#public" (MESSAGE 5)')
        self.assertIn(b"NO [CANNOT]", t)

        # METADATA: /shared written by w, read by r
        lines, t = rc.cmd(b'SETMETADATA "Shared/support" (/shared/comment "the desk")')
        self.assertIn(b"OK", t)
        lines, t = ra.cmd(b'GETMETADATA "Shared/support" (/shared/comment)')
        self.assertIn(b"OK", t)
        self.assertIn(b"the desk", b"".join(lines))

        # RENAME and DELETE: the administrator only
        self.assertEqual(b.delete("Shared/support")[0], "NO")
        self.assertEqual(b.rename("Shared/support", "Shared/x")[0], "NO")
        self.assertEqual(c.rename("Shared/support", "Shared/help")[0], "OK")
        self.assertEqual(self.messages(b, "Shared/help"), 2)
        self.assertEqual(c.rename("Shared/help", "Mine")[0], "NO")
        self.assertEqual(c.create("Shared/help/2026")[0], "OK")
        self.assertEqual(b.create("Shared/help/bob")[0], "NO")
        self.assertEqual(c.delete("Shared/help/2026")[0], "OK")
        self.assertEqual(c.delete("Shared/help")[0], "OK")
        self.assertEqual(b.select("Shared/help")[0], "NO")

    def test_shared_hostile(self):
        c = self.imap(CAROL)
        self.assertEqual(c.create("Shared/desk")[0], "OK")
        r = self.raw(CAROL)
        b = self.raw(BOB)
        names = [b'"Shared/../x"', b'"Shared/"', b'"Shared"', b'"Shared/INBOX"',
                 b'"Shared/inbox/x"', b'"Shared//desk"', b'"Shared/desk/.."',
                 b'"Other Users/#public/desk"', b'"Other Users/#PUBLIC/desk"',
                 b'"Other Users/%23public/desk"', b'"Other Users/#public"',
                 b'"Other Users/#shared/desk"', b'"Shared/' + b"x" * 600 + b'"']
        for who in (r, b):
            for name in names:
                for verb, args in ((b"SELECT ", b""), (b"STATUS ", b" (MESSAGES)"),
                                   (b"GETACL ", b""), (b"DELETE ", b""), (b"CREATE ", b""),
                                   (b"SETACL ", b' "bob@example.org" "lr"'),
                                   (b"RENAME ", b' "Shared/y"'), (b"APPEND ", b" {1+}\r\nx"),
                                   (b"GETQUOTAROOT ", b"")):
                    lines, t = who.cmd(verb + name + args)
                    self.assertRegex(t, rb"^t\d+ (NO|BAD) ", (verb, name[:60], t))
            for name in (b"Shared/\xff\xfe", b"Shared/desk/\xed\xa0\x80",
                         b"Shared/" + b"\xe2\x82" * 300):
                lit = b"{%d+}\r\n" % len(name) + name
                for verb in (b"SELECT ", b"CREATE ", b"GETACL ", b"DELETE "):
                    lines, t = who.cmd(verb + lit)
                    self.assertRegex(t, rb"^t\d+ (NO|BAD) ", (verb, name[:40], t))
        for ident in (b'"#public"', b'"#PUBLIC"', b'"#shared"'):
            lines, t = r.cmd(b'SETACL "Shared/desk" ' + ident + b' "lr"')
            self.assertIn(b" BAD ", t, ident)
        # a login named #public is refused
        m = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=15)
        try:
            with self.assertRaises(imaplib.IMAP4.error):
                m.login("#public", "x")
        finally:
            self.logout(m)
        # mail names "#public" only through an alias, and never its INBOX
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            for rcpt in ("#public+desk@example.org", "#public@example.org",
                         "sneaky@example.org"):
                with self.assertRaises(smtplib.SMTPException, msg=rcpt):
                    s.sendmail("s@remote.example", [rcpt], message("x"))
                s.rset()
        self.assertEqual(self.messages(c, "Shared/desk"), 0)
        # a personal mailbox may still be called "#public": it is not the store
        self.assertEqual(c.create(q("#public"))[0], "OK")
        self.assertEqual(self.messages(c, "#public"), 0)
        self.assertEqual(c.delete(q("#public"))[0], "OK")
        self.assertEqual(c.delete("Shared/desk")[0], "OK")
        lines, t = b.cmd(b"NOOP")
        self.assertIn(b"OK", t)

    def test_shared_notify_idle(self):
        """IDLE with NOTIFY set on a selected shared mailbox hears another
        user's APPEND and EXPUNGE (its changes wake #public's watchers)."""
        c = self.imap(CAROL)
        self.assertEqual(c.create("Shared/watched")[0], "OK")
        self.assertEqual(c.append("Shared/watched", None, None, message("old"))[0], "OK")
        self.assertEqual(c.setacl("Shared/watched", BOB, "lr")[0], "OK")
        r = self.raw(BOB)
        lines, t = r.cmd(b'SELECT "Shared/watched"')
        self.assertIn(b"OK", t)
        lines, t = r.cmd(b"NOTIFY SET (selected (MessageNew (UID) MessageExpunge)) "
                         b"(personal (MailboxName))")
        self.assertIn(b"OK", t)
        r.send(b"i1 IDLE\r\n")
        self.assertTrue(r.line().startswith(b"+ "))
        self.assertEqual(c.append("Shared/watched", None, None, message("new"))[0], "OK")
        r.sock.settimeout(60)
        seen = b""
        while b"* 2 EXISTS" not in seen:
            seen += r.line()
        self.assertEqual(c.select("Shared/watched")[0], "OK")
        self.assertEqual(c.store("1", "+FLAGS", "(\\Deleted)")[0], "OK")
        self.assertEqual(c.expunge()[0], "OK")
        while b"* 1 EXPUNGE" not in seen:
            seen += r.line()
        r.send(b"DONE\r\n")
        lines, t = r.until(b"i1")
        self.assertIn(b"OK", t)
        c.close()
        self.assertEqual(c.delete("Shared/watched")[0], "OK")

    @unittest.skipIf(shutil.which("node") is None, "node not installed")
    def test_shared_imapflow(self):
        if not ensure_imapflow():
            self.skipTest("imapflow could not be installed with npm")
        c = self.imap(CAROL)
        self.assertEqual(c.create("Shared/flow")[0], "OK")
        for i in range(2):
            self.assertEqual(c.append("Shared/flow", None, None, message("Flow %d" % i))[0],
                             "OK")
        self.assertEqual(c.setacl("Shared/flow", BOB, "lr")[0], "OK")
        out = run_imapflow(self, "imap_imapflow_acl.js", 90, IMAP_PORT=str(self.srv.port("imap")),
                           SHARED="Shared/flow")
        self.assertIn("Shared/flow", out["list"])
        self.assertTrue(out["readOnly"])
        self.assertEqual(out["exists"], 2)
        self.assertEqual(out["subjects"], ["Flow 0", "Flow 1"])
        self.assertNotEqual(out["flagged"], True)
        self.assertEqual(out["namespaces"]["shared"][0]["prefix"], "Shared/")
        self.assertEqual(out["namespaces"]["other"][0]["prefix"], "Other Users/")
        self.assertEqual(c.delete("Shared/flow")[0], "OK")

    def test_shared_cli(self):
        c = self.imap(CAROL)
        self.assertEqual(c.create("Shared/cli")[0], "OK")
        self.srv.cli("acl", "set", CAROL, "Shared/cli", BOB, "lr")
        self.srv.cli("acl", "set", CAROL, "Shared/cli", BOB, "+s")
        out = self.srv.cli("acl", "get", CAROL, "Shared/cli").stdout
        self.assertEqual(out, "anyone p\nbob@example.org lrs\n")
        out = self.srv.cli("acl", "list", BOB).stdout
        self.assertIn("shared\tShared/cli\tlrsp\n", out)
        res = self.srv.cli("acl", "get", BOB, "Shared/cli", check=False)
        self.assertNotEqual(res.returncode, 0)
        res = self.srv.cli("acl", "set", BOB, "Shared/cli", BOB, "lrswipkxtea", check=False)
        self.assertNotEqual(res.returncode, 0)
        res = self.srv.cli("acl", "get", "#public", "cli", check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertEqual(c.delete("Shared/cli")[0], "OK")
        # roost mailbox acts as the user too: an administrator makes one
        self.srv.cli("mailbox", "create", CAROL, "Shared/cli2")
        self.assertIn(b'"Shared/cli2"', b"".join(c.list(q(""), q("Shared/*"))[1]))
        res = self.srv.cli("mailbox", "create", BOB, "Shared/cli3", check=False)
        self.assertNotEqual(res.returncode, 0)
        res = self.srv.cli("mailbox", "list", "#public", check=False)
        self.assertNotEqual(res.returncode, 0)
        self.srv.cli("mailbox", "delete", CAROL, "Shared/cli2")
        self.assertEqual(c.list(q(""), q("Shared/*"))[1], [None])


class SharedPrefixBase(SharedNsServer):
    """[acl] shared_prefix = Public: the shared namespace is "Public/", and
    a personal mailbox named "Shared" (made before the namespace existed)
    is the user's own again, for LIST, SELECT, CREATE, quota roots, NOTIFY
    and the CLI; [acl] shared_prefix = "" turns the namespace off."""
    shared_conf = {"acl": {"shared_admins": CAROL, "shared_prefix": "Public"}}

    def test_shared_prefix(self):
        b, c = self.imap(BOB), self.imap(CAROL)
        # bob's own "Shared" tree, as made before the namespace existed
        self.assertEqual(b.create("Shared/old")[0], "OK")
        self.assertEqual(b.append("Shared", None, None, message("mine"))[0], "OK")
        self.assertEqual(b.append("Shared/old", None, None, message("old"))[0], "OK")
        typ, dat = b.namespace()
        self.assertEqual(dat[0], b'(("" "/")) (("Other Users/" "/")) (("Public/" "/"))')

        self.assertEqual(b.create("Public/support")[0], "NO")
        self.assertEqual(c.create("Public/support")[0], "OK")
        self.assertEqual(c.setacl("Public/support", BOB, "lr")[0], "OK")
        self.assertEqual(c.create("Shared/support")[0], "OK")  # carol's own
        self.assertEqual(self.send("support@example.org", "to public"), {})
        self.assertEqual(self.messages(b, "Public/support"), 1)
        self.assertEqual(self.messages(c, "Shared/support"), 0)
        self.assertEqual(self.messages(b, "Shared"), 1)
        self.assertEqual(self.messages(b, "Shared/old"), 1)

        typ, dat = b.list(q(""), q("*"))
        names = b"\n".join(dat)
        for name in (b'"Shared"', b'"Shared/old"', b'"Public/support"'):
            self.assertIn(b' "/" ' + name, names)
        self.assertTrue(any(x.endswith(b' "/" "Public"') and b"\\Noselect" in x for x in dat),
                        dat)
        self.assertEqual(b.select("Shared")[0], "OK")
        typ, dat = b.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertIn(b"mine", dat[0][1])
        b.close()
        self.assertEqual(b.rename("Shared/old", "Shared/older")[0], "OK")
        self.assertEqual(b.create("Shared/new")[0], "OK")
        self.assertEqual(b.delete("Shared/new")[0], "OK")

        # quota roots: the personal "Shared" is bob's, Public/ the store's
        typ, dat = b.getquotaroot("Shared")
        self.assertIn(b'"Shared" ""', dat[0][0])
        typ, dat = b.getquotaroot("Public/support")
        self.assertIn(b'"Public/support" "#public"', dat[0][0])

        # NOTIFY SUBTREE "Public" hears carol's APPEND; "Shared" is bob's
        r = self.raw(BOB)
        r.sock.settimeout(60)
        lines, t = r.cmd(b'NOTIFY SET (subtree ("Public" "Shared") (MessageNew MessageExpunge))')
        self.assertIn(b"OK", t)
        self.assertEqual(c.append("Public/support", None, None, message("two"))[0], "OK")
        seen = b""
        while b'* STATUS "Public/support" (MESSAGES 2' not in seen:
            seen += r.line()
        self.assertEqual(self.imap(ALICE).append("INBOX", None, None, message("x"))[0], "OK")
        self.assertEqual(b.append("Shared/older", None, None, message("new"))[0], "OK")
        while b'* STATUS "Shared/older" (MESSAGES 2' not in seen:
            seen += r.line()

        # the CLI follows it
        self.srv.cli("acl", "set", CAROL, "Public/support", BOB, "+s")
        out = self.srv.cli("acl", "list", BOB).stdout
        self.assertIn("shared\tPublic/support\tlrsp\n", out)
        self.assertIn("Shared/older\tanyone\tp\n", out)  # his own
        self.assertNotIn("shared\tShared", out)
        self.srv.cli("mailbox", "create", CAROL, "Public/cli")
        self.assertIn(b'"Public/cli"', b"".join(c.list(q(""), q("Public/*"))[1]))
        self.srv.cli("mailbox", "delete", CAROL, "Public/cli")
        self.assertEqual(c.delete("Public/support")[0], "OK")
        self.assertEqual(b.delete("Shared/older")[0], "OK")

    def test_no_shared_namespace(self):
        """shared_prefix = "": the CLI (as the server would) sees no shared
        namespace; a prefix that is not one plain name is refused."""
        c = self.imap(CAROL)
        self.assertEqual(c.create("Public/keep")[0], "OK")
        self.assertEqual(c.setacl("Public/keep", BOB, "lr")[0], "OK")
        self.assertIn("shared\tPublic/keep\t", self.srv.cli("acl", "list", BOB).stdout)
        with open(self.srv.conf_path) as f:
            text = f.read()
        cfg = os.path.join(self.srv.dir, "other.conf")
        for value, code in (('""', 0), ("Other Users", 2), ("Pub/lic", 2), ("INBOX", 2)):
            with open(cfg, "w") as f:
                f.write(text.replace("shared_prefix = Public", "shared_prefix = " + value))
            res = subprocess.run([self.srv.binary, "acl", "list", BOB, "--config", cfg],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(res.returncode, code, (value, res.stderr))
            self.assertNotIn("Public/keep", res.stdout)
            if code == 2:
                self.assertIn("shared_prefix", res.stderr)
        self.assertEqual(c.delete("Public/keep")[0], "OK")


class SharedNsPgsql(PrivatePgsql, SharedNsBase):
    """The same on the pgsql backend, in a PostgreSQL of the class's own
    (scripts/pg-test.sh; skipped where the postgresql package is not
    installed, or pgsql is not in ROOST_BACKENDS when that is set)."""
    pg_database = "roost_shared"


TestImapShared_pgsql = type("TestImapShared_pgsql", (SharedNsPgsql, unittest.TestCase), {})

# pgsql runs in the PrivatePgsql class above, which brings its database.
backend_classes(globals(), AclBase, "TestImapAcl_%s")
backend_classes(globals(), SharedNsBase, "TestImapShared_%s")
backend_classes(globals(), SharedPrefixBase, "TestImapSharedPrefix_%s")

if __name__ == "__main__":
    unittest.main()
