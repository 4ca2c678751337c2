"""IMAP sizes and resynchronisation: RFC822.SIZE of foreign bare-LF Maildir
messages, CONDSTORE and QRESYNC (RFC 7162), spoken raw on the wire."""
import os
import re
import time
import unittest

from roosttest import SharedServer, own_server
from test_imap_raw import Raw

LF_MSG = b"From: tool@example.org\nSubject: dropped\n\nline one\nline two\n"
CRLF_MSG = b"From: a@example.org\r\nSubject: crlf\r\n\r\nbody\r\n"


def literal_of(lines, name):
    """The literal following `name {n}` in the joined lines."""
    joined = b"".join(lines)
    m = re.search(re.escape(name) + rb" \{(\d+)\}\r\n", joined)
    assert m, joined
    n = int(m.group(1))
    return joined[m.end():m.end() + n]


def sizes_of(lines):
    return [int(x) for x in re.findall(rb"RFC822\.SIZE (\d+)", b"".join(lines))]


class TestImapVirtualSize(unittest.TestCase):
    """RFC822.SIZE equals the octets BODY[] sends, also for a message another
    tool dropped into the Maildir with bare LF line ends."""

    def test_bare_lf_size(self):
        srv = own_server(self, listeners=("imap",), backend="maildir")
        a = Raw(srv.port("imap")).login()
        a.cmd(b"SELECT INBOX")
        box = os.path.join(srv.data_dir, "maildir", "alice@example.org")
        tmp = os.path.join(box, "tmp", "x1")
        with open(tmp, "wb") as f:
            f.write(LF_MSG)
        os.rename(tmp, os.path.join(box, "new", "1700000000.x1.host"))
        seen, t = a.cmd(b"NOOP")
        self.assertIn(b"* 1 EXISTS\r\n", seen)
        seen, t = a.cmd(b"APPEND INBOX {%d}" % len(CRLF_MSG) + b"\r\n" + CRLF_MSG)
        self.assertIn(b"OK", t)
        lines, t = a.cmd(b"NOOP")
        self.assertIn(b"* 2 EXISTS\r\n", seen + lines)
        # size first (nothing cached), then with the body, then from
        # the cache in a second session, then after ENVELOPE filled it
        lines, t = a.cmd(b"FETCH 1:2 RFC822.SIZE")
        self.assertIn(b"OK", t)
        first = sizes_of(lines)
        self.assertEqual(first, [len(LF_MSG) + LF_MSG.count(b"\n"), len(CRLF_MSG)])
        for i in (1, 2):
            lines, t = a.cmd(b"FETCH %d (RFC822.SIZE BODY.PEEK[])" % i)
            self.assertIn(b"OK", t)
            body = literal_of(lines, b"BODY[]")
            self.assertEqual(sizes_of(lines), [len(body)])
            self.assertEqual(len(body), first[i - 1])
        lines, t = a.cmd(b"FETCH 1 RFC822")
        self.assertEqual(len(literal_of(lines, b"RFC822")), first[0])
        b = Raw(srv.port("imap")).login()
        b.cmd(b"EXAMINE INBOX")
        lines, t = b.cmd(b"FETCH 1:* (ENVELOPE RFC822.SIZE)")
        self.assertIn(b"OK", t)
        self.assertEqual(sizes_of(lines), first)
        self.assertIn(b'"dropped"', b"".join(lines))
        lines, t = b.cmd(b"FETCH 1:* FAST")
        self.assertEqual(sizes_of(lines), first)
        lines, t = b.cmd(b"FETCH 1:* (BODYSTRUCTURE)")
        self.assertIn(b"OK", t)
        lines, t = b.cmd(b"FETCH 1:* ALL")
        self.assertEqual(sizes_of(lines), first)
        a.close()
        b.close()


class RawSessions(SharedServer):
    """Raw sessions on the class's server, and mailboxes filled through them."""

    def client(self):
        c = Raw(self.srv.port("imap")).login()
        self.addCleanup(c.close)
        return c

    def fill(self, c, box, n):
        c.cmd(b"CREATE " + box)
        for i in range(n):
            m = b"From: a@example.org\r\nSubject: m%d\r\n\r\nbody\r\n" % i
            _, t = c.cmd(b"APPEND " + box + b" {%d}\r\n" % len(m) + m)
            self.assertIn(b"OK", t)


