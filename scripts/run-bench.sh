#!/bin/sh
# Run every benchmark binary under $BUILD/bench (make bench; FULL=1 for the
# long profile). Each prints its own table; nothing here asserts timings.
set -u
BUILD=${BUILD:-build}
profile=${1:-short}
export BENCH_PROFILE="$profile"
export ROOST_BIN="$(pwd)/$BUILD/roost"
# A PostgreSQL for the pgsql column of bench_storage, with fsync on like the
# other backends, when the package is installed and none was given.
if [ -z "${ROOST_PGSQL_BENCH_DSN:-}" ] && out=$(PG_TEST_FSYNC=on scripts/pg-test.sh start); then
	pgdir=${out%% *}
	ROOST_PGSQL_BENCH_DSN=${out#* }
	export ROOST_PGSQL_BENCH_DSN
	trap 'scripts/pg-test.sh stop "$pgdir"' EXIT
	trap 'exit 1' INT TERM
fi
status=0
for b in "$BUILD"/bench/bench_*; do
	[ -x "$b" ] || continue
	echo "== $(basename "$b") ($profile)"
	"$b" || status=1
	echo
done
if [ -x "$BUILD/roost-testd" ] && [ -f bench/runtime_bench.py ]; then
	echo "== runtime ($profile)"
	if [ "$profile" = full ]; then
		args="--idle 10000 --tls 2000 --wakes 5000 --clients 16"
	else
		args="--idle 2000 --tls 300 --wakes 500 --clients 4"
	fi
	ROOST_TESTD="$(pwd)/$BUILD/roost-testd" python3 bench/runtime_bench.py $args || status=1
	echo
fi
if [ -f bench/relay_bench.py ]; then
	echo "== relay ($profile)"
	ROOST_BIN="$ROOST_BIN" python3 bench/relay_bench.py || status=1
	# The same load through a private Postfix (installed here when missing).
	ROOST_BIN="$ROOST_BIN" python3 bench/relay_postfix.py || status=1
	echo
fi
if [ -x bench/compare ] && [ "${BENCH_COMPARE:-1}" = 1 ]; then
	echo "== compare ($profile)"
	bench/compare "--$profile" || status=1
fi
exit $status
