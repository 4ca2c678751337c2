"""Authentication through a real server: the shared SASL module as SMTP
submission uses it (PLAIN, LOGIN, SCRAM-SHA-256 with a client written here),
password schemes from the CLI and from a migrated Dovecot file, and the
plaintext refusal on unencrypted non-loopback connections."""
import base64
import hashlib
import hmac
import imaplib
import os
import poplib
import smtplib
import socket
import subprocess
import unittest

import roosttest

FAST = {"fail_delay_initial": "1", "fail_delay_max": "1"}


class Smtp:
    """A line-level SMTP client, enough to drive AUTH by hand."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.sock.makefile("rb")
        self.reply()
        self.send("EHLO client.test")
        self.ehlo = self.reply()

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def reply(self):
        lines = []
        while True:
            line = self.f.readline().decode().rstrip("\r\n")
            if not line:
                raise AssertionError("connection closed after %r" % lines)
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines

    def close(self):
        try:
            self.send("QUIT")
            self.reply()
        except (OSError, AssertionError):
            pass
        self.sock.close()


def b64(data):
    return base64.b64encode(data).decode()


def scram_login(port, user, password, client_nonce="rOprNGfwEbeRWgbNEkqO"):
    """RFC 5802 client over SMTP AUTH; returns the final reply code."""
    c = Smtp(port)
    try:
        bare = "n=%s,r=%s" % (user.replace("=", "=3D").replace(",", "=2C"), client_nonce)
        c.send("AUTH SCRAM-SHA-256 " + b64(("n,," + bare).encode()))
        rep = c.reply()[-1]
        if not rep.startswith("334 "):
            return int(rep[:3])
        server_first = base64.b64decode(rep[4:]).decode()
        fields = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert fields["r"].startswith(client_nonce)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]),
                                     int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        final_wo_proof = "c=biws,r=" + fields["r"]
        auth_message = ",".join((bare, server_first, final_wo_proof)).encode()
        sig = hmac.new(stored_key, auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        c.send(b64((final_wo_proof + ",p=" + b64(proof)).encode()))
        rep = c.reply()[-1]
        if not rep.startswith("334 "):
            return int(rep[:3])
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        expect = "v=" + b64(hmac.new(server_key, auth_message, "sha256").digest())
        assert base64.b64decode(rep[4:]).decode() == expect, "bad server signature"
        c.send("")
        return int(c.reply()[-1][:3])
    finally:
        c.close()


def smtp_login(port, user, password, host="127.0.0.1"):
    with smtplib.SMTP(host, port, timeout=30) as c:
        c.ehlo()
        try:
            c.login(user, password)
            return True
        except smtplib.SMTPAuthenticationError:
            return False


def plain_login(port, user, password):
    """AUTH PLAIN with UTF-8 bytes (smtplib only sends ASCII)."""
    c = Smtp(port)
    try:
        c.send("AUTH PLAIN " + b64(b"\0" + user.encode() + b"\0" + password.encode()))
        return c.reply()[-1].startswith("235")
    finally:
        c.close()


class TestScram(unittest.TestCase):
    def test_scram_sha_256(self):
        conf = {"auth": dict(FAST, password_scheme="SCRAM-SHA-256")}
        with roosttest.RoostServer(listeners=("submission",), conf=conf) as srv:
            with open(os.path.join(srv.data_dir, "passwd")) as f:
                self.assertIn("alice@example.org:{SCRAM-SHA-256}4096,", f.read())
            port = srv.port("submission")
            c = Smtp(port)
            auth = [l for l in c.ehlo if l[4:].startswith("AUTH ")]
            c.close()
            if not auth:
                self.skipTest("submission offers no AUTH in this build")
            self.assertEqual(auth[0][4:], "AUTH SCRAM-SHA-256 PLAIN LOGIN")
            self.assertEqual(scram_login(port, "alice@example.org", "alice-secret"), 235)
            self.assertEqual(scram_login(port, "Alice@Example.ORG", "alice-secret"), 235)
            self.assertEqual(scram_login(port, "alice@example.org", "wrong"), 535)
            self.assertEqual(scram_login(port, "nobody@example.org", "x"), 535)
            # The same stored keys verify PLAIN and LOGIN.
            self.assertTrue(smtp_login(port, "bob@example.org", "bob-secret"))
            self.assertIn("user=alice@example.org", srv.log())
            self.assertNotIn("alice-secret", srv.log())

    def test_scram_not_offered_by_default(self):
        with roosttest.RoostServer(listeners=("submission",), conf={"auth": FAST}) as srv:
            port = srv.port("submission")
            c = Smtp(port)
            try:
                auth = [l for l in c.ehlo if l[4:].startswith("AUTH ")]
                if not auth:
                    self.skipTest("submission offers no AUTH in this build")
                self.assertEqual(auth[0][4:], "AUTH PLAIN LOGIN")
                c.send("AUTH SCRAM-SHA-256")
                self.assertEqual(c.reply()[-1][:3], "504")
            finally:
                c.close()


def local_non_loopback_address():
    """An address of this host that is not loopback, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