class TestImapCondstore(RawSessions, unittest.TestCase):
    """RFC 7162 CONDSTORE over the wire."""

    server_options = {"listeners": ("imap",)}

    def test_capability_and_enable(self):
        c = self.client()
        lines, t = c.cmd(b"CAPABILITY")
        self.assertIn(b" CONDSTORE", lines[0])
        lines, t = c.cmd(b"ENABLE CONDSTORE")
        self.assertIn(b"* ENABLED CONDSTORE\r\n", lines)
        lines, t = c.cmd(b"ENABLE CONDSTORE")
        self.assertIn(b"* ENABLED\r\n", lines)
        self.assertIn(b"OK", t)
        lines, t = c.cmd(b"SELECT INBOX")
        self.assertTrue(any(re.match(rb"\* OK \[HIGHESTMODSEQ \d+\]", l) for l in lines), lines)

    def test_select_condstore_and_status(self):
        c = self.client()
        self.fill(c, b"cs1", 3)
        lines, t = c.cmd(b"SELECT cs1")
        self.assertFalse(any(b"HIGHESTMODSEQ" in l for l in lines))
        lines, t = c.cmd(b"STATUS cs1 (MESSAGES HIGHESTMODSEQ)")
        m = re.search(rb"\* STATUS \"?cs1\"? \(MESSAGES 3 HIGHESTMODSEQ (\d+)\)", b"".join(lines))
        self.assertTrue(m, lines)
        hms = int(m.group(1))
        d = self.client()
        lines, t = d.cmd(b"EXAMINE cs1 (CONDSTORE)")
        self.assertIn(b"OK", t)
        self.assertIn(b"* OK [HIGHESTMODSEQ %d] " % hms, b"".join(lines))
        _, t = d.cmd(b"SELECT cs1 (BOGUS)")
        self.assertIn(b"BAD", t)
        _, t = d.cmd(b"STATUS cs1 (HIGHESTMODSEQ FOO)")
        self.assertIn(b"BAD", t)

    def test_fetch_store_modseq(self):
        c = self.client()
        self.fill(c, b"cs2", 3)
        c.cmd(b"SELECT cs2")
        lines, t = c.cmd(b"FETCH 1:* (UID MODSEQ)")
        self.assertIn(b"OK", t)
        ms = [int(x) for x in re.findall(rb"MODSEQ \((\d+)\)", b"".join(lines))]
        self.assertEqual(len(ms), 3)
        self.assertTrue(all(x > 0 for x in ms))
        # a store bumps the modseq and reports it (FETCH MODSEQ enabled it)
        lines, t = c.cmd(b"STORE 2 +FLAGS (\\Flagged)")
        self.assertIn(b"OK", t)
        m = re.search(rb"\* 2 FETCH \(FLAGS \(\\Flagged[^)]*\) MODSEQ \((\d+)\)\)", b"".join(lines))
        self.assertTrue(m, lines)
        m2 = int(m.group(1))
        self.assertGreater(m2, max(ms))
        # CHANGEDSINCE returns only message 2
        lines, t = c.cmd(b"FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % max(ms))
        self.assertIn(b"OK", t)
        fetched = [l for l in lines if b" FETCH " in l]
        self.assertEqual(len(fetched), 1, lines)
        self.assertIn(b"* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (%d))" % m2, fetched[0])
        lines, t = c.cmd(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % m2)
        self.assertEqual([l for l in lines if b" FETCH " in l], [])
        # UNCHANGEDSINCE: 2 was changed after max(ms), 1 and 3 were not
        lines, t = c.cmd(b"STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Seen)" % max(ms))
        self.assertIn(b"OK [MODIFIED 2]", t)
        got = b"".join(lines)
        self.assertRegex(got, rb"\* 1 FETCH \(MODSEQ \(\d+\)\)")
        self.assertRegex(got, rb"\* 3 FETCH \(MODSEQ \(\d+\)\)")
        self.assertNotIn(b"* 2 FETCH", got)
        lines, t = c.cmd(b"FETCH 2 FLAGS")
        self.assertNotIn(b"\\Seen", b"".join(lines))
        lines, t = c.cmd(b"UID STORE 1:* (UNCHANGEDSINCE 0) FLAGS (x)")
        uids = re.search(rb"MODIFIED ([0-9:,]+)", t)
        self.assertTrue(uids, t)
        # another session sees the change with MODSEQ once enabled
        d = self.client()
        d.cmd(b"ENABLE CONDSTORE")
        d.cmd(b"SELECT cs2")
        c.cmd(b"STORE 3 FLAGS (\\Answered)")
        lines, t = d.cmd(b"NOOP")
        self.assertRegex(b"".join(lines),
                         rb"\* 3 FETCH \(UID \d+ FLAGS \(\\Answered[^)]*\) MODSEQ \(\d+\)\)")
        # errors
        for bad in (b"FETCH 1 FLAGS (CHANGEDSINCE)", b"FETCH 1 FLAGS (CHANGEDSINCE 0)",
                    b"FETCH 1 FLAGS (CHANGEDSINCE x)", b"FETCH 1 FLAGS (FOO 1)",
                    b"STORE 1 (UNCHANGEDSINCE -1) +FLAGS (a)",
                    b"STORE 1 (UNCHANGEDSINCE 99999999999999999999) +FLAGS (a)",
                    b"STORE 1 (FOO 1) +FLAGS (a)"):
            _, t = c.cmd(bad)
            self.assertIn(b"BAD", t, bad)

    def test_search_modseq(self):
        c = self.client()
        self.fill(c, b"cs3", 3)
        c.cmd(b"SELECT cs3")
        lines, t = c.cmd(b"STATUS cs3 (HIGHESTMODSEQ)")
        hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(lines)).group(1))
        lines, t = c.cmd(b"STORE 2 +FLAGS.SILENT (\\Seen)")
        m2 = int(re.search(rb"MODSEQ \((\d+)\)", b"".join(lines)).group(1))
        lines, t = c.cmd(b"SEARCH MODSEQ %d" % (hms + 1))
        self.assertIn(b"OK", t)
        self.assertIn(b"* SEARCH 2 (MODSEQ %d)\r\n" % m2, lines)
        lines, t = c.cmd(b'UID SEARCH (MODSEQ "/flags/\\\\seen" all %d) SEEN' % (hms + 1))
        self.assertRegex(b"".join(lines), rb"\* SEARCH \d+ \(MODSEQ %d\)" % m2)
        lines, t = c.cmd(b"SEARCH RETURN (COUNT) MODSEQ 1")
        self.assertIn(b"COUNT 3 MODSEQ %d" % m2, b"".join(lines))
        lines, t = c.cmd(b"SEARCH MODSEQ %d" % (m2 + 1))
        self.assertIn(b"* SEARCH\r\n", lines)
        for bad in (b"SEARCH MODSEQ", b"SEARCH MODSEQ x", b'SEARCH MODSEQ "/flags/x" bogus 1',
                    b"SEARCH MODSEQ 99999999999999999999"):
            _, t = c.cmd(bad)
            self.assertIn(b"BAD", t, bad)


