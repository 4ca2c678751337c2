"""Per-user \\Seen on shared mailboxes, the gaps of issue 16, on every
backend: a reader's \\Seen changes are seen by its CONDSTORE and QRESYNC
views (FETCH CHANGEDSINCE, SEARCH MODSEQ, SELECT QRESYNC, STORE
UNCHANGEDSINCE) with MODSEQs of its own while the owner's and the other
readers' do not move; the owner's MOVE and COPY carry each reader's \\Seen
to another mailbox that reader may read; a reader whose name is past 240
bytes; two sessions of one reader storing and appending at once; a STORE
past the 16 KiB bound of a seen set is refused whole with NO [LIMIT]."""
import re
import threading
import unittest

from roosttest import BACKENDS, SharedServer, backend_classes
from test_imap_raw import Raw

ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"
# a reader whose name is past SEEN_KEY_MAX (240): its set is keyed by a hash
LONG = "l" * 50 + "@" + ("d" * 60 + ".") * 3 + "example.org"
assert len(LONG) > 240
USERS = {ALICE: "alice-secret", BOB: "bob-secret", CAROL: "carol-secret",
         LONG: "long-secret"}


def shared(name):
    return b'"Other Users/' + ALICE.encode() + b"/" + name.encode() + b'"'


def message(subject):
    return ("From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\n\r\nbody %s\r\n"
            % (subject, subject)).encode()


def modseqs(lines):
    """{uid: (flags, modseq)} of the FETCH lines."""
    out = {}
    for l in lines:
        m = re.search(rb"FETCH \(.*UID (\d+)", l)
        f = re.search(rb"FLAGS \(([^)]*)\)", l)
        s = re.search(rb"MODSEQ \((\d+)\)", l)
        if m and s:
            out[int(m.group(1))] = (f.group(1) if f else None, int(s.group(1)))
    return out


def highest(lines):
    for l in lines:
        m = re.search(rb"HIGHESTMODSEQ (\d+)", l)
        if m:
            return int(m.group(1))
    raise AssertionError("no HIGHESTMODSEQ in %r" % (lines,))


