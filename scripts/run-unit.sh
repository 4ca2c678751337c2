#!/bin/sh
# Run Check unit-test binaries; fail if any fails. Each gets a time bound so
# a hang shows up as a failure, not a stuck CI run.
set -u
status=0
for t in "$@"; do
	if ! timeout 300 "$t"; then
		echo "FAILED: $t" >&2
		status=1
	fi
done
exit $status
