"""One log dialect: every log call in the server's sources starts its line
with event=name in snake_case, the connection's fields (conn=, peer=,
proto=, user=) come only from conn_log(), and the Maildir backend's repairs
and errors are logged in it with quoted paths."""
import glob
import imaplib
import os
import re
import unittest

from roosttest import ROOT, RoostServer, wait_log

LAYERS = ("core", "backends", "services", "protocols", "cli")
# conn_log() writes the connection's fields; only it (in core/conn.c) spells them.
PREFIX_HOME = os.path.join("core", "conn.c")
CONN_FIELD = re.compile(r"(?<![a-z_])conn=")
EVENT = re.compile(r"(?<![a-z_])event=([^ \\\"]*)")
SNAKE = re.compile(r"^(?:[a-z][a-z0-9]*(?:_[a-z0-9]+)*|%s)$")

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


def sources():
    for layer in LAYERS:
        for ext in ("c", "h"):
            yield from sorted(glob.glob(os.path.join(ROOT, layer, "**", "*." + ext),
                                        recursive=True))


def formats():
    """(where, fmt, stmt) of each log call whose format is a literal."""
    for path in sources():
        if not path.endswith(".c"):
            continue
        for line, stmt in log_calls(path):
            if '"' not in stmt:
                continue  # passes a format built elsewhere
            fmt = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', stmt))
            where = "%s:%d: %s" % (os.path.relpath(path, ROOT), line, " ".join(stmt.split())[:120])
            yield os.path.relpath(path, ROOT), where, fmt, stmt


class LogDialectTest(unittest.TestCase):
    def test_every_log_call_starts_with_its_event(self):
        bad = []
        for rel, where, fmt, stmt in formats():
            # conn_log itself writes the caller's event, its prefix, the rest.
            if rel == PREFIX_HOME and "log_msg(level" in stmt:
                continue
            if not fmt.startswith("event="):
                bad.append(where)
        self.assertEqual(bad, [], "log lines not starting with event=:\n" + "\n".join(bad))

    def test_no_hand_made_connection_prefix(self):
        """conn=, and the connection id, reach a line only through conn_log()."""
        bad = []
        for rel, where, fmt, stmt in formats():
            if rel == PREFIX_HOME:
                continue
            if CONN_FIELD.search(fmt) or "conn_id(" in stmt:
                bad.append(where)
        self.assertEqual(bad, [], "hand-made conn= prefixes (use conn_log()):\n" +
                         "\n".join(bad))

    def test_event_names_are_snake_case(self):
        """Every event=name spelled in a string of the sources (log formats,
        names passed to them, comments' examples) is snake_case."""
        bad = []
        for path in sources():
            with open(path, errors="replace") as f:
                for n, text in enumerate(f, 1):
                    for m in EVENT.finditer(text):
                        if m.group(1) and not SNAKE.match(m.group(1)):
                            bad.append("%s:%d: event=%s" % (os.path.relpath(path, ROOT), n,
                                                            m.group(1)))
        self.assertEqual(bad, [], "event names not in snake_case:\n" + "\n".join(bad))

    def test_the_checks_catch_what_they_must(self):
        """The scanners above see a hand-made prefix and a kebab-case name."""
        stmt = 'log_info("conn=%llu proto=smtp event=too-many-errors", (unsigned long long)conn_id(c));'
        fmt = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', stmt))
        self.assertTrue(CONN_FIELD.search(fmt))
        self.assertFalse(fmt.startswith("event="))
        self.assertFalse(SNAKE.match(EVENT.search(fmt).group(1)))
        self.assertTrue(SNAKE.match(EVENT.search('"event=too_many_errors "').group(1)))
        self.assertFalse(CONN_FIELD.search("event=compress_end conn_bytes=1"))

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
