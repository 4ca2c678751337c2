"""`roost import` and `roost export` against a running server, on every backend.

Round trips compare every message byte for byte with its flags, keywords
and internal date, read back over IMAP: mbox in, mbox out, mbox into another
user; Maildir out and in keeping UIDs and UIDVALIDITY; a second Roost as
the IMAP source (copied again: only what is new); an import killed in the
middle and run again (nothing lost, nothing twice); hostile sources.
"""
import imaplib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import roosttest
from roosttest import BACKENDS, RoostServer, backend_classes, own_server

ALICE = ("alice@example.org", "alice-secret")
BOB = ("bob@example.org", "bob-secret")

FETCH_RE = re.compile(rb"UID (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE \"([^\"]+)\"")


def login(srv, user):
    imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
    imap.login(*user)
    return imap


def snapshot(srv, user):
    """{mailbox: (uidvalidity, [(uid, flags, internaldate, bytes)])} over IMAP."""
    imap = login(srv, user)
    out = {}
    typ, lines = imap.list('""', "*")
    names = []
    for line in lines:
        m = re.match(rb'\(([^)]*)\) (?:"."|NIL) (.*)$', line)
        if b"\\Noselect" in m.group(1):
            continue
        name = m.group(2)
        names.append(name.decode())
    for name in names:
        typ, _ = imap.select('"%s"' % name.strip('"'), readonly=True)
        assert typ == "OK", name
        uidv = int(imap.response("UIDVALIDITY")[1][0])
        msgs = []
        typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, body = item
            uid = int(re.search(rb"UID (\d+)", meta).group(1))
            flags = set(re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).split())
            flags.discard(b"\\Recent")
            date = re.search(rb'INTERNALDATE "([^"]+)"', meta).group(1)
            msgs.append((uid, frozenset(flags), imaplib.Internaldate2tuple(
                b'INTERNALDATE "' + date + b'"'), body))
        msgs.sort()
        out[name.strip('"')] = (uidv, msgs)
        imap.close()
    imap.logout()
    return out


def without_uids(snap):
    """Compare content only: the messages of each mailbox as a multiset."""
    return {name: sorted((m[1], m[2], m[3]) for m in msgs) for name, (uidv, msgs) in snap.items()}


def make_mbox(path, count, big=False):
    """An mboxrd file with quoting traps, flags, keywords and dates; returns
    what the messages must be once stored (CRLF, unquoted, no state headers)."""
    expected = []
    with open(path, "wb") as f:
        for i in range(count):
            date = 1_000_000_000 + i * 3600
            t = time.gmtime(date)
            f.write(b"From sender%d@example.net %s\n"
                    % (i, time.strftime("%a %b %e %H:%M:%S %Y", t).encode()))
            status = []
            if i % 3 == 0:
                status.append(b"Status: RO\n")
            if i % 4 == 0:
                status.append(b"X-Status: AF\n")
            if i % 5 == 0:
                status.append(b"X-Keywords: $Forwarded project%d\n" % (i % 2))
            headers = [b"From: s%d@example.net\n" % i, b"Message-ID: <m%d@example.net>\n" % i,
                       b"Subject: message %d\n" % i]
            body = [b"\n", b"From the start of a line\n" if i % 2 else b"plain line\n",
                    b">From quoted once\n", b">>From quoted twice\n",
                    b"caf\xc3\xa9 line %d\n" % i]
            if big and i == 1:
                body.append(b"x" * 200 + b"\n")
                body = body + [(b"%07d " % k) + b"y" * 92 + b"\n" for k in range(3000)]
            raw = b"".join(headers[:2] + status + headers[2:] + body)
            # mboxrd quoting in the file
            quoted = b"".join((b">" + l if re.match(rb">*From ", l) else l)
                              for l in raw.splitlines(True))
            f.write(quoted + b"\n")
            stored = b"".join(headers + body).replace(b"\n", b"\r\n")
            flags = set()
            if i % 3 == 0:
                flags.add(b"\\Seen")
            if i % 4 == 0:
                flags |= {b"\\Answered", b"\\Flagged"}
            if i % 5 == 0:
                flags |= {b"$Forwarded", b"project%d" % (i % 2)}
            expected.append((frozenset(flags), time.localtime(date), stored))
    return expected


