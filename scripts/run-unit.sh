#!/bin/sh
# Run Check unit-test binaries; fail if any fails. Each gets a time bound so
# a hang shows up as a failure, not a stuck CI run.
set -u
# Check's own per-test default is 4 s, which a sanitizer build on a loaded
# 2-core machine can pass without anything being wrong; the outer timeout
# below still catches a real hang.
CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-60}
export CK_DEFAULT_TIMEOUT
# One PostgreSQL for the whole run (the storage suite makes a database per
# test in it), when the package is installed and none was given.
pgdir=""
if [ -z "${ROOST_PGSQL_TEST_DSN:-}" ]; then
	if out=$("$(dirname "$0")/pg-test.sh" start); then
		pgdir=${out%% *}
		ROOST_PGSQL_TEST_DSN=${out#* }
		export ROOST_PGSQL_TEST_DSN
		trap '"$(dirname "$0")/pg-test.sh" stop "$pgdir"' EXIT
		trap 'exit 1' INT TERM
	else
		echo "run-unit: no PostgreSQL: the pgsql backend is not tested" >&2
	fi
fi
# The outer bound is per binary: check_storage runs every case on three
# backends, which under ASan on a loaded 2-core machine took over 300 s.
UNIT_TIMEOUT=${UNIT_TIMEOUT:-900}
status=0
for t in "$@"; do
	start=$(date +%s)
	timeout "$UNIT_TIMEOUT" "$t"
	rc=$?
	if [ "$rc" -ne 0 ]; then
		[ "$rc" -eq 124 ] && echo "TIMED OUT after ${UNIT_TIMEOUT} s: $t" >&2
		echo "FAILED: $t" >&2
		status=1
	fi
	end=$(date +%s)
	[ $((end - start)) -ge 60 ] && echo "run-unit: $t took $((end - start)) s" >&2
done
exit $status
