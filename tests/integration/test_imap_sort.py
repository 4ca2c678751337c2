"""SORT, SORT=DISPLAY (RFC 5256, 5957) and THREAD=ORDEREDSUBJECT,
THREAD=REFERENCES (RFC 5256) through Python's imaplib, which has sort() and
thread(), and raw commands for the errors and hostile input: cyclic and
deep References, huge subjects, bad UTF-8, the search_budget. Both
backends."""
import imaplib
import re
import time
import unittest

from roosttest import BACKENDS, SharedServer, backend_classes

ALICE = ("alice@example.org", "alice-secret")
imaplib.Commands.setdefault("CANCELUPDATE", ("SELECTED",))


def msg(subject, frm, date=None, extra=b"", to=b"x@example.org"):
    h = b"From: " + frm + b"\r\nTo: " + to + b"\r\nSubject: " + subject + b"\r\n"
    if date is not None:
        h += b"Date: " + date + b"\r\n"
    return h + extra + b"\r\nbody\r\n"


def day(n):
    return ("Thu, %02d Jan 2020 10:00:00 +0000" % n).encode()


# Sort fixtures: (message, internal date)
SORT_MSGS = [
    (msg(b"Re: Apple", b"Zed <zed@x.org>", day(3)), '"05-Jan-2021 00:00:00 +0000"'),
    (msg(b"banana", b"alice@x.org", day(1)), '"04-Jan-2021 00:00:00 +0000"'),
    (msg(b"[list] Fwd: apple (fwd)", b"=?UTF-8?Q?=C3=89mile?= <emile@x.org>", day(2)),
     '"03-Jan-2021 00:00:00 +0000"'),
    (msg(b"=?UTF-8?B?w4lsYW4=?=", b"Bob <bob@x.org>", b"not a date"),
     '"31-Dec-2019 00:00:00 +0000"'),
    (msg(b"elan", b"\"Xavier\" <carol@x.org>", day(5), extra=b"X-Pad: " + b"p" * 200 + b"\r\n"),
     '"01-Jan-2021 00:00:00 +0000"'),
]


def tmsg(n, subject, mid=True, refs=None, irt=None):
    extra = b""
    if mid:
        extra += b"Message-ID: <%d@x>\r\n" % n
    if refs is not None:
        extra += b"References: " + refs + b"\r\n"
    if irt is not None:
        extra += b"In-Reply-To: " + irt + b"\r\n"
    return msg(subject, b"a@x.org", day(n), extra)


THREAD_MSGS = [
    tmsg(1, b"Topic A"),
    tmsg(2, b"Re: Topic A", refs=b"<1@x>"),
    tmsg(3, b"Re: Topic A", refs=b"<1@x> <2@x>"),
    tmsg(4, b"Re: Topic A", irt=b"<1@x>"),
    tmsg(5, b"Other"),
    tmsg(6, b"Re: Other", refs=b"<missing@x>"),
    tmsg(7, b"Loop", refs=b"<7@x>"),                 # refers to itself
    tmsg(8, b"Cycle", refs=b"<9@x>"),                # 8 -> 9 -> 8
    tmsg(9, b"Cycle", refs=b"<8@x>"),
    tmsg(10, b"Topic A", mid=False),
]


