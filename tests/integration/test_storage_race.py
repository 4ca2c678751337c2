"""Flag changes racing against COPY, MOVE, FETCH, EXPUNGE and POP3 RETR.

One session keeps setting and clearing \\Seen on every message of a mailbox
(on Maildir each change renames every file) while a second session copies,
moves, reads or expunges the same messages. Whatever the interleaving, no
message may be lost, left behind, read as missing or empty, and the COPYUID
a server answers must name exactly the messages that are really there.

Both backends, one server and one user each. The user's INBOX is filled
once with build/tests/tools/roost-fill (numbered by an "X-Seq: <i>" first
header line); each test races on a copy of it in a mailbox of its own.
"""
import contextlib
import imaplib
import os
import poplib
import re
import subprocess
import threading

from roosttest import BACKENDS, FILL, SharedServer, backend_classes, imap_session, quiet_logout

N = 300
USER, PASSWORD = "race@example.org", "race-secret"
BODY = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: race\r\n\r\n"
        b"the body of a message that must not get lost\r\n")
SEQ_RE = re.compile(rb"X-Seq: (\d+)")
TIMEOUT = 120
ROUNDS = 3


def parse_set(s):
    """UIDs of an IMAP sequence set such as "1:3,7"."""
    out = []
    for part in s.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


def copyuid(texts):
    """(uidvalidity, source UIDs, destination UIDs) of a COPYUID code."""
    for t in texts:
        if isinstance(t, bytes):
            t = t.decode()
        m = re.search(r"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]", t or "")
        if m:
            return int(m.group(1)), parse_set(m.group(2)), parse_set(m.group(3))
    return None


class Flipper(threading.Thread):
    """A session that sets and clears \\Seen on every message until told to
    stop; started tells that its first change went through."""

    def __init__(self, port, user, password, box="INBOX"):
        super().__init__(daemon=True)
        self.args = (port, user, password, box)
        self.started = threading.Event()
        self.stopping = threading.Event()
        self.rounds = 0
        self.error = None

    def run(self):
        port, user, password, box = self.args
        try:
            c = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
            c.login(user, password)
            c.select(box)
            while not self.stopping.is_set():
                for op in ("+FLAGS.SILENT", "-FLAGS.SILENT"):
                    typ, data = c.uid("STORE", "1:*", op, r"(\Seen)")
                    if typ != "OK":
                        raise AssertionError("UID STORE %s: %s %r" % (op, typ, data))
                    self.rounds += 1
                    self.started.set()
                # imaplib keeps every unsolicited response; drop them
                c.untagged_responses.clear()
            c.logout()
        except Exception as e:  # reported by the test thread
            self.error = e
            self.started.set()


