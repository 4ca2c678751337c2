#!/usr/bin/env python3
"""Run a private Dovecot over a Maildir and talk IMAP to it (stdlib only).

    dovecot_imap.py make OUTDIR   build the fixture: a fresh Maildir written
                                  by Dovecot (APPENDs with flags and keywords,
                                  an EXPUNGE), copied to OUTDIR without
                                  Dovecot's own index files
    dovecot_imap.py dump MAILDIR  serve a copy of MAILDIR and print what
                                  Dovecot sees: one line per mailbox, then
                                  per message "uid flags size"
    dovecot_imap.py create MAILDIR NAME...
                                  let Dovecot create the mailboxes NAME
                                  (modified UTF-7, "/" between levels) in
                                  MAILDIR itself, one message in each

Dovecot runs from a temp config (no system config) on a free loopback port
with a passwd-file user, and is stopped before the script exits. Needs
/usr/sbin/dovecot (Debian: dovecot-imapd).
"""
import errno
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

DOVECOT = os.environ.get("DOVECOT", "/usr/sbin/dovecot")
USER = "fixture"
PASSWORD = "fixture-pass"

MESSAGES = [
    # (flags, internal date, body)
    (r"(\Seen)", "01-Jan-2024 10:00:00 +0000",
     b"From: a@example.com\r\nTo: fixture@example.com\r\nSubject: one\r\n\r\nfirst\r\n"),
    (r"(\Seen \Flagged $Label1)", "02-Jan-2024 11:00:00 +0000",
     b"From: b@example.com\r\nTo: fixture@example.com\r\nSubject: two\r\n\r\nsecond\r\n"),
    (r"(\Answered Work)", "03-Jan-2024 12:00:00 +0000",
     b"From: c@example.com\r\nTo: fixture@example.com\r\nSubject: three\r\n\r\nthird\r\n"),
    (r"(\Deleted)", "04-Jan-2024 13:00:00 +0000",
     b"From: d@example.com\r\nTo: fixture@example.com\r\nSubject: four\r\n\r\nfourth\r\n"),
    (r"(\Draft $Label1 Work)", "05-Jan-2024 14:00:00 +0000",
     b"From: e@example.com\r\nTo: fixture@example.com\r\nSubject: five\r\n\r\nfifth\r\n"),
    (r"()", "06-Jan-2024 15:00:00 +0000",
     b"From: f@example.com\r\nTo: fixture@example.com\r\nSubject: six\r\n\r\nsixth\r\n"),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Dovecot:
    def __init__(self, maildir):
        self.tmp = tempfile.mkdtemp(prefix="roost-dovecot-")
        self.maildir = maildir
        self.port = free_port()
        me = pwd.getpwuid(os.getuid())
        uid, gid = os.getuid(), os.getgid()
        if uid == 0:
            # Dovecot refuses mail access as root: serve the Maildir as nobody
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
            os.makedirs(maildir, exist_ok=True)
            for root, dirs, files in os.walk(os.path.dirname(maildir)):
                for n in dirs + files:
                    os.lchown(os.path.join(root, n), uid, gid)
            os.chown(os.path.dirname(maildir), uid, gid)
            os.makedirs(os.path.join(self.tmp, "index"))
            os.chown(os.path.join(self.tmp, "index"), uid, gid)
        conf = os.path.join(self.tmp, "dovecot.conf")
        with open(os.path.join(self.tmp, "passwd"), "w") as f:
            f.write("%s:{PLAIN}%s:%d:%d::%s::\n" % (USER, PASSWORD, uid, gid, self.tmp))
        if os.getuid() == 0:
            login_user = "dovenull"
            users = "default_login_user = dovenull\ndefault_internal_user = dovecot\n"
        else:
            login_user = me.pw_name
            users = ("default_login_user = %s\ndefault_internal_user = %s\n"
                     % (me.pw_name, me.pw_name))
        os.chmod(self.tmp, 0o755)
        with open(conf, "w") as f:
            f.write(f"""
base_dir = {self.tmp}/run
state_dir = {self.tmp}/state
log_path = {self.tmp}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 0
{users}
mail_location = maildir:{maildir}:INDEX={self.tmp}/index
# Names keep their '.' and '%' as Roost writes them: "/" between levels,
# '.' and '%' escaped as %2E and %25 in the Maildir++ directory name.
mail_plugins = $mail_plugins listescape
namespace inbox {{
  separator = /
  inbox = yes
}}
plugin {{
  listescape_char = "%%"
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.tmp}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.tmp}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
  user = {login_user}
}}
service anvil {{
  chroot =
}}
""")
        self.conf = conf
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    err = self.proc.stderr.read().decode(errors="replace")
                    self.stop()
                    raise RuntimeError("dovecot did not start: " + err + self.log())
                time.sleep(0.05)

    def log(self):
        try:
            with open(os.path.join(self.tmp, "dovecot.log")) as f:
                return f.read()
        except OSError:
            return ""

    def imap(self):
        c = imaplib.IMAP4("127.0.0.1", self.port)
        c.login(USER, PASSWORD)
        return c

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def make(outdir):
    work = tempfile.mkdtemp(prefix="roost-fixture-")
    maildir = os.path.join(work, "Maildir")
    d = Dovecot(maildir)
    try:
        c = d.imap()
        c.create("Work")
        for flags, date, body in MESSAGES:
            typ, data = c.append("INBOX", flags, '"%s"' % date, body)
            assert typ == "OK", data
        c.append("Work", r"(\Flagged)", None, MESSAGES[0][2])
        c.select("INBOX")
        typ, data = c.expunge()   # removes UID 4 (\Deleted)
        assert typ == "OK", data
        c.logout()
    finally:
        d.stop()
    if os.path.exists(outdir):
        shutil.rmtree(outdir)
    shutil.copytree(maildir, outdir,
                    ignore=shutil.ignore_patterns("dovecot.index*", "dovecot.list.index*"))
    shutil.rmtree(work)
    if os.getuid() == 0:
        for root, dirs, files in os.walk(outdir):
            for n in dirs + files:
                os.lchown(os.path.join(root, n), 0, 0)
        os.chown(outdir, 0, 0)
    # tmp/ directories must exist but git keeps no empty directories
    for root, dirs, files in os.walk(outdir):
        for sub in ("cur", "new", "tmp"):
            if sub in dirs:
                keep = os.path.join(root, sub, ".keep")
                if not os.listdir(os.path.join(root, sub)):
                    open(keep, "w").close()


def dump(src):
    work = tempfile.mkdtemp(prefix="roost-dump-")
    maildir = os.path.join(work, "Maildir")
    shutil.copytree(src, maildir, symlinks=True)
    d = Dovecot(maildir)
    try:
        c = d.imap()
        typ, boxes = c.list()
        names = []
        for line in boxes:
            # (attrs) "/" name, the name an atom or a quoted string
            name = line.decode().split(') "/" ', 1)[1]
            if name.startswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            names.append(name)
        for name in sorted(names):
            typ, data = c.select(quote(name), readonly=True)
            if typ != "OK":
                print("mailbox %s unselectable" % name)
                continue
            typ, uv = c.response("UIDVALIDITY")
            typ, un = c.response("UIDNEXT")
            print("mailbox %s uidvalidity %s uidnext %s" % (name, uv[0].decode(), un[0].decode()))
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)")
            for item in data:
                if item is None:
                    continue
                s = item.decode() if isinstance(item, bytes) else item[0].decode()
                uid = s.split("UID ")[1].split()[0].rstrip(")")
                flags = s.split("FLAGS (")[1].split(")")[0]
                size = s.split("RFC822.SIZE ")[1].split()[0].rstrip(")")
                print("%s %s %s" % (uid, size, " ".join(sorted(flags.split()))))
            c.close()
        c.logout()
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)


