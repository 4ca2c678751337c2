"""INPROGRESS (RFC 9585) on the wire, raw protocol, both backends: a SEARCH
or SORT that works longer than [imap] inprogress_interval (1 ms here, so a few
thousand messages are enough) sends untagged OK [INPROGRESS ("tag" done
total)] lines, done rising, total the mailbox's messages, before the same
result a short search gives; a pipelined command waits its turn; SAVE,
ESEARCH and the budget's NO [LIMIT] still work across steps. With the
default interval (1 s) a small search sends none."""
import re
import unittest

from roosttest import BACKENDS, SharedServer, backend_classes
from test_imap_raw import Raw

N = 1500
PROGRESS = re.compile(rb'^\* OK \[INPROGRESS \("([^"]+)" (\d+) (\d+|NIL)\)\] ')


class InProgressBase(SharedServer):
    backend = "lmdb"
    conf = {"imap": {"inprogress_interval": "1"}, "storage": {"fsync": "no"}}

    @classmethod
    def server_args(cls):
        return dict(super().server_args(), listeners=("imap",), conf=cls.conf)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        r = Raw(cls.srv.port("imap")).login()
        r.cmd(b"CREATE Big")
        # pipelined appends, LITERAL+: one round trip per hundred
        for start in range(0, N, 100):
            out = b""
            for i in range(start, min(start + 100, N)):
                body = b"line of text %d\r\n" % i * 20
                if i % 100 == 7:
                    body += b"needle here\r\n"
                msg = b"From: a@example.org\r\nSubject: m%d\r\n\r\n" % i + body
                out += b"a%d APPEND Big {%d+}\r\n" % (i, len(msg)) + msg + b"\r\n"
            r.send(out)
            _, t = r.until(b"a%d" % (min(start + 100, N) - 1))
            assert b" OK " in t, t
        r.close()

    def raw(self):
        r = Raw(self.srv.port("imap")).login()
        self.addCleanup(r.close)
        _, t = r.cmd(b"SELECT Big")
        self.assertIn(b" OK ", t)
        return r

    def check_progress(self, lines, tag):
        prog = [PROGRESS.match(ln) for ln in lines if ln.startswith(b"* OK [INPROGRESS")]
        self.assertTrue(prog, lines[:5])
        last = -1
        for m in prog:
            self.assertIsNotNone(m)
            self.assertEqual(m.group(1), tag)
            done, total = int(m.group(2)), int(m.group(3))
            self.assertEqual(total, N)
            self.assertGreater(done, last)
            self.assertLess(done, total)
            last = done
        # progress comes before the result
        first_result = min(i for i, ln in enumerate(lines)
                           if ln.startswith(b"* SEARCH") or ln.startswith(b"* ESEARCH"))
        last_prog = max(i for i, ln in enumerate(lines) if ln.startswith(b"* OK [INPROGRESS"))
        self.assertLess(last_prog, first_result)

    def test_capability(self):
        r = self.raw()
        _, t = r.cmd(b"CAPABILITY")
        self.assertIn(b" OK ", t)
        lines, _ = r.cmd(b"CAPABILITY")
        self.assertIn(b"INPROGRESS", lines[0].split())

    def test_text_search_reports(self):
        r = self.raw()
        lines, tagged = r.cmd(b"SEARCH TEXT needle", tag=b"s1")
        self.assertIn(b"s1 OK", tagged)
        self.check_progress(lines, b"s1")
        res = [ln for ln in lines if ln.startswith(b"* SEARCH")]
        self.assertEqual(res[0].split()[2:], [b"%d" % (i + 1) for i in range(7, N, 100)])

    def test_esearch_save_and_pipelining(self):
        r = self.raw()
        r.send(b"u1 UID SEARCH RETURN (COUNT SAVE) BODY needle\r\nu2 NOOP\r\n"
               b"u3 UID FETCH $ (UID)\r\n")
        lines, tagged = r.until(b"u1")
        self.assertIn(b"u1 OK", tagged)
        self.check_progress(lines, b"u1")
        self.assertTrue(any(ln.startswith(b'* ESEARCH (TAG "u1") UID COUNT %d'
                                          % len(range(7, N, 100))) for ln in lines), lines[-3:])
        _, tagged = r.until(b"u2")
        self.assertIn(b"u2 OK", tagged)
        lines, tagged = r.until(b"u3")
        self.assertIn(b"u3 OK", tagged)
        self.assertEqual(len([ln for ln in lines if b" FETCH " in ln]), len(range(7, N, 100)))

    def test_cheap_keys_and_sort(self):
        # flags only: no message read, but still in steps past the interval
        r = self.raw()
        lines, tagged = r.cmd(b"UID SEARCH RETURN (MIN MAX) NOT DELETED", tag=b"c1")
        self.assertIn(b"c1 OK", tagged)
        self.assertTrue(any(re.match(rb'\* ESEARCH \(TAG "c1"\) UID MIN 1 MAX %d' % N, ln)
                            for ln in lines), lines[-2:])
        lines, tagged = r.cmd(b"UID SORT (SUBJECT) UTF-8 TEXT needle", tag=b"c2")
        self.assertIn(b"c2 OK", tagged)
        self.assertTrue([ln for ln in lines if ln.startswith(b'* OK [INPROGRESS ("c2" ')])
        # subjects m1007, m107, m1107, ... sort as text
        want = sorted(range(7, N, 100), key=lambda i: "m%d" % i)
        res = [ln for ln in lines if ln.startswith(b"* SORT")]
        self.assertEqual(res[0].split()[2:], [b"%d" % (i + 1) for i in want])
        lines, tagged = r.cmd(b"UID SORT RETURN (COUNT PARTIAL -1:-2 SAVE) (REVERSE SUBJECT) "
                              b"UTF-8 BODY needle", tag=b"c3")
        self.assertIn(b"c3 OK", tagged)
        self.assertTrue([ln for ln in lines if ln.startswith(b'* OK [INPROGRESS ("c3" ')])
        last2 = list(reversed(want))[-2:]
        tail = b"COUNT %d PARTIAL (-1:-2 %d,%d)" % (len(want), last2[0] + 1, last2[1] + 1)
        self.assertTrue(any(ln.rstrip().endswith(tail) for ln in lines), (tail, lines[-2:]))
        lines, tagged = r.cmd(b"UID FETCH $ (UID)")
        self.assertEqual(len([ln for ln in lines if b" FETCH " in ln]), 2)


class QuietBase(InProgressBase):
    conf = {"storage": {"fsync": "no"}}

    def test_text_search_reports(self):
        r = self.raw()
        lines, tagged = r.cmd(b"SEARCH SUBJECT m7", tag=b"q1")
        self.assertIn(b"q1 OK", tagged)
        self.assertFalse([ln for ln in lines if b"INPROGRESS" in ln])

    test_esearch_save_and_pipelining = None
    test_cheap_keys_and_sort = None


backend_classes(globals(), InProgressBase, "TestImapInProgress_%s", BACKENDS)
backend_classes(globals(), QuietBase, "TestImapInProgressQuiet_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