class SortBase(SharedServer):
    backend = "lmdb"

    server_options = {"listeners": ("imap",), "conf": {"imap": {"search_budget": "1M"}}}

    def connect(self):
        c = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=120)
        c.login(*ALICE)
        return c

    def fill(self, c, box, msgs):
        self.assertEqual(c.create(box)[0], "OK")
        for m in msgs:
            if isinstance(m, tuple):
                self.assertEqual(c.append(box, None, m[1], m[0])[0], "OK")
            else:
                self.assertEqual(c.append(box, None, None, m)[0], "OK")
        self.assertEqual(c.select(box)[0], "OK")

    def raw(self, c, *args):
        """(status, tagged text, untagged lines) of one command."""
        name = args[0]
        c.untagged_responses.clear()
        try:
            typ, data = c._simple_command(*args)
        except imaplib.IMAP4.error as e:
            return "ERR", str(e), {}
        return typ, data[0], dict(c.untagged_responses)

    def test_capability(self):
        c = self.connect()
        caps = c.capabilities
        for cap in ("SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES",
                    "WITHIN", "ESORT", "SEARCHRES", "CONTEXT=SEARCH", "CONTEXT=SORT"):
            self.assertIn(cap, caps)
        c.logout()

    def test_sort(self):
        c = self.connect()
        self.fill(c, "Sort", SORT_MSGS)
        sizes = [len(m[0]) for m in SORT_MSGS]
        by_size = " ".join(str(i + 1) for i in sorted(range(5), key=lambda i: (sizes[i], i)))
        cases = [
            ("(SUBJECT)", b"1 3 2 5 4"),         # Re:/[list] Fwd:/(fwd) gone; e < e-acute
            ("(SUBJECT DATE)", b"3 1 2 5 4"),
            ("(REVERSE DATE)", b"5 1 3 2 4"),    # a bad Date: sorts by internal date
            ("(DATE)", b"4 2 3 1 5"),
            ("(ARRIVAL)", b"4 5 3 2 1"),
            ("(REVERSE ARRIVAL)", b"1 2 3 5 4"),
            ("(FROM)", b"2 4 5 3 1"),            # addr-mailbox: alice bob carol emile zed
            ("(DISPLAYFROM)", b"2 4 3 5 1"),     # alice@x.org Bob Emile Xavier Zed
            ("(TO SUBJECT)", b"1 3 2 5 4"),      # equal To: the next key decides
            ("(SIZE)", by_size.encode()),
            ("(CC REVERSE SUBJECT)", b"4 5 2 1 3"),
        ]
        for crit, want in cases:
            typ, data = c.sort(crit, "UTF-8", "ALL")
            self.assertEqual((crit, typ, data[0]), (crit, "OK", want))
        # search keys narrow the set; UID SORT answers UIDs
        self.assertEqual(c.sort("(SUBJECT)", "US-ASCII", "FROM", "bob")[1][0], b"4")
        self.assertEqual(c.sort("(SUBJECT)", "UTF-8", "NOT", "FROM", "bob", "2:*")[1][0],
                         b"3 2 5")
        c.store("1", "+FLAGS", "\\Deleted")
        c.expunge()
        typ, data = c.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")
        self.assertEqual((typ, data[0]), ("OK", b"3 2 5 4"))
        typ, data = c.sort("(SUBJECT)", "UTF-8", "ALL")
        self.assertEqual((typ, data[0]), ("OK", b"2 1 4 3"))
        # a new message after the cache was filled
        c.append("Sort", None, None, msg(b"Aardvark", b"z@x.org", day(9)))
        c.noop()
        self.assertEqual(c.sort("(SUBJECT)", "UTF-8", "ALL")[1][0], b"5 2 1 4 3")
        c.logout()

    def test_sort_errors(self):
        c = self.connect()
        c.select("INBOX")
        for args, want in [
            (("SORT", "(SUBJECT)", "ISO-8859-1", "ALL"), "NO"),
            (("SORT", "(FOO)", "UTF-8", "ALL"), "ERR"),
            (("SORT", "(REVERSE)", "UTF-8", "ALL"), "ERR"),
            (("SORT", "()", "UTF-8", "ALL"), "ERR"),
            (("SORT", "SUBJECT", "UTF-8", "ALL"), "ERR"),
            (("SORT", "(SUBJECT)", "UTF-8"), "ERR"),
            (("SORT", "(SUBJECT)", "UTF-8", "BOGUS"), "ERR"),
            (("SORT", "(" + " ".join(["DATE"] * 17) + ")", "UTF-8", "ALL"), "ERR"),
            (("THREAD", "FOO", "UTF-8", "ALL"), "ERR"),
            (("THREAD", "REFERENCES", "KOI8-R", "ALL"), "NO"),
            (("THREAD", "REFERENCES", "UTF-8"), "ERR"),
        ]:
            typ, text, _ = self.raw(c, *args)
            self.assertEqual((args, typ), (args, want), text)
            if typ == "NO" and "ISO" in args[2] + args[2]:
                self.assertIn(b"[BADCHARSET", text)
        typ, text, _ = self.raw(c, "SORT", "(SUBJECT)", "UTF-8", " ".join(["ALL"] * 1001))
        self.assertEqual(typ, "NO")
        self.assertIn(b"[LIMIT]", text)
        self.assertEqual(c.noop()[0], "OK")
        c.logout()
        c = self.connect()                     # SORT needs a selected mailbox
        typ, _, _ = self.raw(c, "SORT", "(SUBJECT)", "UTF-8", "ALL")
        self.assertEqual(typ, "ERR")
        c.logout()

    def test_thread(self):
        c = self.connect()
        self.fill(c, "Thr", THREAD_MSGS)
        typ, data = c.thread("REFERENCES", "UTF-8", "ALL")
        self.assertEqual((typ, data[0]), ("OK", b"((1 (2 3)(4))(10))(5 6)(7)(9 8)"))
        typ, data = c.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
        self.assertEqual((typ, data[0]), ("OK", b"(1 (2)(3)(4)(10))(5 6)(7)(8 9)"))
        # a subset: 2 and 3 lose their parent
        typ, data = c.thread("REFERENCES", "UTF-8", "2:4")
        self.assertEqual((typ, data[0]), ("OK", b"((2 3)(4))"))
        typ, data = c.thread("REFERENCES", "UTF-8", "SUBJECT", "nothing-matches")
        self.assertEqual((typ, data), ("OK", [b""]))
        c.store("1", "+FLAGS", "\\Deleted")
        c.expunge()
        typ, data = c.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
        self.assertEqual((typ, data[0]), ("OK", b"((2 3)(4)(10))(5 6)(7)(9 8)"))
        c.logout()

    def test_hostile(self):
        c = self.connect()
        chain = []
        for i in range(1, 121):
            refs = b" ".join(b"<c%d@x>" % k for k in range(1, i))
            extra = b"Message-ID: <c%d@x>\r\n" % i
            if refs:
                extra += b"References: " + refs + b"\r\n"
            chain.append(msg(b"Re: chain", b"a@x.org", day(1 + i % 28), extra))
        # a cycle through three messages and one with garbage ids
        chain.append(msg(b"cyc", b"a@x.org", day(1), b"Message-ID: <y1@x>\r\nReferences: <y3@x>\r\n"))
        chain.append(msg(b"cyc", b"a@x.org", day(2), b"Message-ID: <y2@x>\r\nReferences: <y1@x>\r\n"))
        chain.append(msg(b"cyc", b"a@x.org", day(3), b"Message-ID: <y3@x>\r\nReferences: <y2@x>\r\n"))
        chain.append(msg(b"\xff\xfe bad \xc3 utf-8 \xed\xa0\x80", b"\xff <\xfe@x>", day(4),
                         b"Message-ID: <<<>>> <\r\nReferences: < > <<x> <" + b"z" * 2000 + b">\r\n"))
        chain.append(msg(b"Re: [x] " * 8000 + b"[fwd: " * 2000 + b"]" * 2000, b"a@x.org", day(5)))
        self.fill(c, "Hostile", chain)
        typ, data = c.thread("REFERENCES", "UTF-8", "ALL")
        self.assertEqual(typ, "OK")
        out = data[0].decode()
        # the reply chain is one thread in which each message is the parent of the next
        # (dates repeat, so only the containment is checked)
        self.assertIn("(1 2 3 4 5 6 7 8 9 10 ", out)
        self.assertIn(" 119 120)", out)
        nums = sorted(int(x) for x in re.findall(r"\d+", out))
        self.assertEqual(nums, list(range(1, 126)))
        for algo in ("ORDEREDSUBJECT",):
            typ, data = c.thread(algo, "UTF-8", "ALL")
            self.assertEqual(typ, "OK")
        for crit in ("(SUBJECT)", "(DISPLAYFROM)", "(FROM REVERSE DATE)"):
            typ, data = c.sort(crit, "UTF-8", "ALL")
            self.assertEqual(typ, "OK")
            self.assertEqual(sorted(int(x) for x in data[0].split()), list(range(1, 126)))
        c.logout()

    def test_budget(self):
        """Reading headers for sort keys is charged to search_budget (1M here)."""
        c = self.connect()
        big = [msg(b"big " + b"x" * 990, b"a@x.org", day(1),
                   b"".join(b"X-F%d: " % k + b"y" * 900 + b"\r\n" for k in range(400)))
               for _ in range(3)]
        self.fill(c, "Budget", big)
        for args in (("SORT", "(SUBJECT)", "UTF-8", "ALL"), ("THREAD", "REFERENCES", "UTF-8", "ALL")):
            c.logout()                      # a new session: nothing cached
            c = self.connect()
            c.select("Budget")
            typ, text, _ = self.raw(c, *args)
            self.assertEqual((typ, b"[LIMIT]" in text), ("NO", True), text)
        self.assertIn("event=search_limit", self.srv.log())
        # within it, a narrower set works
        self.assertEqual(c.sort("(SUBJECT)", "UTF-8", "1")[1][0], b"1")
        c.logout()

    def test_within(self):
        """WITHIN (RFC 5032): OLDER and YOUNGER count seconds back from now
        against the internal date."""
        c = self.connect()
        now = time.time()
        self.assertEqual(c.create("Within")[0], "OK")
        for age in (5 * 86400, 2 * 3600, 60):
            date = imaplib.Time2Internaldate(now - age)
            self.assertEqual(c.append("Within", None, date, msg(b"w", b"a@x.org"))[0], "OK")
        c.select("Within")
        for crit, want in [("YOUNGER 86400", b"2 3"), ("OLDER 86400", b"1"),
                           ("YOUNGER 600", b"3"), ("OLDER 600", b"1 2"),
                           ("OLDER 4294967295", b""), ("YOUNGER 4294967295", b"1 2 3"),
                           ("NOT YOUNGER 7200000", b""), ("OR OLDER 600 YOUNGER 600", b"1 2 3")]:
            typ, data = c.search(None, crit)
            self.assertEqual((crit, typ, data[0]), (crit, "OK", want))
        self.assertEqual(c.sort("(REVERSE ARRIVAL)", "UTF-8", "YOUNGER", "86400")[1][0], b"3 2")
        for bad in ("OLDER 0", "YOUNGER -1", "OLDER 4294967296", "OLDER x", "YOUNGER"):
            typ, text, _ = self.raw(c, "SEARCH", bad)
            self.assertEqual((bad, typ), (bad, "ERR"), text)
        c.logout()

    def esort(self, c, *args):
        typ, text, un = self.raw(c, *args)
        self.assertEqual(typ, "OK", (args, text))
        got = un.get("ESEARCH", [None])[0]
        return re.sub(rb'^\(TAG "[^"]*"\) ?', b"", got) if got is not None else None

    def test_esort(self):
        """ESORT (RFC 5267): RETURN options on SORT, MIN/MAX first and last in
        sort order, ALL as a sequence set in sort order."""
        c = self.connect()
        self.fill(c, "Esort", SORT_MSGS)
        for args, want in [
            (("SORT", "RETURN", "(MIN MAX COUNT ALL)", "(SUBJECT)", "UTF-8", "ALL"),
             b"MIN 1 MAX 4 COUNT 5 ALL 1,3,2,5,4"),
            (("SORT", "RETURN", "()", "(REVERSE ARRIVAL)", "UTF-8", "ALL"), b"ALL 1:3,5,4"),
            (("SORT", "RETURN", "(ALL)", "(ARRIVAL)", "UTF-8", "ALL"), b"ALL 4:5,3,2,1"),
            (("UID", "SORT", "RETURN", "(COUNT MAX)", "(SUBJECT)", "UTF-8", "ALL"),
             b"UID MAX 4 COUNT 5"),
            (("SORT", "RETURN", "(MIN MAX COUNT ALL)", "(SUBJECT)", "UTF-8", "SUBJECT", "zzz"),
             b"COUNT 0"),
        ]:
            self.assertEqual((args, self.esort(c, *args)), (args, want))
        typ, _, _ = self.raw(c, "SORT", "RETURN", "(FOO)", "(SUBJECT)", "UTF-8", "ALL")
        self.assertEqual(typ, "ERR")
        typ, _, _ = self.raw(c, "SORT", "RETURN", "(ALL)")
        self.assertEqual(typ, "ERR")
        c.logout()

    def test_searchres(self):
        """SEARCHRES (RFC 5182): RETURN (SAVE) keeps the result as "$" for
        SEARCH, FETCH, STORE, COPY and the UID forms; a failed SAVE empties
        it, and so does selecting a mailbox."""
        c = self.connect()
        self.fill(c, "Res", SORT_MSGS)
        self.assertEqual(c.create("ResCopy")[0], "OK")
        typ, text, un = self.raw(c, "SEARCH", "RETURN", "(SAVE)", "FROM", "bob")
        self.assertEqual((typ, "ESEARCH" in un, "SEARCH" in un), ("OK", False, False))
        self.assertEqual(c.search(None, "$")[1][0], b"4")
        self.assertEqual(c.search(None, "UID", "$")[1][0], b"4")
        self.assertEqual(c.search(None, "OR", "$", "FROM", "zed")[1][0], b"1 4")
        typ, data = c.fetch("$", "(UID)")
        self.assertEqual((typ, data), ("OK", [b"4 (UID 4)"]))
        # SORT saves too; MIN with SAVE saves only the minimum
        self.assertIsNone(self.esort(c, "SORT", "RETURN", "(SAVE)", "(SUBJECT)", "UTF-8",
                                     "SUBJECT", "apple"))
        self.assertEqual(c.search(None, "$")[1][0], b"1 3")
        self.assertEqual(c.store("$", "+FLAGS", "(\\Flagged)")[0], "OK")
        self.assertEqual(c.search(None, "FLAGGED")[1][0], b"1 3")
        self.assertEqual(c.copy("$", "ResCopy")[0], "OK")
        self.assertEqual(self.esort(c, "SEARCH", "RETURN", "(SAVE MIN)", "NOT", "DELETED"),
                         b"MIN 1")
        self.assertEqual(c.search(None, "$")[1][0], b"1")
        # expunged messages drop out of $; the others keep their new numbers
        self.esort(c, "SEARCH", "RETURN", "(SAVE)", "2:3")
        c.store("2", "+FLAGS", "\\Deleted")
        c.expunge()
        self.assertEqual(c.search(None, "$")[1][0], b"2")
        self.assertEqual(c.uid("FETCH", "$", "(UID)")[1], [b"2 (UID 3)"])
        # a failed SAVE leaves $ empty
        typ, _, _ = self.raw(c, "SEARCH", "RETURN", "(SAVE)", "BOGUS")
        self.assertEqual(typ, "ERR")
        self.assertEqual(c.search(None, "$")[1][0], b"")
        self.esort(c, "SEARCH", "RETURN", "(SAVE)", "ALL")
        c.select("ResCopy")
        self.assertEqual(c.search(None, "$")[1][0], b"")
        self.assertEqual(c.search(None, "ALL")[1][0], b"1 2")
        c.logout()

    def updates(self, c):
        """The ESEARCH lines a NOOP brings, tags stripped."""
        typ, _, un = self.raw(c, "NOOP")
        self.assertEqual(typ, "OK")
        return [re.sub(rb'^\(TAG "[^"]*"\) ', b"", x) for x in un.get("ESEARCH", [])]

    def test_context_search(self):
        """CONTEXT=SEARCH (RFC 5267): RETURN (UPDATE) reports later changes to
        the session that asked, as ADDTO and REMOVEFROM; PARTIAL; CANCELUPDATE."""
        c = self.connect()
        self.fill(c, "Ctx", SORT_MSGS)
        other = self.connect()
        other.select("Ctx")
        self.assertEqual(self.esort(c, "UID", "SEARCH", "RETURN", "(UPDATE)", "FLAGGED"), b"UID")
        self.assertEqual(self.updates(c), [])
        other.store("2,4", "+FLAGS", "(\\Flagged)")
        self.assertEqual(self.updates(c), [b"UID ADDTO (0 2 0 4)"])
        other.store("2", "-FLAGS", "(\\Flagged)")
        self.assertEqual(self.updates(c), [b"UID REMOVEFROM (0 2)"])
        other.append("Ctx", "(\\Flagged)", None, msg(b"new", b"n@x.org"))
        self.assertEqual(self.updates(c), [b"UID ADDTO (0 6)"])
        other.store("4", "+FLAGS", "(\\Deleted)")
        other.expunge()
        self.assertEqual(self.updates(c), [b"UID REMOVEFROM (0 4)"])
        # changes that leave the result alone say nothing
        other.store("1", "+FLAGS", "(\\Seen)")
        self.assertEqual(self.updates(c), [])
        typ, _, _ = self.raw(c, "CANCELUPDATE", "\"nope\"")
        self.assertEqual(typ, "ERR")
        tag = c._new_tag().decode()  # the next tag is the one UPDATE keeps
        c.tagnum -= 1
        self.esort(c, "UID", "SEARCH", "RETURN", "(UPDATE COUNT)", "UNSEEN")
        other.store("2", "+FLAGS", "(\\Seen)")
        self.assertEqual(self.updates(c), [b"UID REMOVEFROM (0 2)"])
        typ, _, _ = self.raw(c, "CANCELUPDATE", '"%s"' % tag)
        self.assertEqual(typ, "OK")
        other.store("3", "+FLAGS", "(\\Seen)")
        other.append("Ctx", "(\\Flagged)", None, msg(b"new2", b"n@x.org"))
        # the first context (FLAGGED) still runs; the cancelled one is gone
        self.assertEqual(self.updates(c), [b"UID ADDTO (0 7)"])
        typ, _, _ = self.raw(c, "SEARCH", "RETURN", "(UPDATE)", "ALL")
        self.assertEqual(typ, "ERR")                # UPDATE needs UID SEARCH
        # PARTIAL: 1-based positions in the result
        self.assertEqual(self.esort(c, "SEARCH", "RETURN", "(PARTIAL 2:3 COUNT)", "ALL"),
                         b"COUNT 6 PARTIAL (2:3 2:3)")
        self.assertEqual(self.esort(c, "SEARCH", "RETURN", "(PARTIAL 10:20)", "ALL"),
                         b"PARTIAL (10:20 NIL)")
        self.assertEqual(self.esort(c, "SORT", "RETURN", "(PARTIAL 1:3)", "(REVERSE SUBJECT)",
                                    "UTF-8", "ALL"), b"PARTIAL (1:3 6,5,4)")
        for bad in ("(PARTIAL)", "(PARTIAL 0:3)", "(PARTIAL x)", "(PARTIAL 1:2:3)"):
            typ, _, _ = self.raw(c, "SEARCH", "RETURN", bad, "ALL")
            self.assertEqual((bad, typ), (bad, "ERR"))
        other.logout()
        c.logout()

    def test_context_sort(self):
        """CONTEXT=SORT: positions in the sorted result, old list for
        removals, new list for additions."""
        c = self.connect()
        self.fill(c, "CtxSort", SORT_MSGS)
        other = self.connect()
        other.select("CtxSort")
        self.assertEqual(self.esort(c, "UID", "SORT", "RETURN", "(UPDATE ALL)", "(SUBJECT)",
                                    "UTF-8", "ALL"), b"UID ALL 1,3,2,5,4")
        other.append("CtxSort", None, None, msg(b"Aardvark", b"z@x.org"))
        self.assertEqual(self.updates(c), [b"UID ADDTO (1 6)"])
        other.store("2", "+FLAGS", "(\\Deleted)")
        other.expunge()                                  # UID 2, banana: 4th of 6 1 3 2 5 4
        self.assertEqual(self.updates(c), [b"UID REMOVEFROM (4 2)"])
        typ, _, _ = self.raw(c, "SORT", "RETURN", "(UPDATE)", "(SUBJECT)", "UTF-8", "ALL")
        self.assertEqual(typ, "ERR")
        # closing the mailbox ends the contexts
        c.select("INBOX")
        other.append("CtxSort", None, None, msg(b"Aaa", b"z@x.org"))
        self.assertEqual(self.updates(c), [])
        other.logout()
        c.logout()


backend_classes(globals(), SortBase, "TestImapSort_%s", BACKENDS)


if __name__ == "__main__":
    unittest.main()
