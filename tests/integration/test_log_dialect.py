"""One log dialect: every log call in the server's sources starts its line
with event=name (the connection's fields come from conn_log()), and the
Maildir backend's repairs and errors are logged in it with quoted paths."""
import glob
import imaplib
import os
import re
import unittest

from roosttest import ROOT, RoostServer, wait_log

CALL = re.compile(r"\b(log_(?:info|warn|error|debug|msg)|fatal|conn_log)\s*\(")


def log_calls(path):
    """(line, statement) of each log call in a C file (string literals and
    all, up to the closing ');')."""
    with open(path, errors="replace") as f:
        s = f.read()
    for m in CALL.finditer(s):
        # A definition or declaration is not a call.
        before = s[s.rfind("\n", 0, m.start()) + 1:m.start()]
        if before.strip() in ("void", "int") or before.strip().endswith("*"):
            continue
        end = s.find(");", m.end())
        yield s.count("\n", 0, m.start()) + 1, s[m.start():end + 2]


class LogDialectTest(unittest.TestCase):
    def test_every_log_call_names_its_event(self):
        bad = []
        for layer in ("core", "backends", "services", "protocols", "cli"):
            for path in sorted(glob.glob(os.path.join(ROOT, layer, "**", "*.c"),
                                         recursive=True)):
                for line, stmt in log_calls(path):
                    if '"' not in stmt:
                        continue  # passes a format built elsewhere
                    fmt = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', stmt))
                    # conn_log itself writes its prefix and the caller's text.
                    if os.path.basename(path) == "conn.c" and "log_msg(level" in stmt:
                        continue
                    if "event=" not in fmt:
                        bad.append("%s:%d: %s" % (os.path.relpath(path, ROOT), line,
                                                  " ".join(stmt.split())[:120]))
        self.assertEqual(bad, [], "log lines outside the event= dialect:\n" + "\n".join(bad))

    def test_maildir_repair_is_logged_in_the_dialect(self):
        with RoostServer(backend="maildir", listeners=("smtp", "imap")) as srv:
            srv.cli("deliver", "-a", "alice@example.org", input="Subject: a\r\n\r\nx\r\n")
            lists = [p for p in glob.glob(os.path.join(srv.data_dir, "**", "dovecot-uidlist"),
                                          recursive=True) if "alice" in p]
            self.assertTrue(lists, os.listdir(srv.data_dir))
            with open(lists[0], "a") as f:
                f.write("garbage record \x01 here\n")
            m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=15)
            m.login("alice@example.org", "alice-secret")
            typ, data = m.select("INBOX")
            self.assertEqual(typ, "OK")
            self.assertEqual(data, [b"1"])
            m.logout()
            self.assertTrue(wait_log(srv, r"event=maildir_repair path=\S+ "
                                     r"file=dovecot-uidlist what=bad_record action=skipped"),
                            srv.log()[-3000:])
            self.assertNotRegex(srv.log(), r"(?m)^\S+ \w+ maildir: ")


if __name__ == "__main__":
    unittest.main()
