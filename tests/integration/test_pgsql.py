"""Several Roost nodes on one PostgreSQL database.

The module starts its own PostgreSQL (scripts/pg-test.sh: Debian's
postgresql package, a private unix socket, run as nobody when the tests run
as root) and stops it at the end; each test gets a database of its own.
Where PostgreSQL is not installed the tests are skipped, saying so.

- two nodes, a client on each, APPEND / UID MOVE / UID EXPUNGE racing in one
  mailbox; every untagged EXISTS, EXPUNGE and FETCH either client receives
  is checked against a model of its view, and the views must end equal to
  the mailbox;
- a change on one node (APPEND, a flag change, an expunge) wakes an IDLE
  session on the other;
- kill -9 of a node while it takes mail over SMTP: every acknowledged
  message is there exactly once;
- the database restarted under load: a client gets NO [UNAVAILABLE] (never
  an error of another kind) while it is down, the node reconnects by
  itself, and every acknowledged APPEND is there.
"""
import os
import poplib
import re
import smtplib
import socket
import subprocess
import threading
import time
import unittest

from roosttest import PG_TEST, own_server, pgsql_wanted, psql

USERS = {"alice@example.org": "alice-secret", "bob@example.org": "bob-secret"}
TIMEOUT = 60

cluster = {"dir": None, "dsn": None, "why": None, "n": 0}


def setUpModule():
    res = subprocess.run([PG_TEST, "start"], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        cluster["why"] = res.stderr.strip() or "pg-test.sh start failed"
        return
    out = res.stdout.strip()
    cluster["dir"], cluster["dsn"] = out.split(" ", 1)


def tearDownModule():
    if cluster["dir"]:
        subprocess.run([PG_TEST, "stop", cluster["dir"]], timeout=120)


def new_database():
    cluster["n"] += 1
    name = "roost_it%d_%d" % (os.getpid(), cluster["n"])
    psql(cluster["dsn"], "CREATE DATABASE %s" % name)
    return cluster["dsn"] + " dbname=" + name


class Imap:
    """A raw IMAP client that keeps every untagged response in order."""

    def __init__(self, port, user, password):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.f = self.sock.makefile("rb")
        self.n = 0
        self.untagged = []
        greeting = self.f.readline()
        assert greeting.startswith(b"* OK"), greeting
        self.ok("LOGIN %s %s" % (user, password))

    def readline(self):
        """One response line with its literals inlined."""
        line = self.f.readline()
        if not line:
            raise AssertionError("connection closed")
        while True:
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if not m:
                return line
            line += self.f.read(int(m.group(1)))
            line += self.f.readline()

    def command(self, text, literal=None):
        """Run a command; returns (status line, its untagged lines)."""
        self.n += 1
        tag = b"T%d" % self.n
        if literal is None:
            self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text.encode() + b" {%d+}\r\n" % len(literal)
                              + literal + b"\r\n")
        lines = []
        while True:
            line = self.readline()
            if line.startswith(tag + b" "):
                return line[len(tag) + 1:].rstrip(b"\r\n"), lines
            if line.startswith(b"* "):
                lines.append(line.rstrip(b"\r\n"))
                self.untagged.append(line.rstrip(b"\r\n"))

    def ok(self, text, literal=None):
        status, lines = self.command(text, literal)
        assert status.startswith(b"OK"), (text, status)
        return status, lines

    def close(self):
        try:
            self.command("LOGOUT")
        except (OSError, AssertionError):
            pass
        self.sock.close()


