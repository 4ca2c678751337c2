"""NOTIFY (RFC 5465) over raw IMAP on every backend. A session with NOTIFY
SET (selected ...) (personal ...) that sends no command receives, as
unsolicited responses: STATUS for a message delivered by SMTP to another
folder (alice+Other@), EXISTS and MessageNew's FETCH for one delivered to
the selected INBOX, FETCH (UID FLAGS) for a flag set by a second session,
EXPUNGE for its expunge, and LIST for a mailbox created, renamed (OLDNAME),
subscribed and deleted by the second session; the same during IDLE.
NOTIFY SET STATUS answers with STATUS first; NOTIFY NONE stops it all;
METADATA (entry names) for annotations set on a followed mailbox or the
server; hostile commands (unknown events, bad combinations, nesting,
10,000 names, bad encodings) get BAD or NO with the RFC's codes, never a
crash."""
import re
import smtplib
import socket
import unittest

from roosttest import BACKENDS, backend_classes, own_server
from test_imap_raw import Raw

ALICE = "alice@example.org"
MSG = b"From: s@example.org\r\nTo: alice@example.org\r\nSubject: notify\r\n\r\nbody\r\n"
SET = (b"NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange)) "
       b"(personal (MessageNew MessageExpunge MailboxName SubscriptionChange))")


