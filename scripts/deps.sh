#!/bin/sh
# Make sure the Debian packages Roost needs are installed.
#   scripts/deps.sh build   what building and running needs
#   scripts/deps.sh test    that, plus the real clients the tests drive
# As root, missing packages are installed with apt-get; otherwise the
# script names them and fails, so nothing half-builds.
set -eu

BUILD_PKGS="gcc make pkg-config liblmdb-dev libssl-dev openssl libcrypt-dev libc-ares-dev libutf8proc-dev libjansson-dev zlib1g-dev libpq-dev"
TEST_PKGS="check libsubunit-dev python3 curl lmdb-utils swaks libnet-ssleay-perl fetchmail isync python3-dkim clang-format chromium chromium-driver python3-selenium postgresql fail2ban"

case "${1:-build}" in
build) want="$BUILD_PKGS" ;;
test) want="$BUILD_PKGS $TEST_PKGS" ;;
*) echo "usage: $0 build|test" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "roost: missing Debian packages:$missing" >&2
	echo "roost: install them with: sudo apt-get install$missing" >&2
	exit 1
fi

echo "roost: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends $missing >/dev/null; then
	apt-get update >/dev/null
	apt-get install -y --no-install-recommends $missing >/dev/null
fi