class TestPlaintextPolicy(unittest.TestCase):
    def run_server(self, auth_conf):
        addr = local_non_loopback_address()
        if addr is None:
            self.skipTest("no non-loopback address on this host")
        port = roosttest.free_port()
        conf = {"auth": dict(FAST, **auth_conf), "listen": {"submission": "*:%d" % port}}
        srv = roosttest.RoostServer(listeners=(), conf=conf)
        srv.start()
        if not roosttest.wait_port(port):
            srv.kill()
            srv.cleanup()
            raise AssertionError("server did not listen:\n" + srv.log())
        return srv, addr, port

    def test_refused_off_loopback_without_tls(self):
        srv, addr, port = self.run_server({})
        try:
            with smtplib.SMTP(addr, port, timeout=30) as c:
                c.ehlo()
                self.assertNotIn("PLAIN", c.esmtp_features.get("auth", ""))
                code, _ = c.docmd("AUTH", "PLAIN " + b64(b"\0alice@example.org\0alice-secret"))
                self.assertNotEqual(code, 235)
                # After STARTTLS the same login works.
                c.starttls()
                c.ehlo()
                self.assertIn("PLAIN", c.esmtp_features.get("auth", ""))
                c.login("alice@example.org", "alice-secret")
            srv.stop()
        finally:
            srv.kill()
            srv.cleanup()

    def test_allowed_when_configured(self):
        srv, addr, port = self.run_server({"plaintext_insecure": "yes"})
        try:
            self.assertTrue(smtp_login(port, "alice@example.org", "alice-secret", host=addr))
            srv.stop()
        finally:
            srv.kill()
            srv.cleanup()


class ScramClient:
    """RFC 5802 client as an imaplib.authenticate() callback."""

    def __init__(self, user, password, nonce="imapClientNonce42"):
        self.user, self.password, self.nonce = user, password, nonce
        self.step = 0
        self.verified = False

    def __call__(self, challenge):
        self.step += 1
        if self.step == 1:
            self.bare = "n=%s,r=%s" % (self.user, self.nonce)
            return ("n,," + self.bare).encode()
        if self.step == 2:
            server_first = challenge.decode()
            f = dict(kv.split("=", 1) for kv in server_first.split(","))
            self.salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(),
                                              base64.b64decode(f["s"]), int(f["i"]))
            client_key = hmac.new(self.salted, b"Client Key", "sha256").digest()
            final_wo_proof = "c=biws,r=" + f["r"]
            self.auth_message = ",".join((self.bare, server_first, final_wo_proof)).encode()
            sig = hmac.new(hashlib.sha256(client_key).digest(), self.auth_message,
                           "sha256").digest()
            return (final_wo_proof + ",p=" +
                    b64(bytes(a ^ b for a, b in zip(client_key, sig)))).encode()
        server_key = hmac.new(self.salted, b"Server Key", "sha256").digest()
        expect = "v=" + b64(hmac.new(server_key, self.auth_message, "sha256").digest())
        self.verified = challenge.decode() == expect
        return b""


class TestImap(unittest.TestCase):
    def test_imap_mechanisms(self):
        conf = {"auth": dict(FAST, password_scheme="SCRAM-SHA-256")}
        with roosttest.RoostServer(listeners=("imap",), conf=conf) as srv:
            m = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
            self.assertIn("AUTH=SCRAM-SHA-256", m.capabilities)
            client = ScramClient("alice@example.org", "alice-secret")
            typ, _ = m.authenticate("SCRAM-SHA-256", client)
            self.assertEqual(typ, "OK")
            self.assertTrue(client.verified)
            m.logout()

            m = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
            with self.assertRaises(imaplib.IMAP4.error):
                m.authenticate("SCRAM-SHA-256", ScramClient("alice@example.org", "nope"))
            self.assertEqual(m.login("bob@example.org", "bob-secret")[0], "OK")
            m.logout()


