"""Each protocol's answer to a command it knows but does not allow in the
session's state, and to a command of the other dialect (SMTP/LMTP), as the
client sees it: the command tables decide these before any command runs."""
import unittest

from roosttest import BACKENDS, LineClient, SharedServer

ALICE, PW = "alice@example.org", "alice-secret"


class Lines(LineClient):
    """Text lines: send() a command line, line() the next reply line."""

    def line(self):
        return self.crlf_line().decode("utf-8", "replace")

    def send(self, text):
        super().send(text.encode() + b"\r\n")

    def smtp(self, text):
        """The last line of a possibly multi-line SMTP reply."""
        self.send(text)
        while True:
            line = self.line()
            if line[3:4] != "-":
                return line

    def cmd(self, text):
        self.send(text)
        return self.line()

    def tagged(self, tag, text):
        """IMAP: the tagged line, untagged ones skipped."""
        self.send("%s %s" % (tag, text))
        while True:
            line = self.line()
            if line.startswith(tag + " "):
                return line

    def close(self):
        self.sock.close()


class CommandStates(SharedServer, unittest.TestCase):
    server_options = {"backend": BACKENDS[0],
                      "listeners": ("smtp", "submission", "lmtp", "imap", "pop3")}

    def connect(self, listener):
        c = Lines(self.srv.port(listener))
        self.addCleanup(c.close)
        c.line()  # greeting
        return c

    def test_imap(self):
        c = self.connect("imap")
        self.assertEqual(c.tagged("a1", "SELECT INBOX"), "a1 BAD Log in first")
        self.assertEqual(c.tagged("a2", "FETCH 1 FLAGS"), "a2 BAD No mailbox selected")
        self.assertEqual(c.tagged("a3", "UID LOGIN x y"), "a3 BAD Unknown command UID LOGIN")
        self.assertEqual(c.tagged("a4", "XYZZY"), "a4 BAD Unknown command XYZZY")
        self.assertTrue(c.tagged("a5", 'LOGIN %s "%s"' % (ALICE, PW)).startswith("a5 OK"))
        self.assertEqual(c.tagged("a6", "LOGIN x y"), "a6 BAD Already authenticated")
        self.assertEqual(c.tagged("a7", "UID FETCH 1 FLAGS"), "a7 BAD No mailbox selected")
        self.assertTrue(c.tagged("a8", "SELECT INBOX").startswith("a8 OK"))
        self.assertTrue(c.tagged("a9", "UID FETCH 1:* FLAGS").startswith("a9 OK"))
        self.assertEqual(c.tagged("b1", "UID CLOSE"), "b1 BAD Unknown command UID CLOSE")
        self.assertTrue(c.tagged("b2", "LOGOUT").startswith("b2 OK"))

    def test_imap_no_arguments(self):
        """The rows of commands without arguments carry one check step: it
        answers BAD with the command's name, whatever case the client used,
        and the command does not run (the state stays)."""
        c = self.connect("imap")
        self.assertEqual(c.tagged("n1", "noop x"), "n1 BAD NOOP takes no arguments")
        self.assertEqual(c.tagged("n2", "CAPABILITY x"), "n2 BAD CAPABILITY takes no arguments")
        self.assertEqual(c.tagged("n3", "STARTTLS now"), "n3 BAD STARTTLS takes no arguments")
        self.assertEqual(c.tagged("n4", "LOGOUT x"), "n4 BAD LOGOUT takes no arguments")
        self.assertTrue(c.tagged("n5", 'LOGIN %s "%s"' % (ALICE, PW)).startswith("n5 OK"))
        self.assertEqual(c.tagged("n6", "NAMESPACE x"), "n6 BAD NAMESPACE takes no arguments")
        self.assertEqual(c.tagged("n7", "IDLE x"), "n7 BAD IDLE takes no arguments")
        self.assertTrue(c.tagged("n8", "SELECT INBOX").startswith("n8 OK"))
        self.assertEqual(c.tagged("n9", "Check (x)"), "n9 BAD CHECK takes no arguments")
        self.assertEqual(c.tagged("m1", "CLOSE x"), "m1 BAD CLOSE takes no arguments")
        self.assertEqual(c.tagged("m2", "UNSELECT x"), "m2 BAD UNSELECT takes no arguments")
        self.assertTrue(c.tagged("m3", "FETCH 1:* FLAGS").startswith("m3 OK"))  # still selected
        self.assertEqual(c.tagged("m4", "UNAUTHENTICATE x"),
                         "m4 BAD UNAUTHENTICATE takes no arguments")
        self.assertTrue(c.tagged("m5", "NOOP").startswith("m5 OK"))
        self.assertTrue(c.tagged("m6", "CHECK").startswith("m6 OK"))
        self.assertTrue(c.tagged("m7", "UNSELECT").startswith("m7 OK"))
        self.assertTrue(c.tagged("m8", "LOGOUT").startswith("m8 OK"))

    def test_pop3(self):
        c = self.connect("pop3")
        self.assertEqual(c.cmd("STAT"), "-ERR Log in first.")
        self.assertEqual(c.cmd("XTND"), "-ERR Unknown command.")
        self.assertTrue(c.cmd("CAPA").startswith("+OK"))
        while c.line() != ".":
            pass
        self.assertTrue(c.cmd("USER " + ALICE).startswith("+OK"))
        self.assertTrue(c.cmd("PASS " + PW).startswith("+OK"))
        self.assertEqual(c.cmd("USER " + ALICE), "-ERR Command not valid in this state.")
        self.assertEqual(c.cmd("STLS"), "-ERR Command not valid in this state.")
        self.assertTrue(c.cmd("STAT").startswith("+OK"))
        self.assertTrue(c.cmd("QUIT").startswith("+OK"))

    def test_smtp(self):
        c = self.connect("smtp")
        self.assertEqual(c.smtp("MAIL FROM:<a@remote.example>"), "503 5.5.1 Send EHLO/HELO first")
        self.assertEqual(c.smtp("RCPT TO:<%s>" % ALICE), "503 5.5.1 Need MAIL first")
        self.assertEqual(c.smtp("LHLO x"), "500 5.5.1 Command unrecognized: LHLO")
        self.assertTrue(c.smtp("EHLO x").startswith("250 "))
        self.assertEqual(c.smtp("RCPT TO:<%s>" % ALICE), "503 5.5.1 Need MAIL first")
        self.assertTrue(c.smtp("MAIL FROM:<a@remote.example>").startswith("250 "))
        self.assertEqual(c.smtp("MAIL FROM:<a@remote.example>"), "503 5.5.1 Nested MAIL command")
        self.assertEqual(c.smtp("DATA"), "554 5.5.1 No valid recipients")
        self.assertTrue(c.smtp("RCPT TO:<%s>" % ALICE).startswith("250 "))
        self.assertTrue(c.smtp("BDAT 0").startswith("250 "))
        self.assertEqual(c.smtp("RCPT TO:<%s>" % ALICE), "503 5.5.1 RCPT not allowed after BDAT")
        self.assertEqual(c.smtp("DATA"), "503 5.5.1 DATA not allowed in a BDAT transaction")
        self.assertTrue(c.smtp("QUIT").startswith("221 "))

    def test_submission(self):
        c = self.connect("submission")
        self.assertEqual(c.smtp("MAIL FROM:<%s>" % ALICE), "503 5.5.1 Send EHLO/HELO first")
        self.assertTrue(c.smtp("EHLO x").startswith("250 "))
        self.assertEqual(c.smtp("MAIL FROM:<%s>" % ALICE), "530 5.7.0 Authentication required")
        self.assertTrue(c.smtp("QUIT").startswith("221 "))

    def test_lmtp(self):
        c = self.connect("lmtp")
        self.assertEqual(c.smtp("MAIL FROM:<a@remote.example>"), "503 5.5.1 Send LHLO first")
        for verb in ("EHLO x", "HELO x", "STARTTLS", "AUTH PLAIN"):
            self.assertEqual(c.smtp(verb), "500 5.5.1 Command unrecognized: " + verb.split()[0])
        self.assertTrue(c.smtp("LHLO x").startswith("250 "))
        self.assertEqual(c.smtp("HELP"),
                         "214 2.0.0 Commands: LHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY")
        self.assertTrue(c.smtp("MAIL FROM:<a@remote.example>").startswith("250 "))
        self.assertEqual(c.smtp("DATA"), "503 5.5.1 No valid recipients")
        self.assertTrue(c.smtp("QUIT").startswith("221 "))


if __name__ == "__main__":
    unittest.main()
