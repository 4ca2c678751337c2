"""imapflow (Node.js) as a modern client: STARTTLS and implicit TLS, list,
status, fetch envelope/bodystructure/source, search, move, append and an
IDLE notification. imapflow is installed into tests/integration/node_modules
with npm when missing; the test skips when node/npm are unavailable."""
import json
import os
import shutil
import subprocess
import unittest

from roosttest import RoostServer

HERE = os.path.dirname(os.path.abspath(__file__))


def ensure_imapflow():
    if os.path.isdir(os.path.join(HERE, "node_modules", "imapflow")):
        return True
    if shutil.which("npm") is None:
        return False
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix",
                        HERE, "imapflow@2"], capture_output=True, timeout=180)
    return r.returncode == 0


def run_imapflow(test, script, timeout, **env):
    """Run the node script tests/integration/<script> (imapflow from
    node_modules, env's variables such as IMAP_PORT added): the JSON of
    its last output line; the test fails when it exits non-zero."""
    env = dict(os.environ, NODE_PATH=os.path.join(HERE, "node_modules"), **env)
    r = subprocess.run(["node", os.path.join(HERE, script)], env=env, capture_output=True,
                       timeout=timeout, cwd=HERE)
    test.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace")[-3000:])
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


@unittest.skipIf(shutil.which("node") is None, "node not installed")
class TestImapflow(unittest.TestCase):
    def test_imapflow(self):
        if not ensure_imapflow():
            self.skipTest("imapflow could not be installed with npm")
        with RoostServer(listeners=("imap", "imaps")) as srv:
            out = run_imapflow(self, "imap_imapflow.js", 90, IMAP_PORT=str(srv.port("imap")),
                               IMAPS_PORT=str(srv.port("imaps")))
            self.assertTrue(out["starttls"])
            uses = dict((p, u) for p, u in out["list"])
            self.assertEqual(uses.get("Sent"), "\\Sent")
            self.assertEqual(uses.get("Trash"), "\\Trash")
            self.assertIn("INBOX", uses)
            self.assertEqual(out["status"]["messages"], 1)
            self.assertEqual(out["envelopeSubject"], "imapflow test")
            self.assertEqual(out["from"], "ann@example.org")
            self.assertEqual(out["bodyType"], "text/plain")
            self.assertIn("\\Flagged", out["flags"])
            self.assertEqual(out["search"], [1])
            self.assertEqual(out["searchNone"], [])
            self.assertEqual(out["moved"], 1)
            self.assertTrue(out["implicitTls"])
            self.assertEqual(out["idleExists"], 2)

    def test_imapflow_qresync(self):
        """imapflow with qresync: ENABLE, HIGHESTMODSEQ, VANISHED as expunge
        events, FETCH CHANGEDSINCE."""
        if not ensure_imapflow():
            self.skipTest("imapflow could not be installed with npm")
        with RoostServer(listeners=("imap",)) as srv:
            out = run_imapflow(self, "imap_imapflow_sync.js", 60, IMAP_PORT=str(srv.port("imap")))
            self.assertIn("QRESYNC", out["enabled"])
            self.assertGreater(int(out["highestModseq"]), 0)
            # the server sends "* VANISHED 3" once (test_imap_sync checks
            # the wire); imapflow 2 may emit its expunge event twice
            self.assertEqual(set(e["uid"] for e in out["expunged"]), {3})
            self.assertTrue(all(e["vanished"] for e in out["expunged"]))
            self.assertEqual([(m["uid"], m["seen"]) for m in out["changed"]], [(2, True)])


if __name__ == "__main__":
    unittest.main()
