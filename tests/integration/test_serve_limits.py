"""`roost serve` and the open-file limit: it raises its soft RLIMIT_NOFILE to
the hard limit at start (every connection holds a descriptor, and the usual
soft limit of 1024 would refuse connections long before max_connections),
and says so in one warning line when even the hard limit cannot hold
[limits] max_connections."""
import resource
import unittest

from roosttest import RoostServer

SOFT, HARD = 200, 900


def low_limits():
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))


def nofile(pid):
    """(soft, hard) open-file limit of a running process."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                w = line.split()
                return int(w[3]), int(w[4])
    raise AssertionError("no open-file limit in /proc/%d/limits" % pid)


class NofileLimit(unittest.TestCase):
    def serve(self, max_connections):
        return RoostServer(listeners=("imap",), preexec_fn=low_limits,
                           conf={"limits": {"max_connections": str(max_connections)}})

    def test_raised_to_hard_limit(self):
        with self.serve(100) as srv:
            self.assertEqual(nofile(srv.proc.pid), (HARD, HARD))
            self.assertNotIn("event=nofile_limit", srv.log())

    def test_warns_when_max_connections_cannot_be_reached(self):
        with self.serve(5000) as srv:
            self.assertEqual(nofile(srv.proc.pid), (HARD, HARD))
            warnings = [l for l in srv.log().splitlines() if "event=nofile_limit" in l]
            self.assertEqual(len(warnings), 1, srv.log())
            self.assertIn("limit=%d max_connections=5000" % HARD, warnings[0])
            self.assertIn("LimitNOFILE", warnings[0])


if __name__ == "__main__":
    unittest.main()
