#!/bin/sh
# A throw-away PostgreSQL cluster for the tests, from Debian's postgresql
# package, listening only on a unix socket in its own directory.
#   scripts/pg-test.sh start     make and start one; prints "DIR DSN" on stdout
#   scripts/pg-test.sh stop DIR  stop it and remove DIR
# start exits 2, saying why, when PostgreSQL is not installed. PostgreSQL
# refuses to run as root: as root the cluster runs as nobody, in a
# directory nobody owns. fsync is off unless PG_TEST_FSYNC=on (benchmarks):
# the tests kill Roost and the database's processes, never the machine.
set -eu
fsync=${PG_TEST_FSYNC:-off}

bindir() {
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

as_owner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u nobody -- "$@"
	else
		"$@"
	fi
}

case "${1:-}" in
start)
	if ! bin=$(bindir); then
		echo "pg-test: PostgreSQL is not installed (Debian package postgresql)" >&2
		exit 2
	fi
	dir=$(mktemp -d "${TMPDIR:-/tmp}/roost-pg-XXXXXX")
	chmod 755 "$dir"
	if [ "$(id -u)" = 0 ]; then
		chown nobody:nogroup "$dir"
	fi
	as_owner "$bin/initdb" -D "$dir/data" -U roost -A trust -E UTF8 --locale=C \
		--no-sync >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		rm -rf "$dir"
		exit 1
	}
	as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
		-o "-k $dir -c listen_addresses= -c fsync=$fsync -c max_connections=300" \
		start >/dev/null || {
		cat "$dir/log" >&2
		rm -rf "$dir"
		exit 1
	}
	echo "$dir host=$dir port=5432 user=roost dbname=postgres"
	;;
stop)
	dir="$2"
	bin=$(bindir) || exit 0
	if [ -d "$dir/data" ]; then
		as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$dir"
	;;
restart)
	dir="$2"
	bin=$(bindir)
	as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -m "${3:-fast}" -w -t 60 \
		-o "-k $dir -c listen_addresses= -c fsync=$fsync -c max_connections=300" \
		restart >/dev/null
	;;
*)
	echo "usage: $0 start | stop DIR | restart DIR [fast|immediate]" >&2
	exit 2
	;;
esac