class TestImapQresync(RawSessions, unittest.TestCase):
    """RFC 7162 QRESYNC: VANISHED, SELECT (QRESYNC ...), UID FETCH VANISHED,
    and the fallback when the expunge log no longer reaches back."""

    server_options = {"listeners": ("imap",),
                      "conf": {"storage": {"expunge_log_retention": "1s"}}}

    def state(self, c, box):
        lines, _ = c.cmd(b"STATUS " + box + b" (UIDVALIDITY HIGHESTMODSEQ)")
        j = b"".join(lines)
        return (int(re.search(rb"UIDVALIDITY (\d+)", j).group(1)),
                int(re.search(rb"HIGHESTMODSEQ (\d+)", j).group(1)))

    def test_qresync(self):
        c = self.client()
        self.fill(c, b"q1", 6)
        uv, ms = self.state(c, b"q1")
        _, t = c.cmd(b"SELECT q1 (QRESYNC (%d %d))" % (uv, ms))
        self.assertIn(b"BAD", t)  # not enabled yet
        lines, t = c.cmd(b"ENABLE QRESYNC")
        self.assertIn(b"* ENABLED QRESYNC\r\n", lines)
        lines, t = c.cmd(b"CAPABILITY")
        self.assertIn(b" QRESYNC", lines[0])
        c.cmd(b"SELECT q1")
        # expunge 2 and 3 (UIDs 2, 3): VANISHED, not EXPUNGE
        c.cmd(b"STORE 2:3 +FLAGS.SILENT (\\Deleted)")
        lines, t = c.cmd(b"EXPUNGE")
        self.assertIn(b"* VANISHED 2:3\r\n", lines)
        self.assertFalse(any(b"EXPUNGE" in l for l in lines), lines)
        c.cmd(b"STORE 1 +FLAGS (\\Flagged)")
        # a second client resynchronises
        d = self.client()
        d.cmd(b"ENABLE QRESYNC")
        lines, t = d.cmd(b"SELECT q1 (QRESYNC (%d %d))" % (uv, ms))
        self.assertIn(b"OK", t)
        j = b"".join(lines)
        self.assertIn(b"* VANISHED (EARLIER) 2:3\r\n", j)
        self.assertRegex(j, rb"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged[^)]*\) MODSEQ \(\d+\)\)")
        self.assertIn(b"HIGHESTMODSEQ", j)
        # known-uids narrows the report; seq-match is accepted
        lines, t = d.cmd(b"EXAMINE q1 (QRESYNC (%d %d 3:6 (1:2 1:3)))" % (uv, ms))
        self.assertIn(b"OK", t)
        j = b"".join(lines)
        self.assertIn(b"* VANISHED (EARLIER) 3\r\n", j)
        self.assertNotIn(b"UID 1 ", j)
        # wrong UIDVALIDITY: a plain select
        lines, t = d.cmd(b"EXAMINE q1 (QRESYNC (%d %d))" % (uv + 1, ms))
        self.assertIn(b"OK", t)
        self.assertNotIn(b"VANISHED", b"".join(lines))
        # UID FETCH CHANGEDSINCE VANISHED
        lines, t = d.cmd(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % ms)
        self.assertIn(b"OK", t)
        j = b"".join(lines)
        self.assertIn(b"* VANISHED (EARLIER) 2:3\r\n", j)
        self.assertEqual(len(re.findall(rb"FETCH", j)), 1, j)
        # errors
        for bad in (b"FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % ms,
                    b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d FOO)" % ms,
                    b"SELECT q1 (QRESYNC (0 %d))" % ms,
                    b"SELECT q1 (QRESYNC (%d))" % uv,
                    b"SELECT q1 (QRESYNC (%d %d 1:* ))" % (uv, ms),
                    b"SELECT q1 (QRESYNC (%d x))" % uv):
            _, t = d.cmd(bad)
            self.assertIn(b"BAD", t, bad)

    def test_log_pruned_fallback(self):
        c = self.client()
        c.cmd(b"ENABLE QRESYNC")
        self.fill(c, b"q2", 5)
        uv, ms = self.state(c, b"q2")
        c.cmd(b"SELECT q2")
        c.cmd(b"STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.cmd(b"EXPUNGE")
        time.sleep(2.2)  # past the 1 s retention: the next expunge prunes it
        c.cmd(b"STORE 1 +FLAGS.SILENT (\\Deleted)")
        lines, t = c.cmd(b"EXPUNGE")
        self.assertIn(b"* VANISHED 2\r\n", lines)
        d = self.client()
        d.cmd(b"ENABLE QRESYNC")
        lines, t = d.cmd(b"SELECT q2 (QRESYNC (%d %d 1:5))" % (uv, ms))
        self.assertIn(b"OK", t)
        self.assertIn(b"* VANISHED (EARLIER) 1:2\r\n", b"".join(lines))
        lines, t = d.cmd(b"SELECT q2 (QRESYNC (%d %d))" % (uv, ms))
        self.assertIn(b"* VANISHED (EARLIER) 1:2\r\n", b"".join(lines))


if __name__ == "__main__":
    unittest.main()