class SeenBase(SharedServer):
    backend = "lmdb"
    server_options = {"users": USERS, "listeners": ("imap",)}

    def raw(self, user):
        r = Raw(self.srv.port("imap"), timeout=60).login(user.encode(), USERS[user].encode())
        self.addCleanup(r.close)
        return r

    def ok(self, r, text):
        lines, t = r.cmd(text)
        self.assertRegex(t, rb"^t\d+ OK", (text, lines, t))
        return lines

    def desk(self, name, n, acl):
        """alice's mailbox name with n messages, shared as acl says."""
        a = self.raw(ALICE)
        self.ok(a, b'CREATE "' + name.encode() + b'"')
        for i in range(n):
            body = message("%s %d" % (name, i))
            a.send(b'ap APPEND "%s" {%d+}\r\n' % (name.encode(), len(body)) + body + b"\r\n")
            lines, t = a.until(b"ap")
            self.assertIn(b" OK ", t)
        for who, rights in acl.items():
            self.ok(a, b'SETACL "%s" "%s" %s' % (name.encode(), who.encode(), rights.encode()))
        return a

    def test_condstore_of_a_reader(self):
        a = self.desk("Cond", 3, {BOB: "lrsw", CAROL: "lrs"})
        lines = self.ok(a, b'SELECT "Cond" (CONDSTORE)')
        alice_h = highest(lines)
        alice_ms = modseqs(self.ok(a, b"UID FETCH 1:* (FLAGS MODSEQ)"))
        c = self.raw(CAROL)
        carol_h = highest(self.ok(c, b"STATUS " + shared("Cond") + b" (HIGHESTMODSEQ)"))
        b1 = self.raw(BOB)
        self.ok(b1, b"ENABLE QRESYNC")
        lines = self.ok(b1, b"SELECT " + shared("Cond"))
        uidv = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(lines)).group(1))
        h0 = highest(lines)
        before = modseqs(self.ok(b1, b"UID FETCH 1:* (FLAGS MODSEQ)"))
        uids = sorted(before)
        self.assertTrue(all(ms <= h0 for _, ms in before.values()))

        # bob's other session marks the second one \Seen
        b2 = self.raw(BOB)
        self.ok(b2, b"ENABLE CONDSTORE")
        self.ok(b2, b"SELECT " + shared("Cond"))
        lines = self.ok(b2, b"STORE 2 +FLAGS (\\Seen)")
        m = modseqs([l.replace(b"FETCH (", b"FETCH (UID %d " % uids[1]) for l in lines])
        self.assertIn(b"\\Seen", m[uids[1]][0])
        m1 = m[uids[1]][1]
        self.assertGreater(m1, h0)

        # a new session of bob that only knows h0 finds it, and only it
        b3 = self.raw(BOB)
        self.ok(b3, b"ENABLE CONDSTORE")
        self.ok(b3, b"SELECT " + shared("Cond"))
        got = modseqs(self.ok(b3, b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h0))
        self.assertEqual(list(got), [uids[1]])
        self.assertEqual(got[uids[1]][1], m1)
        lines = self.ok(b3, b"SEARCH MODSEQ %d" % (h0 + 1))
        self.assertIn(b"* SEARCH 2 (MODSEQ %d)" % m1, b"".join(lines))
        self.assertEqual(modseqs(self.ok(b3, b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % m1)),
                         {})
        # QRESYNC's SELECT of a session that knew h0
        b4 = self.raw(BOB)
        self.ok(b4, b"ENABLE QRESYNC")
        lines = self.ok(b4, b"SELECT " + shared("Cond") + b" (QRESYNC (%d %d))" % (uidv, h0))
        got = modseqs(lines)
        self.assertEqual(list(got), [uids[1]])
        self.assertIn(b"\\Seen", got[uids[1]][0])
        self.assertEqual(highest(lines), m1)
        # the first session: NOOP tells it, with the MODSEQ
        lines = self.ok(b1, b"NOOP")
        self.assertEqual(modseqs(lines)[uids[1]][1], m1)

        # alice and carol: nothing moved
        lines = self.ok(a, b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % alice_h)
        self.assertEqual(modseqs(lines), {})
        self.assertEqual(modseqs(self.ok(a, b"UID FETCH 1:* (FLAGS MODSEQ)")), alice_ms)
        self.assertEqual(highest(self.ok(a, b'STATUS "Cond" (HIGHESTMODSEQ)')), alice_h)
        self.assertEqual(
            highest(self.ok(c, b"STATUS " + shared("Cond") + b" (HIGHESTMODSEQ)")), carol_h)

        # UNCHANGEDSINCE against bob's MODSEQ of the message
        lines, t = b3.cmd(b"STORE 2 (UNCHANGEDSINCE %d) -FLAGS (\\Seen)" % h0)
        self.assertRegex(t, rb"^t\d+ OK \[MODIFIED 2\]")
        lines, t = b3.cmd(b"STORE 2 (UNCHANGEDSINCE %d) -FLAGS (\\Seen)" % m1)
        self.assertRegex(t, rb"^t\d+ OK ")
        self.assertNotIn(b"MODIFIED", t)
        m2 = int(re.search(rb"MODSEQ \((\d+)\)", b"".join(lines)).group(1))
        self.assertGreater(m2, m1)
        # the owner's change after bob's stands above it for bob
        self.ok(a, b"STORE 3 +FLAGS (\\Flagged)")
        got = modseqs(self.ok(b3, b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % m2))
        self.assertEqual(list(got), [uids[2]])
        self.assertGreater(got[uids[2]][1], m2)
        self.assertNotIn(b"\\Seen", got[uids[2]][0])
        lines, t = b3.cmd(b"STORE 3 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % m2)
        self.assertRegex(t, rb"^t\d+ OK \[MODIFIED 3\]")
        self.assertEqual(self.ok(b3, b"SEARCH SEEN")[0], b"* SEARCH\r\n")

    def test_owner_move_and_copy_carry_seen(self):
        a = self.desk("Carry", 4, {BOB: "lrs", CAROL: "lrs", LONG: "lrs"})
        self.ok(a, b'CREATE "Carry2"')
        for who in (BOB, LONG):
            self.ok(a, b'SETACL "Carry2" "%s" lrs' % who.encode())
        for who, seqs in ((BOB, b"1:2"), (CAROL, b"1:4"), (LONG, b"2:3")):
            r = self.raw(who)
            self.ok(r, b"SELECT " + shared("Carry"))
            self.ok(r, b"STORE " + seqs + b" +FLAGS.SILENT (\\Seen)")
        self.ok(a, b'SELECT "Carry"')
        self.ok(a, b'MOVE 1:3 "Carry2"')
        self.ok(a, b'COPY 1 "Carry2"')  # the fourth, now the first
        for who, want in ((BOB, b"* SEARCH 1 2\r\n"), (LONG, b"* SEARCH 2 3\r\n")):
            r = self.raw(who)
            self.ok(r, b"SELECT " + shared("Carry2"))
            self.assertEqual(self.ok(r, b"SEARCH SEEN")[0], want, who)
        # carol could not read Carry2: nothing of hers went there
        self.ok(a, b'SETACL "Carry2" "%s" lr' % CAROL.encode())
        c = self.raw(CAROL)
        lines = self.ok(c, b"STATUS " + shared("Carry2") + b" (UNSEEN)")
        self.assertIn(b"UNSEEN 4", b"".join(lines))
        # and back: bob's \\Seen follows the messages home
        self.ok(a, b'SELECT "Carry2"')
        self.ok(a, b'MOVE 1:4 "Carry"')
        r = self.raw(BOB)
        self.ok(r, b"SELECT " + shared("Carry"))
        self.assertEqual(self.ok(r, b"SEARCH SEEN")[0], b"* SEARCH 2 3\r\n")
        # the owner's own \\Seen is untouched by all of it
        self.ok(a, b'SELECT "Carry"')
        self.assertEqual(self.ok(a, b"SEARCH SEEN")[0], b"* SEARCH\r\n")

    def test_long_reader_name(self):
        a = self.desk("Long", 3, {LONG: "lrs", BOB: "lrs"})
        r = self.raw(LONG)
        self.ok(r, b"ENABLE CONDSTORE")
        lines = self.ok(r, b"SELECT " + shared("Long"))
        h0 = highest(lines)
        self.ok(r, b"STORE 1,3 +FLAGS (\\Seen)")
        self.assertEqual(self.ok(r, b"SEARCH UNSEEN")[0], b"* SEARCH 2\r\n")
        lines = self.ok(r, b"STATUS " + shared("Long") + b" (UNSEEN HIGHESTMODSEQ)")
        self.assertIn(b"UNSEEN 1", b"".join(lines))
        self.assertGreater(highest(lines), h0)
        b = self.raw(BOB)
        self.ok(b, b"SELECT " + shared("Long"))
        self.assertEqual(self.ok(b, b"SEARCH UNSEEN")[0], b"* SEARCH 1 2 3\r\n")
        self.ok(a, b'SELECT "Long"')
        self.assertEqual(self.ok(a, b"SEARCH SEEN")[0], b"* SEARCH\r\n")
        # METADATA never shows the sets, whatever the key
        lines = self.ok(a, b'GETMETADATA (DEPTH infinity) "Long" (/private /shared)')
        self.assertNotIn(b"seen", b"".join(lines).lower())

    def test_two_sessions_of_one_reader(self):
        """Two sessions of bob store \\Seen on interleaved messages and
        append with \\Seen at once: nothing of either is lost."""
        a = self.desk("Both", 40, {BOB: "lrsi"})
        errors = []

        def work(first):
            try:
                r = Raw(self.srv.port("imap"), timeout=60).login(BOB.encode(),
                                                                 USERS[BOB].encode())
                try:
                    _, t = r.cmd(b"SELECT " + shared("Both"))
                    assert b" OK " in t, t
                    for i in range(first, 41, 2):
                        _, t = r.cmd(b"STORE %d +FLAGS.SILENT (\\Seen)" % i)
                        assert b" OK " in t, t
                        body = message("by %d %d" % (first, i))
                        r.send(b"ap APPEND %s (\\Seen) {%d+}\r\n" % (shared("Both"), len(body))
                               + body + b"\r\n")
                        _, t = r.until(b"ap")
                        assert b" OK " in t, t
                finally:
                    r.close()
            except Exception as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.assertFalse(any(t.is_alive() for t in threads))
        self.assertEqual(errors, [])
        b = self.raw(BOB)
        lines = self.ok(b, b"STATUS " + shared("Both") + b" (MESSAGES UNSEEN)")
        self.assertIn(b"MESSAGES 80 UNSEEN 0", b"".join(lines))
        self.ok(b, b"SELECT " + shared("Both"))
        self.assertEqual(self.ok(b, b"SEARCH UNSEEN")[0], b"* SEARCH\r\n")
        self.ok(a, b'SELECT "Both"')
        self.assertEqual(self.ok(a, b"SEARCH SEEN")[0], b"* SEARCH\r\n")

    def test_seen_set_bound(self):
        """16384 messages, bob marks every other one: the set's 16 KiB bound
        is passed at the last quarter, which is refused whole (\\Flagged
        too) with NO [LIMIT]; what was stored before stays."""
        a = self.desk("Big", 1, {BOB: "lrsw"})
        self.ok(a, b'SELECT "Big"')
        for _ in range(14):
            self.ok(a, b'COPY 1:* "Big"')
        lines = self.ok(a, b'STATUS "Big" (MESSAGES)')
        self.assertIn(b"MESSAGES 16384", b"".join(lines))
        b = self.raw(BOB)
        self.ok(b, b"SELECT " + shared("Big"))
        quarters = [b",".join(b"%d" % i for i in range(q * 4096 + 1, (q + 1) * 4096, 2))
                    for q in range(4)]
        for q in quarters[:3]:
            self.ok(b, b"STORE " + q + b" +FLAGS.SILENT (\\Seen \\Flagged)")
        lines, t = b.cmd(b"STORE " + quarters[3] + b" +FLAGS.SILENT (\\Seen \\Flagged)")
        self.assertRegex(t, rb"^t\d+ NO \[LIMIT\]")
        lines = self.ok(b, b"FETCH 12289,16383 (FLAGS)")
        for l in lines:
            self.assertNotIn(b"\\Seen", l)
            self.assertNotIn(b"\\Flagged", l)
        self.assertIn(b"\\Flagged", self.ok(b, b"FETCH 12287 (FLAGS)")[0])
        lines = self.ok(self.raw(BOB), b"STATUS " + shared("Big") + b" (UNSEEN)")
        self.assertIn(b"UNSEEN %d" % (16384 - 3 * 2048), b"".join(lines))
        # the session goes on working
        self.ok(b, b"STORE 16384 +FLAGS.SILENT (\\Seen)")


backend_classes(globals(), SeenBase, "TestImapAclSeen_%s", BACKENDS)

if __name__ == "__main__":
    unittest.main()