class ImportBase:
    backend = "lmdb"

    def setUp(self):
        self.srv = own_server(self, backend=self.backend)
        self.tmp = tempfile.mkdtemp(prefix="roost-import-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def roost(self, *args, srv=None, input=None, check=True, timeout=300):
        res = (srv or self.srv).cli(*args, input=input, check=False, timeout=timeout)
        if check and res.returncode != 0:
            self.fail("roost %s: %d\n%s%s" % (" ".join(args), res.returncode, res.stdout,
                                               res.stderr))
        return res

    def test_mbox_round_trip(self):
        src = os.path.join(self.tmp, "in.mbox")
        expected = make_mbox(src, 40, big=True)
        t0 = time.monotonic()
        res = self.roost("import", ALICE[0], src)
        self.assertIn("40 stored", res.stdout)
        snap_a = snapshot(self.srv, ALICE)
        got = sorted((m[1], m[2], m[3]) for m in snap_a["INBOX"][1])
        self.assertEqual(got, sorted(expected))
        # again: nothing new
        res = self.roost("import", ALICE[0], src)
        self.assertIn("0 stored, 40 already there", res.stdout)
        # out as mbox, into another user, compared with the first
        out = os.path.join(self.tmp, "out")
        res = self.roost("export", ALICE[0], out, "--format", "mbox")
        self.assertTrue(os.path.exists(os.path.join(out, "INBOX.mbox")))
        res = self.roost("import", BOB[0], out)
        snap_b = snapshot(self.srv, BOB)
        self.assertEqual(without_uids(snap_b), without_uids(snap_a))
        secs = time.monotonic() - t0
        size = sum(len(m[3]) for m in snap_a["INBOX"][1])
        print("\n  mbox round trip (%s): %d messages, %.2f MB, %.2f s (import, export, import)"
              % (self.backend, len(expected), size / 1e6, secs))
        res = self.roost("check")
        self.assertIn("consistent", res.stdout)

    def fill_folders(self, user):
        """Messages in several folders, with flags, keywords, dates and UID gaps."""
        imap = login(self.srv, user)
        for name in ("Work/Sub", "Mr. Smith", "&AMk-t&AOk-"):
            imap.create('"%s"' % name)
        for n, name in enumerate(("INBOX", "Work/Sub", "Mr. Smith", "&AMk-t&AOk-")):
            for i in range(6):
                msg = ("From: x@example.net\r\nSubject: %s %d\r\n\r\nbody %d\r\n"
                       % (name, i, i)).encode()
                flags = ["(\\Seen)", "(\\Flagged $Label1)", "(\\Draft \\Answered)", "()",
                         "($Label2 \\Deleted)", "(\\Seen $Label1 $Label2)"][i]
                imap.append('"%s"' % name, flags,
                            imaplib.Time2Internaldate(1_500_000_000 + n * 1000 + i), msg)
            imap.select('"%s"' % name)
            imap.uid("STORE", "2,4", "+FLAGS.SILENT", "(\\Deleted)")
            imap.uid("EXPUNGE", "2,4") if b"UIDPLUS" in imap.capability()[1][0] else \
                imap.expunge()
        imap.logout()

    def test_maildir_round_trip_keeps_uids(self):
        self.fill_folders(ALICE)
        snap_a = snapshot(self.srv, ALICE)
        out = os.path.join(self.tmp, "maildir")
        self.roost("export", ALICE[0], out)
        self.assertTrue(os.path.exists(os.path.join(out, ".Work.Sub", "dovecot-uidlist")))
        self.assertTrue(os.path.exists(os.path.join(out, ".Mr%2e Smith", "cur")))
        res = self.roost("import", BOB[0], out)
        self.assertIn(" 0 failed", res.stdout)
        snap_b = snapshot(self.srv, BOB)
        # the same UIDs and UIDVALIDITY, bytes, flags, keywords and dates
        self.assertEqual(snap_b, snap_a)
        res = self.roost("import", BOB[0], out)
        self.assertIn(" 0 stored", res.stdout)
        # --mailbox puts the tree under one folder
        res = self.roost("import", BOB[0], out, "--mailbox", "Old")
        snap_c = snapshot(self.srv, BOB)
        self.assertEqual(snap_c["Old/Work/Sub"][1], snap_a["Work/Sub"][1])
        self.assertEqual(snap_c["Old"][1], snap_a["INBOX"][1])

    def test_imap_source(self):
        src = RoostServer(backend=self.backend)
        src.start_or_skip()
        try:
            self.srv_src = src
            saved, self.srv = self.srv, src
            self.fill_folders(ALICE)
            self.srv = saved
            snap_src = snapshot(src, ALICE)
            pw = os.path.join(self.tmp, "pw")
            with open(pw, "w") as f:
                f.write(ALICE[1] + "\n")
            url = "imap://%s@127.0.0.1:%d" % (ALICE[0].replace("@", "%40"), src.port("imap"))
            res = self.roost("import", BOB[0], url, "--password-file", pw, "--insecure")
            self.assertIn(" 0 failed", res.stdout)
            snap_b = snapshot(self.srv, BOB)
            self.assertEqual(snap_b, snap_src)
            # the password on stdin, over TLS from the start, nothing new
            url_tls = "imaps://%s@127.0.0.1:%d" % (ALICE[0], src.port("imaps"))
            res = self.roost("import", BOB[0], url_tls, "--insecure", input=ALICE[1] + "\n")
            self.assertIn(" 0 stored", res.stdout)
            # two new messages and a flag change at the source: the two come over
            imap = login(src, ALICE)
            for i in range(2):
                imap.append("INBOX", "(\\Seen)", imaplib.Time2Internaldate(1_600_000_000 + i),
                            b"Subject: late %d\r\n\r\nlate\r\n" % i)
            imap.logout()
            res = self.roost("import", BOB[0], url, "--password-file", pw, "--insecure")
            self.assertIn(" 2 stored", res.stdout)
            self.assertEqual(snapshot(self.srv, BOB)["INBOX"], snapshot(src, ALICE)["INBOX"])
            # the certificate is checked unless --insecure (a self-signed one here)
            res = self.roost("import", BOB[0], url_tls, input=ALICE[1] + "\n", check=False)
            self.assertEqual(res.returncode, 1)
            self.assertIn("TLS", res.stderr)
            # a wrong password is refused, nothing stored
            res = self.roost("import", BOB[0], url, "--insecure", input="wrong\n", check=False)
            self.assertEqual(res.returncode, 1)
            self.assertIn("refused", res.stderr)
        finally:
            src.stop()
            src.cleanup()

    def test_dovecot_source(self):
        """A real Dovecot as the IMAP source, and its Maildir read directly."""
        dovecot = shutil.which("dovecot")
        if dovecot is None or os.geteuid() != 0:
            self.skipTest("no dovecot (or not root to run it)")
        import pwd
        nobody = pwd.getpwnam("nobody")
        dv = os.path.join(self.tmp, "dovecot")
        mail = os.path.join(dv, "mail")
        os.makedirs(os.path.join(dv, "run"))
        os.makedirs(mail)
        os.chmod(self.tmp, 0o755)
        os.chmod(dv, 0o755)
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        port = roosttest.free_port()
        conf = os.path.join(dv, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("base_dir = %(d)s/run\nstate_dir = %(d)s/run\nlog_path = %(d)s/log\n"
                    "protocols = imap\nlisten = 127.0.0.1\nssl = no\n"
                    "disable_plaintext_auth = no\nauth_mechanisms = plain login\n"
                    "default_internal_user = nobody\ndefault_login_user = nobody\n"
                    "default_internal_group = %(g)s\n"
                    "mail_location = maildir:%(d)s/mail/%%u\nfirst_valid_uid = 0\n"
                    "passdb {\n driver = passwd-file\n args = scheme=PLAIN %(d)s/passwd\n}\n"
                    "userdb {\n driver = static\n args = uid=%(u)d gid=%(gid)d "
                    "home=%(d)s/mail/%%u\n}\n"
                    "service imap-login {\n chroot =\n inet_listener imap {\n  port = %(p)d\n }"
                    "\n inet_listener imaps {\n  port = 0\n }\n}\n"
                    "service anvil {\n chroot =\n}\n"
                    % {"d": dv, "u": nobody.pw_uid, "gid": nobody.pw_gid, "p": port,
                       "g": __import__("grp").getgrgid(nobody.pw_gid).gr_name})
        with open(os.path.join(dv, "passwd"), "w") as f:
            f.write("dan@example.org:{PLAIN}dan-secret\n")
        # the daemon keeps its stdio: files, not pipes, or run() waits for it
        with open(os.path.join(dv, "start.log"), "wb") as out:
            res = subprocess.run([dovecot, "-c", conf], stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=out, timeout=30)
        if res.returncode != 0 or not roosttest.wait_port(port):
            self.skipTest("dovecot did not start")
        try:
            imap = imaplib.IMAP4("127.0.0.1", port)
            imap.login("dan@example.org", "dan-secret")
            imap.create("Work.Sub")  # Dovecot's Maildir++ separator
            for i in range(5):
                for box in ("INBOX", "Work.Sub"):
                    imap.append(box, "(\\Seen $Label%d)" % i if i % 2 else "(\\Flagged)",
                                imaplib.Time2Internaldate(1_500_000_000 + i),
                                b"Subject: dovecot %d\r\n\r\nbody\r\n" % i)
            imap.logout()
            # imaplib's snapshot() needs the "imap" port of a RoostServer-like object
            class Src:
                def port(self, name):
                    return port
            src_snap = snapshot(Src(), ("dan@example.org", "dan-secret"))
            url = "imap://dan%%40example.org@127.0.0.1:%d" % port
            res = self.roost("import", ALICE[0], url, input="dan-secret\n")
            self.assertIn("10 stored", res.stdout)
            got = snapshot(self.srv, ALICE)
            for box, theirs in (("INBOX", "INBOX"), ("Work/Sub", "Work.Sub")):
                self.assertEqual(got[box], src_snap[theirs])
            # Dovecot's Maildir itself, with its dovecot-uidlist and keywords
            res = self.roost("import", BOB[0], os.path.join(mail, "dan@example.org"))
            self.assertIn("10 stored", res.stdout)
            got = snapshot(self.srv, BOB)
            for box, theirs in (("INBOX", "INBOX"), ("Work/Sub", "Work.Sub")):
                self.assertEqual(got[box][0], src_snap[theirs][0])
                self.assertEqual([m[:3] for m in got[box][1]],
                                 [m[:3] for m in src_snap[theirs][1]])
        finally:
            subprocess.run([dovecot, "-c", conf, "stop"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)

    def test_interrupted_import(self):
        src = os.path.join(self.tmp, "many.mbox")
        expected = make_mbox(src, 1500)
        cmd = [roosttest.ROOST_BIN, "import", ALICE[0], src, "--config", self.srv.conf_path]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        imap = login(self.srv, ALICE)
        deadline = time.monotonic() + 120
        count = 0
        while time.monotonic() < deadline and proc.poll() is None:
            typ, data = imap.status("INBOX", "(MESSAGES)")
            count = int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
            if count >= 100:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        typ, data = imap.status("INBOX", "(MESSAGES)")
        killed_at = int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
        imap.logout()
        self.assertGreater(killed_at, 0)
        self.assertLess(killed_at, 1500, "the import finished before the kill")
        res = self.roost("import", ALICE[0], src)
        m = re.search(r"(\d+) stored, (\d+) already there, 0 failed", res.stdout)
        self.assertIsNotNone(m, res.stdout)
        self.assertEqual(int(m.group(1)) + int(m.group(2)), 1500)
        self.assertGreaterEqual(int(m.group(2)), killed_at)
        snap = snapshot(self.srv, ALICE)
        got = sorted((m[1], m[2], m[3]) for m in snap["INBOX"][1])
        self.assertEqual(got, sorted(expected))
        print("\n  interrupted import (%s): killed after %d of 1500, resumed"
              % (self.backend, killed_at))

    def test_hostile_sources(self):
        bad = os.path.join(self.tmp, "not.mbox")
        with open(bad, "wb") as f:
            f.write(b"Subject: no From_ line\n\n\x00\xff garbage\n")
        res = self.roost("import", ALICE[0], bad, check=False)
        self.assertEqual(res.returncode, 1)
        self.assertIn("not an mbox", res.stderr)
        # a truncated mbox with NUL bytes and a huge line: what is there is stored
        trunc = os.path.join(self.tmp, "trunc.mbox")
        with open(trunc, "wb") as f:
            f.write(b"From a Mon Nov 24 18:22:48 1986\nSubject: a\n\nx\x00y\n"
                    b"\nFrom b Mon Nov 24 18:22:49 1986\nSubject: b\n\n" + b"z" * 300000)
        res = self.roost("import", ALICE[0], trunc, "--mailbox", "Trunc")
        self.assertIn("2 stored", res.stdout)
        # the stored bytes (IMAP FETCH may not carry a NUL: read them as stored)
        first = subprocess.run([roosttest.ROOST_BIN, "mailbox", "fetch", ALICE[0], "Trunc", "1",
                                "--config", self.srv.conf_path], capture_output=True,
                               timeout=60).stdout
        self.assertEqual(first, b"Subject: a\r\n\r\nx\x00y\r\n")
        snap = snapshot(self.srv, ALICE)["Trunc"][1]
        self.assertEqual(len(snap[1][3]), len(b"Subject: b\r\n\r\n") + 300000)
        res = self.roost("import", "nobody@example.org", trunc, check=False)
        self.assertEqual(res.returncode, 1)
        self.assertIn("no such user", res.stderr)
        res = self.roost("import", ALICE[0], trunc, "--mailbox", "../x", check=False)
        self.assertEqual(res.returncode, 2)
        res = self.roost("import", ALICE[0], "imap://nohost", input="x\n", check=False)
        self.assertEqual(res.returncode, 1)
        # a damaged dovecot-uidlist: the import goes by content, nothing lost
        md = os.path.join(self.tmp, "md")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, sub))
        with open(os.path.join(md, "cur", "1.a.host:2,S"), "wb") as f:
            f.write(b"Subject: md\n\nbody\n")
        with open(os.path.join(md, "new", "2.b.host"), "wb") as f:
            f.write(b"Subject: new\n\nbody\n")
        with open(os.path.join(md, "dovecot-uidlist"), "wb") as f:
            f.write(b"3 V123 N9\n5 :1.a.host\n\x00garbage\n")
        res = self.roost("import", ALICE[0], md, "--mailbox", "Md")
        self.assertIn("2 stored", res.stdout)
        # export never overwrites
        res = self.roost("export", ALICE[0], md, check=False)
        self.assertEqual(res.returncode, 1)
        self.assertIn("exists", res.stderr)


backend_classes(globals(), ImportBase, "TestImport_%s", BACKENDS)

if __name__ == "__main__":
    unittest.main()
