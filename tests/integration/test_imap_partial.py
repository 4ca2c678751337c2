"""PARTIAL (RFC 9394) on the wire, raw protocol, both backends: SEARCH,
UID SEARCH and UID SORT RETURN (PARTIAL a:b) and (PARTIAL -a:-b) answer
the window of the result in ESEARCH (the range as the client wrote it, NIL
past the end), beside MIN/MAX/COUNT; SAVE keeps the window; UPDATE with
PARTIAL is declined with NOUPDATE; UID FETCH's (PARTIAL range) modifier
pages what the FETCH returns, after CHANGEDSINCE. Hostile ranges (0, 2^32,
mixed signs, "*", twice, with ALL, on FETCH without UID) get BAD and the
session goes on."""
import re
import unittest

from roosttest import BACKENDS, backend_classes
from test_imap_raw import Raw, RawClients

N = 12


class PartialBase(RawClients):
    server_options = {"listeners": ("imap",)}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        r = Raw(cls.srv.port("imap")).login()
        r.cmd(b"CREATE Part")
        for i in range(1, N + 1):
            # subjects sort in the reverse of arrival
            msg = b"From: a@example.org\r\nSubject: s%02d\r\n\r\nbody %d\r\n" % (N + 1 - i, i)
            r.send(b"ap APPEND Part {%d+}\r\n" % len(msg) + msg + b"\r\n")
            _, t = r.until(b"ap")
            assert b"ap OK" in t, t
        r.cmd(b"SELECT Part")
        # UIDs 3 and 4 go: UIDs 1,2,5..12, sequence numbers 1..10
        r.cmd(b"UID STORE 3:4 +FLAGS.SILENT (\\Deleted)")
        r.cmd(b"EXPUNGE")
        r.close()

    def raw(self):
        r = super().raw()
        self.ok(r, b"SELECT Part")
        return r

    def esearch(self, r, text):
        lines = self.ok(r, text)
        found = [ln for ln in lines if ln.startswith(b"* ESEARCH")]
        self.assertEqual(len(found), 1, lines)
        return found[0].rstrip(b"\r\n")

    def test_capability(self):
        r = self.raw()
        self.assertIn(b"PARTIAL", self.ok(r, b"CAPABILITY")[0].split())

    def test_uid_search(self):
        r = self.raw()
        tag = b"t%d" % (r.n + 1)
        self.assertEqual(self.esearch(r, b"UID SEARCH RETURN (PARTIAL 1:3) ALL"),
                         b'* ESEARCH (TAG "' + tag + b'") UID PARTIAL (1:3 1:2,5)')
        cases = {
            b"-1:-3": b"(-1:-3 10:12)",
            b"-3:-1": b"(-3:-1 10:12)",
            b"4:2": b"(4:2 2,5:6)",
            b"2:4": b"(2:4 2,5:6)",
            b"9:100": b"(9:100 11:12)",
            b"-9:-100": b"(-9:-100 1:2)",
            b"11:20": b"(11:20 NIL)",
            b"-11:-4294967295": b"(-11:-4294967295 NIL)",
            b"1:4294967295": b"(1:4294967295 1:2,5:12)",
        }
        for rng, want in cases.items():
            line = self.esearch(r, b"UID SEARCH RETURN (PARTIAL " + rng + b") ALL")
            self.assertTrue(line.endswith(b" UID PARTIAL " + want), (rng, line))
        # beside MIN, MAX and COUNT, which see the whole result
        line = self.esearch(r, b"UID SEARCH RETURN (MIN MAX COUNT PARTIAL -1:-2) ALL")
        self.assertRegex(line, rb" UID MIN 1 MAX 12 COUNT 10 PARTIAL \(-1:-2 11:12\)$")
        # with other keys: the window is on the matches
        line = self.esearch(r, b"UID SEARCH RETURN (PARTIAL -1:-2) NOT UID 12")
        self.assertTrue(line.endswith(b"PARTIAL (-1:-2 10:11)"), line)
        line = self.esearch(r, b"UID SEARCH RETURN (PARTIAL 1:5) UID 100:200")
        self.assertTrue(line.endswith(b"PARTIAL (1:5 NIL)"), line)

    def test_seq_search_and_sort(self):
        r = self.raw()
        line = self.esearch(r, b"SEARCH RETURN (PARTIAL -1:-4) ALL")
        self.assertNotIn(b" UID ", line)
        self.assertTrue(line.endswith(b"PARTIAL (-1:-4 7:10)"), line)
        # sorted by subject: the latest arrival first (UIDs 12, 11, ...)
        line = self.esearch(r, b"UID SORT RETURN (PARTIAL 1:3) (SUBJECT) UTF-8 ALL")
        self.assertTrue(line.endswith(b" UID PARTIAL (1:3 12,11,10)"), line)
        line = self.esearch(r, b"UID SORT RETURN (PARTIAL -1:-3) (SUBJECT) UTF-8 ALL")
        self.assertTrue(line.endswith(b" UID PARTIAL (-1:-3 5,2,1)"), line)

    def test_save_and_update(self):
        r = self.raw()
        self.ok(r, b"UID SEARCH RETURN (SAVE PARTIAL -1:-3) ALL")
        lines = self.ok(r, b"UID FETCH $ (UID)")
        uids = sorted(int(re.search(rb"UID (\d+)", ln).group(1)) for ln in lines)
        self.assertEqual(uids, [10, 11, 12])
        lines = self.ok(r, b"UID SEARCH RETURN (UPDATE PARTIAL 1:2) ALL")
        tag = b"t%d" % r.n
        self.assertIn(b'* OK [NOUPDATE "' + tag + b'"]', b"".join(lines))
        self.assertTrue(any(ln.rstrip().endswith(b"PARTIAL (1:2 1:2)") for ln in lines), lines)

    def test_uid_fetch(self):
        r = self.raw()
        lines = self.ok(r, b"UID FETCH 1:* (FLAGS) (PARTIAL -1:-3)")
        uids = [int(re.search(rb"UID (\d+)", ln).group(1)) for ln in lines]
        self.assertEqual(sorted(uids), [10, 11, 12])
        lines = self.ok(r, b"UID FETCH 2:11 (UID) (PARTIAL 2:3)")
        uids = [int(re.search(rb"UID (\d+)", ln).group(1)) for ln in lines]
        self.assertEqual(sorted(uids), [5, 6])
        lines = self.ok(r, b"UID FETCH 1:* (UID) (PARTIAL 20:30)")
        self.assertEqual(lines, [])
        # after CHANGEDSINCE: the window on the changed messages
        self.ok(r, b"UID STORE 1,5,9 +FLAGS.SILENT (\\Flagged)")
        lines = self.ok(r, b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)")
        ms = sorted(int(re.search(rb"MODSEQ \((\d+)\)", ln).group(1))
                    for ln in lines if b" FETCH " in ln)
        since = ms[-4]  # the three flagged ones have the highest MODSEQs
        lines = self.ok(r, b"UID FETCH 1:* (FLAGS) (PARTIAL -1:-2 CHANGEDSINCE %d)" % since)
        uids = sorted(int(re.search(rb"UID (\d+)", ln).group(1))
                      for ln in lines if b" FETCH " in ln)
        self.assertEqual(uids, [5, 9])
        self.ok(r, b"UID STORE 1,5,9 -FLAGS.SILENT (\\Flagged)")

    def test_hostile(self):
        # a fresh session every few commands: 20 BADs close one
        for i, rng in enumerate( (b"0:5", b"5:0", b"-0:-1", b"1:4294967296", b"4294967296:1", b"-1:5",
                    b"1:-5", b"1:*", b"*", b"1", b"01:2", b'"1:2"', b"(1:2)", b"1:2,4:5",
                    b"99999999999999999999:1", b"-" * 300)):
            if i % 8 == 0:
                r = self.raw()
            self.bad(r, b"UID SEARCH RETURN (PARTIAL " + rng + b") ALL")
        r = self.raw()
        self.bad(r, b"UID SEARCH RETURN (PARTIAL) ALL")
        self.bad(r, b"UID SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL")
        self.bad(r, b"UID SEARCH RETURN (PARTIAL 1:2 ALL) ALL")
        self.bad(r, b"UID SORT RETURN (ALL PARTIAL 1:2) (DATE) UTF-8 ALL")
        self.bad(r, b"FETCH 1:* (FLAGS) (PARTIAL 1:2)")
        self.bad(r, b"UID FETCH 1:* (FLAGS) (PARTIAL 0:2)")
        self.bad(r, b"UID FETCH 1:* (FLAGS) (PARTIAL 1:2 PARTIAL 3:4)")
        self.bad(r, b"UID FETCH 1:* (FLAGS) (PARTIAL)")
        self.bad(r, b"UID FETCH 1:* (FLAGS) ()")
        self.ok(r, b"NOOP")


backend_classes(globals(), PartialBase, "TestImapPartial_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