class View:
    """A client's view of its selected mailbox, kept only from the untagged
    responses it gets: UIDs by sequence number (None until learned)."""

    def __init__(self, client):
        self.c = client
        self.uids = []
        self.max_uid = 0

    def apply(self, lines):
        for line in lines:
            m = re.match(rb"\* (\d+) (EXISTS|EXPUNGE|FETCH)(.*)", line)
            if not m:
                continue
            n, what = int(m.group(1)), m.group(2)
            if what == b"EXISTS":
                assert n >= len(self.uids), "EXISTS %d shrinks a view of %d" % (n, len(self.uids))
                self.uids.extend([None] * (n - len(self.uids)))
            elif what == b"EXPUNGE":
                assert 1 <= n <= len(self.uids), "EXPUNGE %d of %d" % (n, len(self.uids))
                del self.uids[n - 1]
            else:
                u = re.search(rb"UID (\d+)", m.group(3))
                assert 1 <= n <= len(self.uids), "FETCH %d of %d" % (n, len(self.uids))
                if u:
                    uid = int(u.group(1))
                    assert self.uids[n - 1] in (None, uid), \
                        "FETCH %d says UID %d, view has %s" % (n, uid, self.uids[n - 1])
                    self.uids[n - 1] = uid

    def run(self, text, literal=None):
        status, lines = self.c.command(text, literal)
        self.apply(lines)
        self.learn()
        return status

    def learn(self):
        """FETCH the UIDs of new messages (no EXPUNGE may come during a
        FETCH by sequence number) and check they ascend."""
        while None in self.uids:
            lo = self.uids.index(None) + 1
            status, lines = self.c.command("FETCH %d:%d (UID)" % (lo, len(self.uids)))
            assert status.startswith(b"OK"), status
            assert not any(b"EXPUNGE" in line for line in lines), lines
            self.apply(lines)
        known = [u for u in self.uids]
        assert known == sorted(set(known)), "UIDs out of order: %s" % known
        if known:
            self.max_uid = max(self.max_uid, known[-1])

    def check(self):
        """After a NOOP, the view is the mailbox."""
        self.run("NOOP")
        status, lines = self.c.command("UID SEARCH ALL")
        self.apply(lines)
        found = [int(x) for line in lines if line.startswith(b"* SEARCH")
                 for x in line.split()[2:]]
        assert self.uids == sorted(found), "view %s, mailbox %s" % (self.uids, sorted(found))


def message(tag, i):
    return (b"From: t@example.org\r\nTo: alice@example.org\r\nSubject: %s %d\r\n"
            b"Message-ID: <%s-%d@test>\r\n\r\nbody %s %d\r\n" % (tag, i, tag, i, tag, i))