class NotifyBase:
    backend = "lmdb"

    def setUp(self):
        # The hostile cases count as bad commands: more than the default 20.
        self.srv = own_server(self, backend=self.backend, listeners=("imap", "smtp"),
                              conf={"imap": {"max_bad_commands": "100"}})

    def client(self):
        c = Raw(self.srv.port("imap")).login()
        self.addCleanup(c.close)
        return c

    def ok(self, c, text):
        lines, t = c.cmd(text)
        self.assertRegex(t, rb"^t\d+ OK", (text[:200], t))
        return lines

    def status(self, c, text, want):
        lines, t = c.cmd(text)
        self.assertRegex(t, rb"^t\d+ " + want, (text[:200], t))
        return t

    def deliver(self, rcpt):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=15) as s:
            s.sendmail("s@example.org", [rcpt], MSG)

    def push(self, c, pattern):
        """Read unsolicited lines (no command sent) until one matches;
        the lines read, the matching one last."""
        seen = []
        while True:
            try:
                l = c.line()
            except socket.timeout:
                self.fail("no %r pushed; got %r" % (pattern, seen))
            seen.append(l)
            self.assertFalse(l.startswith(b"* BYE"), seen)
            if re.search(pattern, l):
                return seen

    def test_capability(self):
        c = self.client()
        lines = self.ok(c, b"CAPABILITY")
        self.assertIn(b" NOTIFY", lines[0])

    def test_events_between_commands(self):
        c, d = self.client(), self.client()
        self.ok(c, b"CREATE Other")
        self.ok(c, b"SELECT INBOX")
        self.ok(c, SET)

        # A delivery to another folder: STATUS.
        self.deliver("alice+Other@example.org")
        self.push(c, rb'^\* STATUS "?Other"? \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)')
        # To the selected mailbox: EXISTS, then MessageNew's FETCH.
        self.deliver(ALICE)
        self.push(c, rb"^\* 1 EXISTS")
        self.push(c, rb"^\* 1 FETCH \(UID 1 FLAGS \((\\Recent)?\)\)")
        # A flag set by another session: FETCH with the UID.
        self.ok(d, b"SELECT INBOX")
        self.ok(d, b"STORE 1 +FLAGS (\\Flagged)")
        self.push(c, rb"^\* 1 FETCH \(UID 1 FLAGS \(\\Flagged( \\Recent)?\)\)")
        # Mailboxes: created, renamed, subscribed, deleted.
        self.ok(d, b"CREATE New")
        self.push(c, rb'^\* LIST \([^)]*\) "/" "?New"?\r\n')
        self.ok(d, b"RENAME New Newer")
        self.push(c, rb'^\* LIST \([^)]*\) "/" "?Newer"? \("OLDNAME" \("?New"?\)\)')
        self.ok(d, b"SUBSCRIBE Newer")
        self.push(c, rb'^\* LIST \([^)]*\\Subscribed[^)]*\) "/" "?Newer"?')
        self.ok(d, b"UNSUBSCRIBE Newer")
        l = self.push(c, rb'^\* LIST \([^)]*\) "/" "?Newer"?')[-1]
        self.assertNotIn(b"\\Subscribed", l)
        self.ok(d, b"DELETE Newer")
        self.push(c, rb'^\* LIST \(\\NonExistent\) "/" "?Newer"?')
        # An expunge by the other session.
        self.ok(d, b"STORE 1 +FLAGS (\\Deleted)")
        self.push(c, rb"^\* 1 FETCH \(UID 1 FLAGS")
        self.ok(d, b"EXPUNGE")
        self.push(c, rb"^\* 1 EXPUNGE")
        # A message expunged in the other folder: STATUS again.
        self.ok(d, b"SELECT Other")
        self.ok(d, b"STORE 1 +FLAGS.SILENT (\\Deleted)")
        self.ok(d, b"EXPUNGE")
        self.push(c, rb'^\* STATUS "?Other"? \(MESSAGES 0 ')

        # NOTIFY NONE: no more of it.
        self.ok(c, b"NOTIFY NONE")
        self.ok(d, b"CREATE Quiet")
        self.deliver("alice+Other@example.org")
        self.ok(d, b"STATUS Other (MESSAGES)")
        lines = self.ok(c, b"NOOP")
        self.assertFalse([l for l in lines if l.startswith((b"* STATUS", b"* LIST"))], lines)
        # A second NOTIFY SET takes over where it was left.
        self.ok(c, SET)
        self.ok(d, b"DELETE Quiet")
        self.push(c, rb'^\* LIST \(\\NonExistent\) "/" "?Quiet"?')

    def test_metadata(self):
        c, d = self.client(), self.client()
        self.ok(c, b"CREATE Other")
        self.ok(c, b"NOTIFY SET (mailboxes Other (MailboxMetadataChange)) "
                   b"(personal (ServerMetadataChange))")
        self.ok(d, b'SETMETADATA Other (/private/comment "one" /shared/Two "2")')
        self.push(c, rb'^\* METADATA "?Other"? "/private/comment" "/shared/two"\r\n')
        self.ok(d, b'SETMETADATA "" (/private/motd "hello")')
        self.push(c, rb'^\* METADATA "" "/private/motd"\r\n')
        # A mailbox outside the filter, then one inside: only the latter.
        self.ok(d, b'SETMETADATA INBOX (/private/comment "x")')
        self.ok(d, b'SETMETADATA Other (/private/comment NIL)')
        seen = self.push(c, rb'^\* METADATA "?Other"? "/private/comment"\r\n')
        self.assertFalse([l for l in seen if b"INBOX" in l], seen)
        # URLAUTH's keys are metadata entries of Roost's own: never shown.
        self.ok(d, b"RESETKEY")
        self.ok(d, b'SETMETADATA "" (/private/motd NIL)')
        seen = self.push(c, rb'^\* METADATA "" "/private/motd"\r\n')
        self.assertFalse([l for l in seen if b"vendor.roost" in l], seen)

    def test_idle(self):
        c, d = self.client(), self.client()
        self.ok(c, b"CREATE Other")
        self.ok(c, b"SELECT INBOX")
        self.ok(c, SET)
        c.send(b"i IDLE\r\n")
        self.assertTrue(c.line().startswith(b"+"))
        self.deliver("alice+Other@example.org")
        self.push(c, rb'^\* STATUS "?Other"? \(MESSAGES 1 ')
        self.ok(d, b"CREATE During")
        self.push(c, rb'^\* LIST \([^)]*\) "/" "?During"?')
        self.deliver(ALICE)
        self.push(c, rb"^\* 1 EXISTS")
        c.send(b"DONE\r\n")
        _, t = c.until(b"i")
        self.assertIn(b"i OK", t)

    def test_status_option_and_filters(self):
        c, d = self.client(), self.client()
        for name in (b"Lists", b"Lists/a", b"Misc", b"Skip"):
            self.ok(c, b"CREATE " + name)
        self.deliver("alice+Lists/a@example.org")
        lines = self.ok(c, b"NOTIFY SET STATUS (subtree Lists (MessageNew MessageExpunge)) "
                           b"(mailboxes (Misc INBOX) (MessageNew MessageExpunge))")
        names = sorted(re.match(rb'\* STATUS "?([^" ]+)"? ', l).group(1)
                       for l in lines if l.startswith(b"* STATUS"))
        self.assertEqual(names, [b"INBOX", b"Lists", b"Lists/a", b"Misc"])
        self.assertTrue(any(re.match(rb'\* STATUS "?Lists/a"? \(MESSAGES 1 ', l)
                            for l in lines), lines)
        # A folder outside every filter says nothing; one inside does.
        self.deliver("alice+Skip@example.org")
        self.deliver("alice+Misc@example.org")
        seen = self.push(c, rb'^\* STATUS "?Misc"? \(MESSAGES 1 ')
        self.assertFalse([l for l in seen if b"Skip" in l], seen)
        # No MailboxName asked for: no LIST.
        self.ok(d, b"CREATE Lists/b")
        self.deliver("alice+Lists/b@example.org")
        seen = self.push(c, rb'^\* STATUS "?Lists/b"? \(MESSAGES 1 ')
        self.assertFalse([l for l in seen if l.startswith(b"* LIST")], seen)
        # CONDSTORE adds HIGHESTMODSEQ.
        self.ok(c, b"ENABLE CONDSTORE")
        self.deliver("alice+Misc@example.org")
        self.push(c, rb'^\* STATUS "?Misc"? \(MESSAGES 2 .*HIGHESTMODSEQ \d+\)')

    def test_hostile(self):
        c = self.client()
        bad = [b"NOTIFY", b"NOTIFY FOO", b"NOTIFY NONE extra", b"NOTIFY SET",
               b"NOTIFY SET STATUS", b"NOTIFY SET personal", b"NOTIFY SET ()",
               b"NOTIFY SET (personal)", b"NOTIFY SET (bogus (MessageNew MessageExpunge))",
               b"NOTIFY SET (personal (MessageNew))",
               b"NOTIFY SET (personal (MessageExpunge))",
               b"NOTIFY SET (personal (FlagChange))",
               b"NOTIFY SET (personal (MessageNew FlagChange))",
               b"NOTIFY SET (selected (MailboxName))",
               b"NOTIFY SET (selected (MessageNew MessageExpunge ServerMetadataChange))",
               b"NOTIFY SET (selected-delayed (SubscriptionChange))",
               b"NOTIFY SET (selected (MessageNew MessageExpunge)) "
               b"(selected-delayed (MessageNew MessageExpunge))",
               b"NOTIFY SET (personal ((MessageNew) MessageExpunge))",
               b"NOTIFY SET (personal (\"MessageNew\" MessageExpunge))",
               b"NOTIFY SET (personal (MessageNew MessageExpunge) extra)",
               b"NOTIFY SET (personal ())",
               b"NOTIFY SET (mailboxes () (MessageNew MessageExpunge))",
               b"NOTIFY SET (subtree (MessageNew MessageExpunge))",
               b"NOTIFY SET (selected (MessageNew () MessageExpunge))",
               b"NOTIFY SET " + b"(" * 40 + b")" * 40,
               b"NOTIFY SET (personal " + b"(" * 30 + b"MessageNew" + b")" * 30 + b")",
               # bad modified UTF-7, raw 8-bit, NUL-free control bytes
               b"NOTIFY SET (mailboxes &Jjo (MessageNew MessageExpunge))",
               b"NOTIFY SET (mailboxes \"a\xff\xfeb\" (MessageNew MessageExpunge))",
               b"NOTIFY SET (mailboxes \"a\x01b\" (MessageNew MessageExpunge))"]
        for text in bad:
            lines, t = c.cmd(text)
            self.assertRegex(t, rb"^t\d+ (BAD|NO) ", (text[:100], t))
        for text in (b"NOTIFY SET (personal (Bogus))",
                     b"NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))"):
            t = self.status(c, text, b"NO")
            self.assertIn(b"[BADEVENT (MessageNew MessageExpunge FlagChange MailboxName "
                          b"SubscriptionChange MailboxMetadataChange ServerMetadataChange)]", t)
        t = self.status(c, b"NOTIFY SET (selected (MessageNew (BODY[]) MessageExpunge))",
                        b"NO")
        # More names than a session follows: refused, not taken.
        names = b" ".join(b"m%d" % i for i in range(1001))
        t = self.status(c, b"NOTIFY SET (mailboxes (" + names + b") (MessageNew "
                        b"MessageExpunge))", b"NO")
        self.assertIn(b"[NOTIFICATIONOVERFLOW]", t)
        # 10,000 names: past the line bound or the name bound, never a crash.
        names = b" ".join(b"n%d" % i for i in range(10000))
        lines, t = c.cmd(b"NOTIFY SET (subtree (" + names + b") (MessageNew MessageExpunge))")
        self.assertRegex(t, rb"(BAD|NO)", t[:200])
        # UTF-8 names after ENABLE UTF8=ACCEPT: valid taken, invalid refused.
        self.ok(c, b"ENABLE UTF8=ACCEPT")
        self.ok(c, b"NOTIFY SET (mailboxes \"B\xc3\xa4r\" (MessageNew MessageExpunge))")
        self.status(c, b"NOTIFY SET (mailboxes \"B\xc3r\" (MessageNew MessageExpunge))", b"BAD")
        self.ok(c, b"NOTIFY SET (selected-delayed NONE) (personal NONE)")
        self.ok(c, b"NOOP")


backend_classes(globals(), NotifyBase, "TestImapNotify_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
