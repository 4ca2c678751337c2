#!/usr/bin/env python3
"""Run every tests/integration/test_*.py against the built server.

ROOST_BIN names the roost binary (make integration sets it); ROOST_TESTS
narrows the run to modules matching a glob (e.g. ROOST_TESTS='test_imap*').
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    sys.path.insert(0, HERE)
    pattern = os.environ.get("ROOST_TESTS", "test_*.py")
    if not pattern.endswith(".py"):
        pattern += ".py"
    suite = unittest.defaultTestLoader.discover(HERE, pattern=pattern, top_level_dir=HERE)
    if suite.countTestCases() == 0:
        print("integration: no tests found", file=sys.stderr)
        return 0
    result = unittest.TextTestRunner(verbosity=2, failfast=False).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
