"""IDLE never misses a delivery: sessions enter and leave IDLE while
messages arrive, and after every delivery each of them must report the new
message count without sending another command. Run on every backend, with
deliveries over LMTP (the server's own process) and through `roost deliver`
(another process, reaching the server through the per-user notify file).

One selector loop drives every session. Half of them stay in IDLE: each
delivery must reach them as a wake-up. The other half cycle (IDLE, "+",
DONE, tagged OK, IDLE again) for as long as the deliveries run, so IDLE
commands are being set up (watch registration, catch-up of the view) while
the mailbox changes. When the round's deliveries are acknowledged, every
session ends in IDLE and the test waits until each has reported EXISTS for
the new count. Every EXISTS is counted, whether it came from an IDLE
command's catch-up (before its "+") or as a wake-up afterwards; a missed
wake-up leaves a session at the old count, and the test names it.
"""
import os
import re
import selectors
import socket
import subprocess
import threading
import time
import unittest

from roosttest import BACKENDS, RoostServer

USERS = ["idle%d@example.org" % i for i in range(4)]
SESSIONS_PER_USER = 8
ROUNDS = 5
DELIVERIES = 3		# per round, one after the other
# A round (its deliveries and every session reporting them) must end within
# ROUND_S of its start. An idling session also looks at its mailbox by
# itself every 30 s (the IDLE poll for changes made by other programs), which
# would hide a missed wake-up, so rounds stay well inside that and each round
# starts with every session's poll clock fresh.
ROUND_S = 20
MSG = b"From: a@example.org\r\nSubject: idle\r\n\r\nbody\r\n"

EXISTS = re.compile(rb"^\* (\d+) EXISTS\r\n$")


def lmtp_deliver(port, users, msg):
    """One LMTP transaction to every user; each recipient's reply must be 250."""
    with socket.create_connection(("127.0.0.1", port), timeout=ROUND_S) as sock:
        f = sock.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if not line:
                    raise AssertionError("LMTP: connection closed")
                if line[3:4] != b"-":
                    return line

        def cmd(text, want):
            sock.sendall(text + b"\r\n")
            line = reply()
            if not line.startswith(want):
                raise AssertionError("LMTP %r: %r" % (text, line))

        reply()
        cmd(b"LHLO test", b"250")
        cmd(b"MAIL FROM:<s@example.org>", b"250")
        for u in users:
            cmd(b"RCPT TO:<%s>" % u.encode(), b"250")
        cmd(b"DATA", b"354")
        sock.sendall(msg + b".\r\n")
        for u in users:
            line = reply()
            if not line.startswith(b"250"):
                raise AssertionError("LMTP delivery to %s: %r" % (u, line))
        cmd(b"QUIT", b"221")


class Session:
    """One IMAP connection, non-blocking, fed by the test's selector loop."""

    def __init__(self, port, user):
        self.user = user
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""
        self.exists = 0
        self.pushes = 0		# EXISTS seen while idling (after "+")
        self.state = "greeting"
        self.cycle = False	# leave and re-enter IDLE again and again
        self.cycles = 0

    def send(self, data):
        self.sock.sendall(data)

    def lines(self):
        while b"\r\n" in self.buf:
            i = self.buf.index(b"\r\n") + 2
            line, self.buf = self.buf[:i], self.buf[i:]
            yield line

    def feed(self, data):
        if not data:
            raise AssertionError("%s: server closed the connection in state %s"
                                 % (self.user, self.state))
        self.buf += data
        for line in self.lines():
            self.on_line(line)

    def on_line(self, line):
        m = EXISTS.match(line)
        if m:
            self.exists = int(m.group(1))
            if self.state == "idling":
                self.pushes += 1
            return
        if line.startswith(b"* ") and self.state != "greeting":
            return
        if self.state == "greeting":
            assert line.startswith(b"* OK"), line
            self.state = "login"
            self.send(b"l LOGIN %s secret\r\n" % self.user.encode())
        elif self.state == "login":
            assert line.startswith(b"l OK"), line
            self.state = "select"
            self.send(b"s SELECT INBOX\r\n")
        elif self.state == "select":
            assert line.startswith(b"s OK"), line
            self.enter_idle()
        elif self.state == "idle-sent":
            assert line.startswith(b"+"), line
            self.state = "idling"
            if self.cycle:
                self.leave_idle()
        elif self.state == "done-sent":
            assert line.startswith(b"i OK"), line
            self.cycles += 1
            self.enter_idle()
        else:
            raise AssertionError("%s: unexpected %r in state %s" % (self.user, line, self.state))

    def enter_idle(self):
        self.state = "idle-sent"
        self.send(b"i IDLE\r\n")

    def leave_idle(self):
        self.state = "done-sent"
        self.send(b"DONE\r\n")

    def set_cycle(self, on):
        self.cycle = on
        if on and self.state == "idling":
            self.leave_idle()


