"""`roost check`: a fresh or healthy store is reported consistent (exit 0),
a missing data directory is an error and is not created."""
import os
import shutil
import subprocess
import tempfile
import unittest

import roosttest


class TestCheck(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="roost-check-")
        self.conf = os.path.join(self.dir, "roost.conf")
        self.data = os.path.join(self.dir, "var")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def check(self, backend="lmdb"):
        with open(self.conf, "w") as f:
            f.write("[server]\ndata_dir = %s\n[storage]\nbackend = %s\n" % (self.data, backend))
        return subprocess.run([roosttest.ROOST_BIN, "check", "--config", self.conf],
                              capture_output=True, text=True, timeout=60)

    def test_missing_data_dir_not_created(self):
        res = self.check()
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn("data directory", res.stderr)
        self.assertFalse(os.path.exists(self.data))

    def test_fresh_store_is_consistent(self):
        os.mkdir(self.data)
        res = self.check()
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn("consistent", res.stdout)

    def test_usage(self):
        res = subprocess.run([roosttest.ROOST_BIN, "check", "extra"], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(res.returncode, 2)


if __name__ == "__main__":
    unittest.main()