class RaceBase(SharedServer):
    backend = None
    server_options = {"users": {USER: PASSWORD}, "listeners": ("imap", "pop3")}

    @classmethod
    def server_started(cls):
        res = subprocess.run([FILL, "-n", "-F", cls.srv.conf_path, USER, str(N)],
                             input=BODY, capture_output=True, timeout=TIMEOUT)
        if res.returncode != 0:
            raise AssertionError("roost-fill: %s" % res.stderr.decode(errors="replace"))

    def source(self):
        """A mailbox of this test alone holding the N messages (a copy of
        INBOX made before any race)."""
        box = "src-" + self._testMethodName
        c = self.imap(USER, PASSWORD)
        self.assertEqual(c.create(box)[0], "OK")
        typ, data = c.copy("1:*", box)
        self.assertEqual(typ, "OK", data)
        self.logout(c)
        return USER, PASSWORD, box

    def imap(self, user, password, box="INBOX"):
        c = imap_session(self, self.srv.port("imap"), user, password, TIMEOUT)
        if box is not None:
            typ, _ = c.select(box)
            self.assertEqual(typ, "OK")
        return c

    logout = staticmethod(quiet_logout)

    @contextlib.contextmanager
    def racing(self, user, password, box="INBOX"):
        """Runs the body while a Flipper changes flags in box."""
        f = Flipper(self.srv.port("imap"), user, password, box)
        f.start()
        self.assertTrue(f.started.wait(TIMEOUT), "flag session never started")
        self.assertIsNone(f.error)
        try:
            yield f
        finally:
            f.stopping.set()
            f.join(TIMEOUT)
        self.assertFalse(f.is_alive(), "flag session did not stop")
        self.assertIsNone(f.error)
        self.assertGreater(f.rounds, 0)

    def contents(self, user, password, box):
        """{X-Seq: UID} of the messages in box, seen by a fresh session; fails
        on a message read twice or without its number."""
        c = self.imap(user, password, box=None)
        typ, data = c.select(box, readonly=True)
        self.assertEqual(typ, "OK", data)
        if int(data[0]) == 0:
            return {}
        typ, data = c.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (X-Seq)])")
        self.assertEqual(typ, "OK", data)
        seqs = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            m = SEQ_RE.search(item[1])
            self.assertIsNotNone(m, item)
            self.assertNotIn(int(m.group(1)), seqs, "message stored twice")
            seqs[int(m.group(1))] = uid
        return seqs

    def files_on_disk(self, user, box):
        """Message files of a Maildir folder (None on LMDB)."""
        if self.backend != "maildir":
            return None
        d = os.path.join(self.srv.data_dir, "maildir", user)
        if box != "INBOX":
            d = os.path.join(d, "." + box)
        return sum(len(os.listdir(os.path.join(d, sub))) for sub in ("cur", "new"))

    def assert_all_in(self, user, password, box, dest_uids=None):
        seqs = self.contents(user, password, box)
        self.assertEqual(len(seqs), N, "%d of %d messages in %s" % (len(seqs), N, box))
        self.assertEqual(sorted(seqs), list(range(1, N + 1)))
        if dest_uids is not None:
            self.assertEqual(sorted(seqs.values()), sorted(dest_uids))
        if self.backend == "maildir":
            self.assertEqual(self.files_on_disk(user, box), N)

    def assert_empty(self, user, password, box):
        seqs = self.contents(user, password, box)
        self.assertEqual(len(seqs), 0, "%d messages left in %s" % (len(seqs), box))
        if self.backend == "maildir":
            self.assertEqual(self.files_on_disk(user, box), 0)

    def assert_copyuid(self, cu, src_uids, what):
        """cu (copyuid() of what) names all N source UIDs, src_uids, and N
        new ones."""
        self.assertIsNotNone(cu, what)
        self.assertEqual(len(cu[1]), N, "COPYUID names %d of %d" % (len(cu[1]), N))
        self.assertEqual(cu[1], src_uids)
        self.assertEqual(len(cu[2]), N)

    def expunge_all_racing(self, b, user, password, box):
        """On session b (box selected): every message \\Deleted and EXPUNGE
        while another session races on box, which ends empty."""
        with self.racing(user, password, box):
            typ, data = b.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
            self.assertEqual(typ, "OK", data)
            typ, data = b.expunge()
            self.assertEqual(typ, "OK", data)
        self.assert_empty(user, password, box)

    # -- the races --

    def test_copy_then_expunge(self):
        user, pw, src = self.source()
        b = self.imap(user, pw, src)
        src_uids = sorted(self.contents(user, pw, src).values())
        self.assertEqual(len(src_uids), N)
        copies = []
        for k in range(ROUNDS):
            box = "copy%d" % k
            self.assertEqual(b.create(box)[0], "OK")
            with self.racing(user, pw, src):
                typ, data = b.copy("1:*", box)
            self.assertEqual(typ, "OK", data)
            cu = copyuid(data)
            self.assert_copyuid(cu, src_uids, data)
            self.assert_all_in(user, pw, box, cu[2])
            copies.append((box, cu[2]))
        self.expunge_all_racing(b, user, pw, src)
        for box, uids in copies:
            self.assert_all_in(user, pw, box, uids)

    def test_move(self):
        """Back and forth between two mailboxes, the flags of the source
        changing all the while."""
        user, pw, src = self.source()
        dst = "moved"
        c = self.imap(user, pw, box=None)
        self.assertEqual(c.create(dst)[0], "OK")
        self.logout(c)
        for _ in range(ROUNDS):
            src_uids = sorted(self.contents(user, pw, src).values())
            self.assertEqual(len(src_uids), N)
            b = self.imap(user, pw, src)
            with self.racing(user, pw, src):
                typ, data = b.uid("MOVE", "1:*", dst)
            self.assertEqual(typ, "OK", data)
            cu = copyuid(b.untagged_responses.get("OK", []))
            self.assert_copyuid(cu, src_uids, b.untagged_responses)
            self.logout(b)
            self.assert_empty(user, pw, src)
            self.assert_all_in(user, pw, dst, cu[2])
            src, dst = dst, src

    def test_fetch(self):
        user, pw, src = self.source()
        b = self.imap(user, pw, src)
        with self.racing(user, pw, src):
            typ, data = b.fetch("1:*", "(UID BODY.PEEK[])")
        self.assertEqual(typ, "OK", data)
        seen = set()
        for item in data:
            if not isinstance(item, tuple):
                continue
            self.assertIn(b"the body of a message", item[1])
            seen.add(int(SEQ_RE.search(item[1]).group(1)))
        self.assertEqual(seen, set(range(1, N + 1)))

    def test_expunge(self):
        user, pw, src = self.source()
        b = self.imap(user, pw, src)
        self.expunge_all_racing(b, user, pw, src)

    def test_pop3_retr(self):
        """POP3 reads INBOX (left as filled: the other tests work on copies)."""
        with self.racing(USER, PASSWORD, "INBOX"):
            p = poplib.POP3("127.0.0.1", self.srv.port("pop3"), timeout=TIMEOUT)
            try:
                p.user(USER)
                p.pass_(PASSWORD)
                count, _ = p.stat()
                self.assertEqual(count, N)
                seen = set()
                for i in range(1, N + 1):
                    _, lines, _ = p.retr(i)
                    text = b"\r\n".join(lines)
                    self.assertIn(b"the body of a message", text)
                    seen.add(int(SEQ_RE.search(text).group(1)))
                self.assertEqual(seen, set(range(1, N + 1)))
            finally:
                p.quit()


backend_classes(globals(), RaceBase, "TestStorageRace_%s", BACKENDS)