class TestSchemes(unittest.TestCase):
    def test_schemes_from_cli(self):
        """Each scheme the CLI can write logs in through PLAIN."""
        for scheme in ("SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "YESCRYPT"):
            conf = {"auth": dict(FAST, password_scheme=scheme)}
            with roosttest.RoostServer(listeners=("submission",), conf=conf,
                                       users={"u@example.org": "pw-" + scheme}) as srv:
                with open(os.path.join(srv.data_dir, "passwd")) as f:
                    self.assertIn("{%s}" % scheme, f.read())
                self.assertTrue(smtp_login(srv.port("submission"), "u@example.org",
                                           "pw-" + scheme), scheme)

    def test_migrated_dovecot_file(self):
        """A hand-written Dovecot passwd-file with several schemes and comments."""
        srv = roosttest.RoostServer(listeners=("submission",), conf={"auth": FAST}, users={})
        srv.dir = None
        try:
            srv.start()
            with open(os.path.join(srv.data_dir, "passwd"), "w") as f:
                f.write("# migrated from dovecot\n"
                        "md5@example.org:{MD5-CRYPT}$1$saltsalt$ERNpRN/8OUFOCXVDM0pqE0"
                        ":1000:1000::/home/md5::\n"
                        "ssha@example.org:{SSHA}uJDd0BIdJ9Z7yDCZNWdgYeb33+cBAgME\n"
                        "blf@example.org:{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf"
                        "/oeuTqixKmWdcYUh4Hjl0a::::::\n")
            port = srv.port("submission")
            self.assertTrue(plain_login(port, "md5@example.org", "p\u00e4ssword1"))
            self.assertTrue(smtp_login(port, "ssha@example.org", "secret"))
            self.assertTrue(smtp_login(port, "blf@example.org", "secret"))
            self.assertFalse(smtp_login(port, "blf@example.org", "Secret"))
            srv.stop()
        finally:
            srv.kill()
            srv.cleanup()


class TestUserNames(unittest.TestCase):
    """`roost user` refuses the names storage would refuse (one rule for both),
    and a UTF-8 name it accepts has a working store."""

    def test_cli_applies_the_storage_rule(self):
        conf = {"auth": FAST}
        with roosttest.RoostServer(listeners=("pop3",), conf=conf, users={}) as srv:
            passwd = os.path.join(srv.data_dir, "passwd")
            for bad in (b"\xff\xfe", b"j\xf6rg@example.org", b"a\xc2\x85b@example.org",
                        b"\xed\xa0\x80@example.org", b"a b@example.org", b"a:b@example.org"):
                res = subprocess.run([srv.binary, "user", "add", bad, "--config", srv.conf_path],
                                     input=b"pw\n", capture_output=True, timeout=60)
                self.assertEqual(res.returncode, 2, bad)
                self.assertIn(b"invalid user name", res.stderr)
                self.assertFalse(os.path.exists(passwd) and bad in open(passwd, "rb").read())
            res = subprocess.run([srv.binary, "user", "add", b"\xff\xfe", "--config",
                                  srv.conf_path], input=b"pw\n", capture_output=True, timeout=60)
            # The name is shown escaped, not as raw bytes on the terminal.
            self.assertIn(b'"\\xff\\xfe"', res.stderr)
            name = "j\u00f6rg@example.org"
            srv.add_user(name, "utf8-secret")
            self.assertIn(name, srv.cli("user", "list").stdout)
            # POP3 opens the store at login: the name is one storage takes.
            c = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=30)
            c._putcmd("USER " + name)
            self.assertTrue(c._getresp().startswith(b"+OK"))
            self.assertTrue(c.pass_("utf8-secret").startswith(b"+OK"))
            c.quit()

    def test_passwd_file_with_a_name_storage_refuses(self):
        conf = {"auth": FAST}
        with roosttest.RoostServer(listeners=("pop3",), conf=conf, users={}) as srv:
            with open(os.path.join(srv.data_dir, "passwd"), "wb") as f:
                f.write(b"ok@example.org:{PLAIN}x\n\xff\xfe@example.org:{PLAIN}x\n")
            res = srv.cli("user", "list", check=False)
            self.assertEqual(res.returncode, 1)
            self.assertIn("line=2", res.stderr)


if __name__ == "__main__":
    unittest.main()