@unittest.skipIf(not pgsql_wanted(), "pgsql not in ROOST_BACKENDS")
class PgsqlNodes(unittest.TestCase):
    def setUp(self):
        if cluster["why"] is not None:
            self.skipTest("no PostgreSQL: %s" % cluster["why"])
        self.dsn = new_database()

    def node(self, **conf):
        """A node on the test's database, stopped after the test."""
        c = {"storage": {"pgsql_dsn": self.dsn}}
        c.update(conf)
        return own_server(self, backend="pgsql", users=USERS, conf=c,
                          listeners=("smtp", "imap", "pop3"))

    def test_two_nodes_race(self):
        a_node, b_node = self.node(), self.node()
        setup = Imap(a_node.port("imap"), "alice@example.org", "alice-secret")
        setup.ok("CREATE Dest")
        setup.close()
        errors, appended, moved, expunged = [], {}, {}, {}
        rounds = 30
        done = threading.Barrier(2)

        def actor(name, node):
            try:
                c = Imap(node.port("imap"), "alice@example.org", "alice-secret")
                v = View(c)
                v.run("SELECT INBOX")
                mine = appended.setdefault(name, [])
                for i in range(rounds):
                    status = v.run("APPEND INBOX", message(name.encode(), i))
                    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", status)
                    assert status.startswith(b"OK") and m, status
                    mine.append(int(m.group(2)))
                    if i % 3 == 2 and mine[-2] not in expunged.get(name, []):
                        uid = mine[-2]
                        status = v.run("UID MOVE %d Dest" % uid)
                        assert status.startswith(b"OK"), status
                        moved.setdefault(name, []).append(uid)
                    if i % 4 == 3:
                        uid = mine[-1]
                        assert v.run("UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid) \
                            .startswith(b"OK")
                        assert v.run("UID EXPUNGE %d" % uid).startswith(b"OK")
                        expunged.setdefault(name, []).append(uid)
                # both done: the view must now equal the mailbox
                done.wait(TIMEOUT)
                v.check()
                c.close()
            except Exception as e:  # reported by the main thread
                errors.append("%s: %r" % (name, e))
                done.abort()

        threads = [threading.Thread(target=actor, args=("a", a_node)),
                   threading.Thread(target=actor, args=("b", b_node))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT * 4)
        self.assertEqual(errors, [])
        all_appended = appended["a"] + appended["b"]
        self.assertEqual(len(set(all_appended)), 2 * rounds)
        gone = set(moved.get("a", []) + moved.get("b", []) + expunged.get("a", [])
                   + expunged.get("b", []))
        # both views agree with the mailbox, on either node
        for node in (a_node, b_node):
            c = Imap(node.port("imap"), "alice@example.org", "alice-secret")
            v = View(c)
            v.run("SELECT INBOX")
            v.check()
            self.assertEqual(sorted(v.uids), sorted(set(all_appended) - gone))
            v = View(c)  # a new mailbox, a new view
            v.run("SELECT Dest")
            v.check()
            self.assertEqual(len(v.uids), len(moved.get("a", [])) + len(moved.get("b", [])))
            c.close()
        # UIDs were handed out without a gap across both nodes
        self.assertEqual(sorted(all_appended), list(range(1, 2 * rounds + 1)))
        res = a_node.cli("check", check=False)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)

    def test_idle_across_nodes(self):
        a_node, b_node = self.node(), self.node()
        idler = Imap(b_node.port("imap"), "alice@example.org", "alice-secret")
        idler.ok("SELECT INBOX")
        idler.n += 1
        idler.sock.sendall(b"I%d IDLE\r\n" % idler.n)
        self.assertTrue(idler.readline().startswith(b"+"))
        writer = Imap(a_node.port("imap"), "alice@example.org", "alice-secret")
        for i in range(5):
            writer.ok("APPEND INBOX", message(b"idle", i))
            line = idler.readline()
            self.assertEqual(line.rstrip(), b"* %d EXISTS" % (i + 1))
            idler.readline()  # "* n RECENT"
        # a flag change and an expunge on node a reach the IDLE on node b
        writer.ok("SELECT INBOX")
        writer.ok("UID STORE 2 +FLAGS.SILENT (\\Flagged)")
        line = idler.readline()
        self.assertRegex(line, rb"^\* 2 FETCH \(.*FLAGS \([^)]*\\Flagged")
        writer.ok("UID STORE 3 +FLAGS.SILENT (\\Deleted)")
        writer.ok("UID EXPUNGE 3")
        while True:  # the \Deleted may come before the expunge, or not at all
            line = idler.readline()
            if not line.startswith(b"* 3 FETCH "):
                break
            self.assertIn(b"\\Deleted", line)
        self.assertEqual(line.rstrip(), b"* 3 EXPUNGE")
        idler.sock.sendall(b"DONE\r\n")
        self.assertTrue(idler.readline().startswith(b"I%d OK" % idler.n))
        writer.close()
        idler.close()

    def test_idle_recent_exactly_once(self):
        """Sessions in IDLE on both nodes: the one that claims a new message
        may tell its client RECENT after EXISTS (pgsql claims later), but each
        message is \\Recent in exactly one session, and each session's last
        RECENT count is its number of \\Recent messages."""
        a_node, b_node = self.node(), self.node()
        idlers = [Imap(n.port("imap"), "alice@example.org", "alice-secret")
                  for n in (b_node, b_node, b_node, a_node, a_node)]
        heard = {id(c): [] for c in idlers}
        for c in idlers:
            c.ok("SELECT INBOX")
            c.n += 1
            c.sock.sendall(b"I%d IDLE\r\n" % c.n)
            while True:
                line = c.readline()
                if line.startswith(b"+"):
                    break
                heard[id(c)].append(line.rstrip())
        writer = Imap(a_node.port("imap"), "alice@example.org", "alice-secret")
        for i in range(6):
            writer.ok("APPEND INBOX", message(b"recent-idle", i))
            for c in idlers:
                while True:
                    line = c.readline().rstrip()
                    heard[id(c)].append(line)
                    if line == b"* %d EXISTS" % (i + 1):
                        break
        writer.close()
        owner = {}
        for c in idlers:
            c.sock.sendall(b"DONE\r\n")
            while True:
                line = c.readline().rstrip()
                if line.startswith(b"I%d " % c.n):
                    self.assertTrue(line.startswith(b"I%d OK" % c.n), line)
                    break
                heard[id(c)].append(line)
            counts = [int(m.group(1)) for m in
                      (re.match(rb"\* (\d+) RECENT$", x) for x in heard[id(c)]) if m]
            self.assertTrue(counts, heard[id(c)])
            _, lines = c.ok("UID FETCH 1:* (FLAGS)")
            mine = [int(re.search(rb"UID (\d+)", x).group(1)) for x in lines
                    if b"FETCH" in x and b"\\Recent" in x]
            self.assertEqual(counts[-1], len(mine), (heard[id(c)], lines))
            for uid in mine:
                self.assertNotIn(uid, owner, "UID %d \\Recent in two sessions" % uid)
                owner[uid] = c
        self.assertEqual(sorted(owner), list(range(1, 7)))
        for c in idlers:
            c.close()

    def test_pop3_lock_and_recent_across_nodes(self):
        a_node, b_node = self.node(), self.node()
        a = poplib.POP3("127.0.0.1", a_node.port("pop3"), timeout=TIMEOUT)
        a.user("alice@example.org")
        a.pass_("alice-secret")
        b = poplib.POP3("127.0.0.1", b_node.port("pop3"), timeout=TIMEOUT)
        b.user("alice@example.org")
        with self.assertRaises(poplib.error_proto) as cm:
            b.pass_("alice-secret")
        self.assertIn(b"[IN-USE]", cm.exception.args[0])
        b.quit()
        a.quit()
        b = poplib.POP3("127.0.0.1", b_node.port("pop3"), timeout=TIMEOUT)
        b.user("alice@example.org")
        b.pass_("alice-secret")  # free again once the first session ended
        b.quit()
        # \Recent: a message is \Recent in one session, on whichever node
        writer = Imap(a_node.port("imap"), "alice@example.org", "alice-secret")
        writer.ok("APPEND INBOX", message(b"recent", 1))
        writer.close()
        first = Imap(b_node.port("imap"), "alice@example.org", "alice-secret")
        _, lines = first.ok("SELECT INBOX")
        self.assertIn(b"* 1 RECENT", lines)
        second = Imap(a_node.port("imap"), "alice@example.org", "alice-secret")
        _, lines = second.ok("SELECT INBOX")
        self.assertIn(b"* 0 RECENT", lines)
        first.close()
        second.close()

    def test_kill_while_delivering(self):
        a_node, b_node = self.node(), self.node()
        acked, stop = [], threading.Event()
        errors = []

        def sender():
            try:
                s = smtplib.SMTP("127.0.0.1", a_node.port("smtp"), timeout=TIMEOUT)
                i = 0
                while not stop.is_set():
                    s.sendmail("t@example.org", ["alice@example.org"], message(b"kill", i))
                    acked.append(i)
                    i += 1
            except (smtplib.SMTPException, OSError):
                pass  # the node died under it
            except Exception as e:
                errors.append(repr(e))

        t = threading.Thread(target=sender)
        t.start()
        deadline = time.monotonic() + TIMEOUT
        while len(acked) < 20 and time.monotonic() < deadline and t.is_alive():
            time.sleep(0.01)
        a_node.kill()
        stop.set()
        t.join(TIMEOUT)
        self.assertEqual(errors, [])
        self.assertGreaterEqual(len(acked), 20)
        c = Imap(b_node.port("imap"), "alice@example.org", "alice-secret")
        c.ok("SELECT INBOX")
        _, lines = c.ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        ids = re.findall(rb"<kill-(\d+)@test>", b"\n".join(lines))
        counts = {}
        for x in ids:
            counts[int(x)] = counts.get(int(x), 0) + 1
        for i in acked:
            self.assertEqual(counts.get(i), 1, "acknowledged message %d: %s copies"
                             % (i, counts.get(i)))
        self.assertTrue(all(n == 1 for n in counts.values()), counts)
        c.close()
        a_node.proc = None  # killed on purpose; nothing to check at stop

    def test_database_restart(self):
        a_node = self.node()
        acked, refused, errors = [], [], []
        stop = threading.Event()

        def appender():
            try:
                c = Imap(a_node.port("imap"), "alice@example.org", "alice-secret")
                i = 0
                while not stop.is_set():
                    status, _ = c.command("APPEND INBOX", message(b"restart", i))
                    if status.startswith(b"OK"):
                        acked.append(i)
                    elif status.startswith(b"NO [UNAVAILABLE]"):
                        refused.append(i)
                    else:
                        errors.append(status)
                        return
                    i += 1
                c.close()
            except Exception as e:
                errors.append(repr(e))

        t = threading.Thread(target=appender)
        t.start()
        deadline = time.monotonic() + TIMEOUT
        while len(acked) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        subprocess.run([PG_TEST, "restart", cluster["dir"], "immediate"], check=True,
                       timeout=120)
        before = len(acked)
        deadline = time.monotonic() + TIMEOUT
        while len(acked) < before + 10 and time.monotonic() < deadline and t.is_alive():
            time.sleep(0.01)
        stop.set()
        t.join(TIMEOUT)
        self.assertEqual(errors, [])
        self.assertGreaterEqual(len(acked), before + 10, "no APPEND went through after the "
                                "restart:\n" + a_node.log()[-3000:])
        c = Imap(a_node.port("imap"), "alice@example.org", "alice-secret")
        c.ok("SELECT INBOX")
        _, lines = c.ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        ids = [int(x) for x in re.findall(rb"<restart-(\d+)@test>", b"\n".join(lines))]
        for i in acked:
            self.assertEqual(ids.count(i), 1, "acknowledged APPEND %d: %d copies"
                             % (i, ids.count(i)))
        c.close()


if __name__ == "__main__":
    unittest.main()
