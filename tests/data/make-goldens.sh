#!/bin/sh
# Regenerate tests/data/goldens/ from a real Dovecot: for every message in
# tests/data/messages/ record what Dovecot answers to FETCH ENVELOPE,
# BODYSTRUCTURE and BODY. check_message.c compares our renderers with these.
#
# Needs dovecot-imapd (Debian). Dovecot runs on a free loopback port from a
# config written into a temp dir (no system config), with one passwd-file
# user and mail_location=maildir:DIR; it is stopped on exit.
#
#   tests/data/make-goldens.sh [message-file...]
#   GOLDEN_OUT=dir tests/data/make-goldens.sh files...   (write elsewhere)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
msgdir=$here/messages
outdir=${GOLDEN_OUT:-$here/goldens}
command -v dovecot >/dev/null || { echo "make-goldens: dovecot not installed" >&2; exit 1; }

tmp=$(mktemp -d /tmp/roost-goldens.XXXXXX)
chmod 755 "$tmp"
pidfile=""
cleanup() {
	if [ -n "$pidfile" ] && [ -f "$tmp/run/master.pid" ]; then
		kill "$(cat "$tmp/run/master.pid")" 2>/dev/null || true
		sleep 0.5
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$(id -u)" = 0 ]; then
	muser=nobody
	internal="dovecot"
	login="dovenull"
else
	muser=$(id -un)
	internal=$muser
	login=$muser
fi
muid=$(id -u "$muser")
mgid=$(id -g "$muser")
mkdir -p "$tmp/run" "$tmp/mail" "$tmp/home"
chown "$muid:$mgid" "$tmp/mail" "$tmp/home"
echo "golden:{PLAIN}golden" > "$tmp/passwd"
cat > "$tmp/dovecot.conf" <<CONF
base_dir = $tmp/run
state_dir = $tmp/state
log_path = $tmp/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = $internal
default_login_user = $login
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = $tmp/passwd
}
userdb {
  driver = static
  args = uid=$muid gid=$mgid home=$tmp/home/%u
}
mail_location = maildir:$tmp/mail/%u
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
CONF
pidfile=$tmp/run/master.pid
dovecot -c "$tmp/dovecot.conf"

if [ $# -eq 0 ]; then
	set -- "$msgdir"/*.eml
fi
python3 - "$port" "$outdir" "$@" <<'PY'
import imaplib, os, sys, time

port, outdir, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
for _ in range(50):
    try:
        m = imaplib.IMAP4("127.0.0.1", port)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("make-goldens: dovecot did not start")
m.login("golden", "golden")

def raw(data):
    # imaplib splits a response at literals: (line-with-{n}, literal) tuples,
    # then the rest of the line; put the wire bytes back together.
    out = b""
    for d in data:
        if isinstance(d, tuple):
            out += d[0] + b"\r\n" + d[1]
        elif d is not None:
            out += d
    return out

for path in files:
    name = os.path.basename(path)
    with open(path, "rb") as f:
        msg = f.read()
    box = "g" + str(abs(hash(name)) % 10**9)
    m.create(box)
    try:
        typ, _ = m.append(box, None, None, msg)
    except imaplib.IMAP4.error as e:
        typ = str(e)
    if typ != "OK":
        print("make-goldens: Dovecot refused %s: %s" % (name, typ), file=sys.stderr)
        m.delete(box)
        continue
    m.select(box)
    rec = b""
    for item in ("ENVELOPE", "BODYSTRUCTURE", "BODY"):
        typ, data = m.fetch("1", "(" + item + ")")
        if typ != "OK":
            sys.exit("make-goldens: FETCH %s failed for %s" % (item, name))
        r = raw(data)
        pre = b"1 (" + item.encode() + b" "
        if not r.startswith(pre) or not r.endswith(b")"):
            sys.exit("make-goldens: unexpected reply %r" % r[:200])
        val = r[len(pre):-1]
        rec += item.encode() + b" %d\n" % len(val) + val + b"\n"
    m.close()
    m.delete(box)
    with open(os.path.join(outdir, name[:-4] + ".golden"), "wb") as f:
        f.write(rec)
m.logout()
PY
echo "make-goldens: wrote $# goldens to $outdir"
