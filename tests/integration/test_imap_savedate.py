"""SAVEDATE (RFC 8514) on the wire, raw protocol, both backends: FETCH
SAVEDATE gives when the message was put in its mailbox (APPEND, delivery,
COPY, MOVE), not its internal date; SEARCH SAVEDBEFORE, SAVEDON,
SAVEDSINCE compare its day, SAVEDATESUPPORTED matches every message. The
date survives a flag change and a restart. On Maildir it lives in the
dovecot-uidlist (a T field beside G), and a file another program drops
into new/ gets the time it was put there. Hostile dates are refused BAD."""
import calendar
import os
import re
import smtplib
import time
import unittest

from roosttest import BACKENDS, backend_classes
from test_imap_raw import RawClients

USER = b"alice@example.org"
OLD_DATE = b'"01-Jan-2001 10:00:00 +0000"'
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def imap_day(t):
    g = time.gmtime(t)
    return b"%d-%s-%d" % (g.tm_mday, MONTHS[g.tm_mon - 1].encode(), g.tm_year)


def parse_datetime(s):
    """Seconds since the epoch of an IMAP date-time."""
    m = re.match(rb'"?\s?(\d+)-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"?', s)
    assert m, s
    t = calendar.timegm((int(m.group(3)), MONTHS.index(m.group(2).decode()) + 1,
                         int(m.group(1)), int(m.group(4)), int(m.group(5)), int(m.group(6))))
    off = (int(m.group(8)) * 60 + int(m.group(9))) * 60
    return t - off if m.group(7) == b"+" else t + off


class SaveDateBase(RawClients):
    backend = "lmdb"
    server_options = {"listeners": ("imap", "smtp")}


    def append(self, r, box, subject, date=OLD_DATE):
        msg = b"From: a@example.org\r\nSubject: " + subject + b"\r\n\r\nbody\r\n"
        r.send(b"ap APPEND " + box + b" " + date + b" {%d+}\r\n" % len(msg) + msg + b"\r\n")
        _, tagged = r.until(b"ap")
        self.assertIn(b"ap OK", tagged)

    def savedates(self, r, box):
        """{uid: save date seconds or None} of box."""
        self.ok(r, b"SELECT " + box)
        out = {}
        for ln in self.ok(r, b"UID FETCH 1:* (SAVEDATE INTERNALDATE)"):
            uid = int(re.search(rb"UID (\d+)", ln).group(1))
            m = re.search(rb'SAVEDATE (NIL|"[^"]+")', ln)
            self.assertIsNotNone(m, ln)
            out[uid] = None if m.group(1) == b"NIL" else parse_datetime(m.group(1))
        return out

    def search(self, r, text):
        lines = self.ok(r, b"UID SEARCH " + text)
        found = [ln for ln in lines if ln.startswith(b"* SEARCH")]
        self.assertEqual(len(found), 1, lines)
        return sorted(int(x) for x in found[0].split()[2:])

    def wait_next_second(self, t):
        while time.time() < t + 1:
            time.sleep(0.05)

    def test_capability(self):
        r = self.raw()
        self.assertIn(b"SAVEDATE", self.ok(r, b"CAPABILITY")[0].split())

    def test_fetch_and_search(self):
        r = self.raw()
        self.ok(r, b"CREATE SD")
        t0 = int(time.time())
        self.append(r, b"SD", b"one")
        self.append(r, b"SD", b"two")
        dates = self.savedates(r, b"SD")
        self.assertEqual(len(dates), 2)
        for uid, t in dates.items():
            self.assertIsNotNone(t)
            self.assertGreaterEqual(t, t0)
            self.assertLessEqual(t, time.time() + 1)
        # INTERNALDATE stays what APPEND gave
        lines = self.ok(r, b"FETCH 1 (INTERNALDATE SAVEDATE)")
        self.assertIn(b'INTERNALDATE "01-Jan-2001 10:00:00 +0000"', lines[0])
        uids = sorted(dates)
        today = imap_day(max(dates.values()))
        self.assertEqual(self.search(r, b"SAVEDON " + today), uids)
        self.assertEqual(self.search(r, b"SAVEDSINCE " + today), uids)
        self.assertEqual(self.search(r, b"SAVEDBEFORE " + today), [])
        self.assertEqual(self.search(r, b"SAVEDBEFORE 1-Jan-2100"), uids)
        self.assertEqual(self.search(r, b"SAVEDSINCE 1-Jan-2100"), [])
        self.assertEqual(self.search(r, b"SAVEDATESUPPORTED"), uids)
        self.assertEqual(self.search(r, b"NOT SAVEDATESUPPORTED"), [])
        # internal date keys still look at the internal date
        self.assertEqual(self.search(r, b"ON 1-Jan-2001"), uids)
        self.assertEqual(self.search(r, b"SINCE " + today), [])
        self.assertEqual(self.search(r, b"SAVEDON " + today + b" ON 1-Jan-2001"), uids)
        # ESEARCH form too
        lines = self.ok(r, b"UID SEARCH RETURN (COUNT) SAVEDSINCE " + today)
        self.assertIn(b"COUNT 2", lines[0])

    def test_copy_move_flags_restart(self):
        r = self.raw()
        self.ok(r, b"CREATE Src")
        self.ok(r, b"CREATE Dst")
        self.append(r, b"Src", b"copied")
        self.append(r, b"Src", b"moved")
        src = self.savedates(r, b"Src")
        self.wait_next_second(max(src.values()))
        self.ok(r, b"UID STORE 1:* +FLAGS (\\Flagged)")
        self.assertEqual(self.savedates(r, b"Src"), src)  # a flag change keeps it
        self.ok(r, b"SELECT Src")
        self.ok(r, b"COPY 1 Dst")
        self.ok(r, b"MOVE 2 Dst")
        dst = self.savedates(r, b"Dst")
        self.assertEqual(len(dst), 2)
        for t in dst.values():
            self.assertGreater(t, max(src.values()))
        r.close()
        self.__class__.srv.stop()
        self.__class__.srv.launch()
        r = self.raw()
        self.assertEqual(self.savedates(r, b"Dst"), dst)

    def test_delivery(self):
        t0 = int(time.time())
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp")) as s:
            s.sendmail("bob@example.org", ["alice@example.org"],
                       b"From: bob@example.org\r\nSubject: delivered\r\n\r\nhi\r\n")
        r = self.raw()
        self.ok(r, b"SELECT INBOX")
        uids = self.search(r, b"SUBJECT delivered")
        self.assertTrue(uids)
        dates = self.savedates(r, b"INBOX")
        self.assertGreaterEqual(dates[uids[-1]], t0)

    def test_hostile(self):
        r = self.raw()
        self.ok(r, b"SELECT INBOX")
        for text in (b"SAVEDBEFORE", b"SAVEDON garbage", b"SAVEDSINCE 32-Jan-2020",
                     b"SAVEDON 1-Foo-2020", b"SAVEDSINCE 1-Jan-20200", b"SAVEDON \"\"",
                     b"SAVEDATESUPPORTED 1-Jan-2020", b"SAVEDSINCE \"1-Jan-2020\x01\""):
            self.bad(r, b"SEARCH " + text)
        self.bad(r, b"FETCH 1 SAVEDATE.PEEK")
        self.bad(r, b"FETCH 1 (SAVEDATE")
        self.ok(r, b"NOOP")