class IdleWakeups(unittest.TestCase):
    def run_sessions(self, backend, deliver):
        """deliver(srv) starts one delivery to every user and returns
        something with .done() and .check()."""
        srv = RoostServer(backend=backend, users={u: "secret" for u in USERS},
                          listeners=("imap", "lmtp"),
                          conf={"imap": {"max_connections_per_user_ip": "100"},
                                "server": {"log_level": "info"}})
        with srv:
            # Something in every INBOX first, so the sessions' views are
            # not empty (Maildir then has files to scan).
            lmtp_deliver(srv.port("lmtp"), USERS, MSG)
            sel = selectors.DefaultSelector()
            sessions = []
            try:
                for u in USERS:
                    for _ in range(SESSIONS_PER_USER):
                        s = Session(srv.port("imap"), u)
                        s.sock.setblocking(False)
                        sel.register(s.sock, selectors.EVENT_READ, s)
                        sessions.append(s)

                def pump(until, what, deadline):
                    while not until():
                        left = deadline - time.monotonic()
                        if left <= 0:
                            self.fail(what() + "\n" + srv.log()[-3000:])
                        for key, _ in sel.select(min(left, 1.0)):
                            try:
                                key.data.feed(key.fileobj.recv(65536))
                            except AssertionError as e:
                                self.fail("%s\n%s" % (e, srv.log()[-3000:]))

                def all_idling():
                    return all(s.state == "idling" for s in sessions)

                pump(all_idling, lambda: "sessions did not reach IDLE: %s"
                     % sorted({s.state for s in sessions}), time.monotonic() + 60)
                steady, cyclers = sessions[0::2], sessions[1::2]
                expected = 1
                for r in range(ROUNDS):
                    deadline = time.monotonic() + ROUND_S
                    pushes = [s.pushes for s in steady]
                    for s in cyclers:
                        s.set_cycle(True)
                    for d in range(DELIVERIES):
                        job = deliver(srv)
                        pump(job.done, lambda: "round %d: delivery did not finish" % r,
                             deadline)
                        job.check()
                    expected += DELIVERIES
                    for s in cyclers:
                        s.set_cycle(False)

                    def behind():
                        return [s for s in sessions
                                if s.state != "idling" or s.exists != expected]
                    pump(lambda: not behind(),
                         lambda: "round %d: %d of %d sessions did not report EXISTS %d: %s"
                         % (r, len(behind()), len(sessions), expected,
                            ", ".join("%s in %s at %d" % (s.user, s.state, s.exists)
                                      for s in behind()[:8])), deadline)
                    # The steady sessions idled through the round: they can
                    # only have learnt of it by wake-ups.
                    for s, before in zip(steady, pushes):
                        self.assertGreater(s.pushes, before, s.user)
                    # A fresh IDLE for each, restarting its poll clock.
                    for s in steady:
                        s.leave_idle()
                    pump(all_idling, lambda: "round %d: sessions did not return to IDLE" % r,
                         time.monotonic() + 60)
                # The window was exercised: IDLE was set up again and again
                # while the deliveries ran.
                self.assertGreaterEqual(sum(s.cycles for s in cyclers), 2 * len(cyclers))
            finally:
                for s in sessions:
                    sel.unregister(s.sock)
                    s.sock.close()
                sel.close()

    def test_lmtp(self):
        class Lmtp:
            def __init__(self, srv):
                self.err = None
                self.t = threading.Thread(target=self.run, args=(srv,))
                self.t.start()

            def run(self, srv):
                try:
                    lmtp_deliver(srv.port("lmtp"), USERS, MSG)
                except Exception as e:	# reported by check()
                    self.err = repr(e)

            def done(self):
                return not self.t.is_alive()

            def check(self):
                self.t.join()
                if self.err:
                    raise AssertionError(self.err)

        for backend in BACKENDS:
            with self.subTest(backend=backend):
                self.run_sessions(backend, Lmtp)

    def test_roost_deliver(self):
        class Deliver:
            def __init__(self, srv):
                args = [srv.binary, "deliver"]
                for u in USERS:
                    args += ["-a", u]
                args += ["--config", srv.conf_path]
                self.p = subprocess.Popen(args, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                self.out = None
                self.t = threading.Thread(target=self.run)
                self.t.start()

            def run(self):
                self.out = self.p.communicate(MSG, timeout=ROUND_S)

            def done(self):
                return not self.t.is_alive()

            def check(self):
                self.t.join()
                if self.p.returncode != 0:
                    raise AssertionError("roost deliver: %d %r" % (self.p.returncode, self.out))

        for backend in BACKENDS:
            with self.subTest(backend=backend):
                self.run_sessions(backend, Deliver)


    def test_maildir_foreign_file_after_delivery(self):
        """A file another program drops into new/ just after a delivery of
        ours wakes the session too: after its own rename the server trusts
        the directory's new mtime without reading the directory again, and
        the inotify watch of the open folder is what reports other programs.
        The wait stays below the 30 s IDLE poll that would also find it."""
        if "maildir" not in BACKENDS:
            self.skipTest("maildir backend not tested")
        user = USERS[0]
        srv = RoostServer(backend="maildir", users={user: "secret"},
                          listeners=("imap", "lmtp"))
        with srv:
            lmtp_deliver(srv.port("lmtp"), [user], MSG)
            with socket.create_connection(("127.0.0.1", srv.port("imap")), timeout=ROUND_S) as c:
                f = c.makefile("rb")

                def until(pred):
                    while True:
                        line = f.readline()
                        if not line:
                            raise AssertionError("connection closed")
                        if pred(line):
                            return line

                until(lambda l: l.startswith(b"* OK"))
                c.sendall(b"l LOGIN %s secret\r\ns SELECT INBOX\r\ni IDLE\r\n" % user.encode())
                until(lambda l: l.startswith(b"+"))
                new = os.path.join(srv.data_dir, "maildir", user, "new")
                for k in range(3):
                    lmtp_deliver(srv.port("lmtp"), [user], MSG)
                    tmp = os.path.join(srv.data_dir, "maildir", user, "tmp", "tool%d" % k)
                    with open(tmp, "wb") as out:
                        out.write(b"Subject: dropped\r\n\r\nby another program\r\n")
                    os.rename(tmp, os.path.join(new, "1700000000.tool%d.host" % k))
                    want = 3 + 2 * k
                    until(lambda l: (EXISTS.match(l) is not None and
                                     int(EXISTS.match(l).group(1)) >= want))
                c.sendall(b"DONE\r\n")
                until(lambda l: l.startswith(b"i OK"))

    def test_flag_changes_and_expunges_while_idling(self):
        """Changes other than new mail reach an idling session whether
        its wake-up runs on the event loop (LMDB, a few changes) or on a
        worker (more than the loop takes: 40 flag changes in one STORE;
        and the other backends): one FETCH per changed message, then one
        EXPUNGE per expunged one, then the new count."""
        user = USERS[0]

        def check(srv):
            for _ in range(40):
                lmtp_deliver(srv.port("lmtp"), [user], MSG)
            self.idle_sees_changes(srv, user)
        self.on_each_backend(user, check)

    def on_each_backend(self, user, check):
        """check(srv) against a fresh server (IMAP and LMTP, user alone)
        on every backend, each a subTest."""
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                with RoostServer(backend=backend, users={user: "secret"},
                                 listeners=("imap", "lmtp")) as srv:
                    check(srv)

    def idle_sees_changes(self, srv, user):
        port = srv.port("imap")
        with socket.create_connection(("127.0.0.1", port), timeout=60) as a, \
                socket.create_connection(("127.0.0.1", port), timeout=60) as b:
            fa, fb = a.makefile("rb"), b.makefile("rb")

            def until(f, pred):
                while True:
                    line = f.readline()
                    if not line:
                        raise AssertionError("connection closed\n" + srv.log()[-3000:])
                    if pred(line):
                        return line

            for c, f in ((a, fa), (b, fb)):
                until(f, lambda l: l.startswith(b"* OK"))
                c.sendall(b"l LOGIN %s secret\r\ns SELECT INBOX\r\n" % user.encode())
                until(f, lambda l: l.startswith(b"s OK"))
            a.sendall(b"i IDLE\r\n")
            until(fa, lambda l: l.startswith(b"+"))
            fetch = re.compile(rb"^\* (\d+) FETCH \(FLAGS \(([^)]*)\)\)\r\n$")

            def flags_seen(n, flag):
                seen = set()
                while len(seen) < n:
                    line = until(fa, lambda l: fetch.match(l) is not None)
                    m = fetch.match(line)
                    self.assertIn(flag, m.group(2).split(), line)
                    seen.add(int(m.group(1)))
                return seen

            # 40 changes: more than the loop takes (32) on LMDB.
            b.sendall(b"f STORE 1:40 +FLAGS.SILENT (\\Flagged)\r\n")
            until(fb, lambda l: l.startswith(b"f OK"))
            self.assertEqual(flags_seen(40, b"\\Flagged"), set(range(1, 41)))
            # A few: on the loop where storage allows.
            b.sendall(b"g STORE 5 +FLAGS.SILENT (\\Seen)\r\n")
            until(fb, lambda l: l.startswith(b"g OK"))
            self.assertEqual(flags_seen(1, b"\\Seen"), {5})
            b.sendall(b"h STORE 1:3 +FLAGS.SILENT (\\Deleted)\r\nx EXPUNGE\r\n")
            until(fb, lambda l: l.startswith(b"x OK"))
            gone = [until(fa, lambda l: l.endswith(b" EXPUNGE\r\n")) for _ in range(3)]
            self.assertEqual(gone, [b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n",
                                    b"* 1 EXPUNGE\r\n"])
            lmtp_deliver(srv.port("lmtp"), [user], MSG)
            until(fa, lambda l: l == b"* 38 EXISTS\r\n")
            a.sendall(b"DONE\r\n")
            until(fa, lambda l: l.startswith(b"i OK"))
            for c in (a, b):
                c.sendall(b"z LOGOUT\r\n")

    def test_idle_recent_exactly_once(self):
        """Sessions in IDLE on one mailbox, woken by deliveries over LMTP
        and by `roost deliver` (another process): each hears every EXISTS,
        and after DONE each message is \\Recent in exactly one session and
        each session's last RECENT count is its number of \\Recent
        messages. On Maildir the wake-ups are answered on the event loop
        from the shared folder, and one session per delivery claims later
        on a worker; the others are told at once that nothing is left."""
        user = USERS[0]
        self.on_each_backend(
            user, lambda srv: self.recent_once(srv, user, rounds=6, n_idlers=6))

    def recent_once(self, srv, user, rounds, n_idlers):
        port = srv.port("imap")
        socks = [socket.create_connection(("127.0.0.1", port), timeout=60)
                 for _ in range(n_idlers)]
        try:
            files = [c.makefile("rb") for c in socks]
            heard = [[] for _ in socks]

            def until(k, pred):
                while True:
                    line = files[k].readline()
                    if not line:
                        raise AssertionError("connection closed\n" + srv.log()[-3000:])
                    heard[k].append(line.rstrip(b"\r\n"))
                    if pred(line):
                        return line

            for k, c in enumerate(socks):
                until(k, lambda l: l.startswith(b"* OK"))
                c.sendall(b"l LOGIN %s secret\r\ns SELECT INBOX\r\ni IDLE\r\n"
                          % user.encode())
                until(k, lambda l: l.startswith(b"+"))
            for i in range(rounds):
                if i % 2 == 0:
                    lmtp_deliver(srv.port("lmtp"), [user], MSG)
                else:
                    p = subprocess.run([srv.binary, "deliver", "-a", user,
                                        "--config", srv.conf_path], input=MSG,
                                       capture_output=True, timeout=60)
                    self.assertEqual(p.returncode, 0, p.stderr)
                want = b"* %d EXISTS\r\n" % (i + 1)
                for k in range(len(socks)):
                    until(k, lambda l: l == want)
            owner = {}
            for k, c in enumerate(socks):
                c.sendall(b"DONE\r\n")
                until(k, lambda l: l.startswith(b"i "))
                self.assertTrue(heard[k][-1].startswith(b"i OK"), heard[k])
                counts = [int(m.group(1)) for m in
                          (re.match(rb"\* (\d+) RECENT$", x) for x in heard[k]) if m]
                self.assertTrue(counts, heard[k])
                done = len(heard[k])
                c.sendall(b"f UID FETCH 1:* (FLAGS)\r\n")
                until(k, lambda l: l.startswith(b"f "))
                mine = [int(re.search(rb"UID (\d+)", x).group(1)) for x in heard[k][done:]
                        if b"FETCH" in x and b"\\Recent" in x]
                self.assertEqual(counts[-1], len(mine), heard[k])
                for uid in mine:
                    self.assertNotIn(uid, owner, "UID %d \\Recent in two sessions" % uid)
                    owner[uid] = k
            self.assertEqual(sorted(owner), list(range(1, rounds + 1)))
            for c in socks:
                c.sendall(b"z LOGOUT\r\n")
        finally:
            for c in socks:
                c.close()


if __name__ == "__main__":
    unittest.main()
