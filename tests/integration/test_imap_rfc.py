"""RFC 3501 / 7162 / 2971 conformance on the wire, raw protocol, both
backends: SENT* dates in the Date: header's own zone, SEARCH FROM over the
address as ENVELOPE renders it, obsolete phrases in ENVELOPE, and the other
corners each test names."""
import re
import unittest

from roosttest import BACKENDS, backend_classes
from test_imap_raw import Raw, RawSession


def search_hits(lines):
    """The numbers of the one "* SEARCH" line among lines."""
    found = [l for l in lines if l.startswith(b"* SEARCH")]
    assert len(found) == 1, lines
    return found[0][len(b"* SEARCH"):].split()


class RfcBase(RawSession):
    backend = "lmdb"

    def append(self, mailbox, msg, date=None):
        """APPEND over a synchronizing literal; returns the tagged line."""
        d = b' "' + date + b'"' if date is not None else b""
        self.r.send(b"ap APPEND " + mailbox + d + b" {%d}\r\n" % len(msg))
        self.assertTrue(self.r.line().startswith(b"+"))
        self.r.send(msg + b"\r\n")
        _, tagged = self.r.until(b"ap")
        self.assertRegex(tagged, rb"^ap OK", tagged)
        return tagged

    def fresh(self, name, *msgs):
        """Create mailbox name, fill it with msgs and select it."""
        self.ok(b"CREATE " + name)
        for m in msgs:
            self.append(name, m)
        self.ok(b"SELECT " + name)

    def search(self, crit):
        return search_hits(self.ok(b"SEARCH " + crit))

    def test_sent_dates_in_the_writers_zone(self):
        """RFC 3501 6.4.4: SENT* compare the Date: header's own calendar
        date, disregarding time and timezone. In UTC the first message is
        of 26 March and the second of 25 March."""
        late = (b"From: a@example.org\r\nDate: Sun, 25 Mar 2007 23:30:00 -0500\r\n"
                b"Subject: late\r\n\r\nx\r\n")
        early = (b"From: a@example.org\r\nDate: Mon, 26 Mar 2007 01:00:00 +1000\r\n"
                 b"Subject: early\r\n\r\nx\r\n")
        self.fresh(b"SentDates", late, early)
        self.assertEqual(self.search(b"SENTON 25-Mar-2007"), [b"1"])
        self.assertEqual(self.search(b"SENTON 26-Mar-2007"), [b"2"])
        self.assertEqual(self.search(b"SENTBEFORE 26-Mar-2007"), [b"1"])
        self.assertEqual(self.search(b"SENTBEFORE 25-Mar-2007"), [])
        self.assertEqual(self.search(b"SENTSINCE 26-Mar-2007"), [b"2"])
        self.assertEqual(self.search(b"SENTSINCE 25-Mar-2007"), [b"1", b"2"])

    def test_address_search_as_envelope_renders_it(self):
        """FROM/TO/CC/BCC look in the addresses ENVELOPE shows: comments
        inside an address are not part of it."""
        msg = (b"From: <user-from (comment)@ (comment) domain.org>\r\n"
               b"To: \"Quoted Name\" <user.to@example.org> (a comment)\r\n"
               b"Cc: Cc Person <cc (x) . person @ example . net>\r\n"
               b"Bcc: =?UTF-8?Q?M=C3=BCller?= <bcc@example.com>\r\n"
               b"Subject: addresses\r\n\r\nbody\r\n")
        other = b"From: someone@else.org\r\nTo: nobody@else.org\r\nSubject: o\r\n\r\nx\r\n"
        self.fresh(b"Addr", msg, other)
        env = b"".join(self.ok(b"FETCH 1 ENVELOPE"))
        self.assertIn(b'((NIL NIL "user-from" "domain.org"))', env)
        self.assertEqual(self.search(b"FROM user-from@domain.org"), [b"1"])
        self.assertEqual(self.search(b"FROM USER-FROM@DOMAIN.ORG"), [b"1"])
        self.assertEqual(self.search(b"FROM \"<user-from@domain.org>\""), [b"1"])
        self.assertEqual(self.search(b"TO user.to@example.org"), [b"1"])
        self.assertEqual(self.search(b"TO \"quoted name\""), [b"1"])
        self.assertEqual(self.search(b"CC cc.person@example.net"), [b"1"])
        self.assertEqual(self.search(b"CC \"Cc Person\""), [b"1"])
        self.assertEqual(self.search(b"BCC bcc@example.com"), [b"1"])
        self.assertEqual(self.search(b"FROM else.org"), [b"2"])
        self.assertEqual(self.search(b"FROM \"\""), [b"1", b"2"])
        self.assertEqual(self.search(b"BCC \"\""), [b"1"])
        # a comment is not part of the envelope's address
        self.assertEqual(self.search(b"FROM comment"), [])
        # an encoded word in a name is searched decoded
        lines, tagged = self.r.cmd(b"SEARCH CHARSET UTF-8 BCC {7+}\r\nm\xc3\xbcller")
        self.assertIn(b" OK", tagged)
        self.assertEqual(search_hits(lines), [b"1"])

    def test_envelope_keeps_obsolete_phrase_spaces(self):
        """RFC 5322 4.1 obs-phrase: "Joe Q. Public" is three words and a
        dot; its spaces stay where they were written."""
        msg = (b"From: Joe Q. Public <john.q.public@example.com>\r\n"
               b"To: Mary Smith.Jones <mary@x.test>, A. B. C <abc@x.test>\r\n"
               b"Subject: phrase\r\n\r\nbody\r\n")
        self.fresh(b"Phrase", msg)
        env = b"".join(self.ok(b"FETCH 1 ENVELOPE"))
        self.assertIn(b'(("Joe Q. Public" NIL "john.q.public" "example.com"))', env)
        self.assertIn(b'(("Mary Smith.Jones" NIL "mary" "x.test")'
                      b'("A. B. C" NIL "abc" "x.test"))', env)

    def test_append_date_at_the_epoch(self):
        """A date-time at the epoch (or before it) is a date, not "now";
        COPY keeps it."""
        msg = b"From: a@example.org\r\nSubject: old\r\n\r\nx\r\n"
        self.ok(b"CREATE Epoch")
        self.append(b"Epoch", msg, b"01-Jan-1970 00:00:00 +0000")
        self.append(b"Epoch", msg, b"01-Jan-1970 01:00:00 +0100")
        self.append(b"Epoch", msg, b"31-Dec-1969 23:59:59 +0000")
        self.append(b"Epoch", msg, b"02-Jan-1970 00:00:00 +0000")
        self.ok(b"SELECT Epoch")
        self.ok(b"COPY 1 Epoch")
        lines = self.ok(b"FETCH 1:* INTERNALDATE")
        dates = [re.search(rb'INTERNALDATE "([^"]*)"', l).group(1) for l in lines
                 if b"FETCH" in l]
        self.assertEqual(dates, [b"01-Jan-1970 00:00:00 +0000"] * 2 +
                         [b"31-Dec-1969 23:59:59 +0000", b"02-Jan-1970 00:00:00 +0000",
                          b"01-Jan-1970 00:00:00 +0000"])
        self.assertEqual(self.search(b"BEFORE 02-Jan-1970"), [b"1", b"2", b"3", b"5"])
        self.assertEqual(self.search(b"ON 01-Jan-1970"), [b"1", b"2", b"5"])

    def highestmodseq(self, lines):
        """The values of every untagged OK [HIGHESTMODSEQ n] among lines."""
        return [int(m.group(1)) for l in lines
                for m in [re.match(rb"\* OK \[HIGHESTMODSEQ (\d+)\]", l)] if m]

    def modseqs(self):
        lines = self.ok(b"FETCH 1:* (MODSEQ)")
        return [int(re.search(rb"MODSEQ \((\d+)\)", l).group(1)) for l in lines
                if b" FETCH " in l]

    def test_condstore_enabling_commands_report_highestmodseq(self):
        """RFC 7162 3.1: the first CONDSTORE enabling command issued with a
        mailbox selected is followed by OK [HIGHESTMODSEQ n], once."""
        msg = b"From: a@example.org\r\nSubject: m\r\n\r\nx\r\n"
        self.ok(b"CREATE Cond")
        for _ in range(3):
            self.append(b"Cond", msg)
        enablers = [b"SEARCH MODSEQ 1", b"STATUS INBOX (HIGHESTMODSEQ)",
                    b"ENABLE CONDSTORE", b"FETCH 1 MODSEQ", b"FETCH 1:* FLAGS (CHANGEDSINCE 1)",
                    b"STORE 1 (UNCHANGEDSINCE 100000) +FLAGS (x)"]
        for cmd in enablers:
            r = Raw(self.srv.port("imap")).login()
            lines, tagged = r.cmd(b"SELECT Cond")
            self.assertFalse(self.highestmodseq(lines), lines)   # no CONDSTORE asked
            lines, tagged = r.cmd(cmd)
            self.assertIn(b" OK ", tagged)
            got = self.highestmodseq(lines)
            self.assertEqual(len(got), 1, (cmd, lines))
            self.assertGreater(got[0], 0)
            lines, tagged = r.cmd(b"SEARCH MODSEQ 1")        # on already: no more
            self.assertEqual(self.highestmodseq(lines), [], (cmd, lines))
            r.close()
        # not selected: nothing to report
        r = Raw(self.srv.port("imap")).login()
        lines, _ = r.cmd(b"STATUS Cond (HIGHESTMODSEQ)")
        self.assertEqual(self.highestmodseq(lines), [])
        r.close()

    def test_esearch_min_max_modseq_of_returned_messages(self):
        """RFC 7162 3.1.5: ESEARCH with only MIN and/or MAX reports the
        MODSEQ of the messages it returns, not of every match."""
        msg = b"From: a@example.org\r\nSubject: m\r\n\r\nx\r\n"
        self.fresh(b"Esearch", msg, msg, msg)
        self.ok(b"STORE 2 +FLAGS (\\Flagged)")     # message 2 now has the top MODSEQ
        ms = self.modseqs()
        self.assertGreater(ms[1], max(ms[0], ms[2]))

        def esearch(ret):
            lines = self.ok(b"SEARCH RETURN (" + ret + b") MODSEQ 1")
            line = [l for l in lines if l.startswith(b"* ESEARCH")][0]
            return int(re.search(rb" MODSEQ (\d+)", line).group(1))
        self.assertEqual(esearch(b"MIN"), ms[0])
        self.assertEqual(esearch(b"MAX"), ms[2])
        self.assertEqual(esearch(b"MIN MAX"), max(ms[0], ms[2]))
        self.assertEqual(esearch(b"MIN COUNT"), max(ms))
        self.assertEqual(esearch(b"ALL"), max(ms))

    def test_nil_is_an_atom(self):
        """RFC 3501 9: NIL is an atom, so a valid astring, list-mailbox and
        flag-keyword; it is NIL only where the grammar says nstring."""
        msg = (b"From: a@example.org\r\nSubject: NIL and more\r\n\r\n"
               b"a body that says nil\r\n")
        other = b"From: a@example.org\r\nSubject: other\r\n\r\nnothing\r\n"
        self.fresh(b"Nil", msg, other)
        self.assertEqual(self.search(b"SUBJECT NIL"), [b"1"])
        self.assertEqual(self.search(b"BODY nil"), [b"1"])
        self.assertEqual(self.search(b"TEXT Nil"), [b"1"])
        self.assertEqual(self.search(b"KEYWORD NIL"), [])
        lines = self.ok(b"STORE 1 +FLAGS NIL")
        self.assertTrue(any(re.search(rb"FLAGS \([^)]*\bNIL\b", l) for l in lines), lines)
        self.assertEqual(self.search(b"KEYWORD NIL"), [b"1"])
        self.ok(b"STORE 1 -FLAGS (NIL)")
        self.assertEqual(self.search(b"KEYWORD nil"), [])
        # a mailbox named NIL, and NIL as a LIST pattern
        self.ok(b"CREATE NIL")
        lines = self.ok(b'LIST "" NIL')
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], rb'^\* LIST \([^)]*\) "/" "?NIL"?\r\n$')
        self.ok(b"SELECT NIL")
        # where the grammar says nstring, NIL is still NIL
        lines = self.ok(b"ID NIL")
        self.assertTrue(lines[0].startswith(b"* ID ("), lines)

    def test_largest_nz_number(self):
        """nz-number is 32-bit: 4294967295 is a UID and a sequence number,
        and clients send 1:4294967295 for "all"."""
        msg = b"From: a@example.org\r\nSubject: m\r\n\r\nx\r\n"
        self.fresh(b"Big", msg, msg)
        lines = self.ok(b"UID FETCH 1:4294967295 FLAGS")
        self.assertEqual(len([l for l in lines if b" FETCH " in l]), 2, lines)
        self.assertEqual(self.search(b"UID 1:4294967295"), [b"1", b"2"])
        lines = self.ok(b"UID SEARCH UID 1:4294967295")
        self.assertEqual(search_hits(lines), [b"1", b"2"])
        self.assertEqual(self.search(b"UID 4294967295"), [])
        lines = self.ok(b"UID FETCH 4294967295 FLAGS")
        self.assertEqual([l for l in lines if b" FETCH " in l], [])
        lines = self.ok(b"UID STORE 2:4294967295 +FLAGS (\\Seen)")
        self.assertEqual(self.search(b"SEEN"), [b"2"])
        # past 32 bits it is no number
        _, tagged = self.r.cmd(b"UID FETCH 1:4294967296 FLAGS")
        self.assertRegex(tagged, rb"^t\d+ BAD")

    def test_uid_first_in_fetch(self):
        """UID leads every FETCH response that carries it, whatever the
        order asked, so a client finds it before the first literal."""
        msg = b"From: a@example.org\r\nSubject: m\r\n\r\nbody\r\n"
        self.fresh(b"UidFirst", msg)
        for cmd in (b"UID FETCH 1 (FLAGS BODY.PEEK[])", b"UID FETCH 1 (BODY.PEEK[HEADER] FLAGS)",
                    b"FETCH 1 (RFC822.SIZE BODY.PEEK[TEXT] UID)", b"UID FETCH 1 ALL",
                    b"UID FETCH 1 (UID FLAGS)", b"FETCH 1 (FLAGS UID)"):
            lines = [l for l in self.ok(cmd) if b" FETCH " in l]
            self.assertEqual(len(lines), 1, (cmd, lines))
            self.assertTrue(lines[0].startswith(b"* 1 FETCH (UID 1 "), (cmd, lines[0]))

    def test_largest_id_before_login(self):
        """RFC 2971: up to 30 pairs, fields of 30 octets, values of 1024;
        the largest such ID is taken before login, where other commands
        keep the 8 KiB line bound."""
        r = Raw(self.srv.port("imap"))
        pairs = b" ".join(b'"%s" "%s"' % ((b"f%02d" % i).ljust(30, b"x"),
                                          (b"%02d" % i) * 512)
                          for i in range(30))
        cmd = b"i1 ID (" + pairs + b")\r\n"
        self.assertGreater(len(cmd), 31000)
        r.send(cmd)
        lines, tagged = r.until(b"i1")
        self.assertRegex(tagged, rb"^i1 OK", tagged)
        self.assertTrue(lines and lines[0].startswith(b"* ID ("), lines)
        # the same with every value a literal
        r.send(b"i2 ID (" + b" ".join(b'"f%02d" {1024+}\r\n%s' % (i, b"v" * 1024)
                                       for i in range(30)) + b")\r\n")
        _, tagged = r.until(b"i2")
        self.assertRegex(tagged, rb"^i2 OK", tagged)
        # past what an ID may take: refused, and the connection goes on
        r.send(b"i3 ID (" + b" ".join(b'"f%02d" "%s"' % (i, b"v" * 1024)
                                       for i in range(60)) + b")\r\n")
        _, tagged = r.until(b"i3")
        self.assertRegex(tagged, rb"^i3 BAD \[TOOBIG\]", tagged)
        # other commands keep the pre-login bound
        r.send(b"n1 NOOP " + b"x" * 9000 + b"\r\n")
        _, tagged = r.until(b"n1")
        self.assertRegex(tagged, rb"^n1 BAD \[TOOBIG\]", tagged)
        _, tagged = r.cmd(b"NOOP")
        self.assertIn(b" OK ", tagged)
        r.login()
        r.close()


backend_classes(globals(), RfcBase, "TestImapRfc_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