class SaveDateMaildirBase(SaveDateBase):
    backend = "maildir"

    def test_uidlist_and_foreign_file(self):
        r = self.raw()
        self.ok(r, b"CREATE Drop")
        self.append(r, b"Drop", b"ours")
        root = os.path.join(self.srv.data_dir, "maildir", USER.decode(), ".Drop")
        with open(os.path.join(root, "dovecot-uidlist"), "rb") as f:
            recs = f.read().split(b"\n")[1:]
        self.assertRegex(recs[0], rb"^1 G[0-9a-f]{16} T\d+ :")
        # a file another program puts in new/
        t0 = int(time.time())
        name = "%d.M1P1.elsewhere" % t0
        with open(os.path.join(root, "tmp", name), "wb") as f:
            f.write(b"Subject: foreign\r\n\r\nbody\r\n")
        os.utime(os.path.join(root, "tmp", name), (978343200, 978343200))  # mtime 2001
        os.rename(os.path.join(root, "tmp", name), os.path.join(root, "new", name))
        dates = self.savedates(r, b"Drop")
        self.assertEqual(len(dates), 2)
        self.assertGreaterEqual(dates[2], t0)
        lines = self.ok(r, b"UID FETCH 2 INTERNALDATE")
        self.assertIn(b"2001", lines[0])
        # renamed by a flag change (the file's change time moves): kept
        self.wait_next_second(dates[2])
        self.ok(r, b"UID STORE 2 +FLAGS (\\Seen)")
        self.assertEqual(self.savedates(r, b"Drop")[2], dates[2])


backend_classes(globals(), SaveDateBase, "SaveDate_%s", [b for b in BACKENDS if b != "maildir"])
backend_classes(globals(), SaveDateMaildirBase, "SaveDate_%s", ["maildir"])


if __name__ == "__main__":
    unittest.main()