def quote(name):
    return '"%s"' % name.replace("\\", "\\\\").replace('"', '\\"')


def create(dest, names):
    """Dovecot works on a copy (as root it serves it as nobody, who may
    not reach dest), which then replaces dest, owned as dest was."""
    work = tempfile.mkdtemp(prefix="roost-create-")
    maildir = os.path.join(work, "Maildir")
    shutil.copytree(dest, maildir, symlinks=True)
    st = os.stat(dest)
    d = Dovecot(maildir)
    try:
        c = d.imap()
        for name in names:
            typ, data = c.create(quote(name))
            assert typ == "OK", (name, data)
            typ, data = c.append(quote(name), None, None, MESSAGES[0][2])
            assert typ == "OK", (name, data)
        c.logout()
    finally:
        d.stop()
    for root, dirs, files in os.walk(maildir):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), st.st_uid, st.st_gid)
    # The caller's own store may still be writing into dest (its watch
    # thread syncs folders as their files change), so dest is moved aside
    # in one rename, the copy put in its place, and the old tree removed
    # once nothing is left writing into it.
    aside = dest.rstrip("/") + ".before-dovecot"
    os.rename(dest, aside)
    shutil.copytree(maildir, dest, symlinks=True)
    rmtree_settled(aside)
    shutil.rmtree(work, ignore_errors=True)


def rmtree_settled(path, attempts=100):
    """rmtree a tree another process may still add a file to: a removal
    that finds a directory no longer empty is made again (bounded)."""
    for _ in range(attempts - 1):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.ENOTEMPTY:
                raise
    shutil.rmtree(path)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "create" and os.path.exists(DOVECOT):
        create(sys.argv[2], sys.argv[3:])
        return 0
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "dump"):
        print(__doc__, file=sys.stderr)
        return 2
    if not os.path.exists(DOVECOT):
        print("dovecot not installed (%s): skipped" % DOVECOT, file=sys.stderr)
        return 77
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        dump(sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
