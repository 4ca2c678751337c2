#!/bin/sh
# Run Check unit-test binaries; fail if any fails. Each gets a time bound so
# a hang shows up as a failure, not a stuck CI run.
set -u
# Check's own per-test default is 4 s, which a sanitizer build on a loaded
# 2-core machine can pass without anything being wrong; the outer timeout
# below still catches a real hang.
CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-60}
export CK_DEFAULT_TIMEOUT
status=0
for t in "$@"; do
	if ! timeout 300 "$t"; then
		echo "FAILED: $t" >&2
		status=1
	fi
done
exit $status
