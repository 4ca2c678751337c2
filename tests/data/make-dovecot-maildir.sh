#!/bin/sh
# Regenerate tests/data/maildir-dovecot/: a Maildir written by a real
# Dovecot (private instance on a loopback port, temp config, passwd-file
# user) through IMAP APPENDs with flags and keywords and one EXPUNGE.
# check_maildir's dovecot_fixture test reads it through the Maildir backend.
# Needs dovecot-imapd (apt-get install dovecot-imapd).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/dovecot_imap.py" make "$here/maildir-dovecot"
