"""The server runtime (event loops, workers, connections, TLS, limits,
timeouts, shutdown) driven through build/roost-testd's line protocol
(tests/runtime/testd_proto.c) over real sockets.

The [listen] keys imap and imaps of the test config are the test protocol's
plaintext and implicit-TLS listeners.
"""
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from roosttest import ROOST_TESTD, LineClient, RoostServer, SharedServer, wait_log, wait_unix

GREETING = b"+OK roost-testd ready\r\n"


def testd_args(conf=None):
    """RoostServer's arguments for a roost-testd server, conf's sections
    laid over the tests' limits."""
    base = {"limits": {"max_connections_per_ip": "2000", "max_line_preauth": "1024",
                       "max_line": "4096", "command_timeout": "20"}}
    for section, keys in (conf or {}).items():
        base.setdefault(section, {}).update(keys)
    return {"binary": ROOST_TESTD, "users": {}, "listeners": ("imap", "imaps"), "conf": base}


def testd(conf=None):
    return RoostServer(**testd_args(conf))


class Client(LineClient):
    """A line client on a plain socket (optionally upgraded to TLS)."""

    def __init__(self, port, timeout=10.0, greet=True):
        super().__init__(port, timeout=timeout)
        if greet:
            line = self.line()
            assert line == GREETING, line

    def line(self):
        while b"\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\n") + 1
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def cmd(self, text):
        self.send(text.encode() + b"\r\n")
        return self.line()

    def rest(self):
        """Everything until the server closes."""
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        out, self.buf = self.buf, b""
        return out

    def closed_by_peer(self):
        try:
            d = self.sock.recv(1)
        except ConnectionResetError:
            return True
        return d == b""


def big_payload(n):
    pat = bytes(ord("a") + i % 26 for i in range(8192))
    whole, part = divmod(n, 8192)
    return pat * whole + pat[:part]


def openssl_client(args, data, timeout=20):
    """Run openssl s_client with data on stdin; its stdout+stderr."""
    res = subprocess.run(["openssl", "s_client", "-quiet", "-ign_eof"] + args,
                         input=data, capture_output=True, timeout=timeout)
    return res.stdout + res.stderr


class RuntimeShared(SharedServer, unittest.TestCase):
    """Tests that share one server."""

    @classmethod
    def server_args(cls):
        return testd_args()

    @classmethod
    def server_started(cls):
        cls.port = cls.srv.port("imap")
        cls.tls_port = cls.srv.port("imaps")

    def test_basic_commands(self):
        c = Client(self.port)
        self.assertEqual(c.cmd("ECHO hello world"), b"+OK hello world\r\n")
        info = c.cmd("INFO")
        self.assertIn(b"tls=none", info)
        self.assertIn(b"secure=1", info)     # loopback counts as secure
        self.assertIn(b"listener=test", info)
        self.assertEqual(c.cmd("NOSUCH"), b"-ERR unknown command\r\n")
        self.assertEqual(c.cmd("QUIT"), b"+OK bye\r\n")
        self.assertTrue(c.closed_by_peer())
        c.close()

    def test_pipelined_commands_in_order(self):
        c = Client(self.port)
        c.send(b"".join(b"ECHO %d\r\n" % i for i in range(200)) + b"QUIT\r\n")
        for i in range(200):
            self.assertEqual(c.line(), b"+OK %d\r\n" % i)
        self.assertEqual(c.line(), b"+OK bye\r\n")
        c.close()

    def test_500_concurrent_connections(self):
        clients = []
        try:
            for _ in range(500):
                clients.append(Client(self.port, greet=False))
            for c in clients:
                self.assertEqual(c.line(), GREETING)
            for i, c in enumerate(clients):
                c.send(b"ECHO n%d\r\n" % i)
            for i, c in enumerate(clients):
                self.assertEqual(c.line(), b"+OK n%d\r\n" % i)
        finally:
            for c in clients:
                c.close()

    def test_commands_run_in_parallel(self):
        # Two SLEEPs on two connections overlap on the worker pool; a
        # third connection is served meanwhile.
        a, b, c = Client(self.port), Client(self.port), Client(self.port)
        a.send(b"SLEEP 500\r\n")
        b.send(b"SLEEP 500\r\n")
        self.assertEqual(c.cmd("ECHO meanwhile"), b"+OK meanwhile\r\n")
        self.assertEqual(a.line(), b"+OK slept\r\n")
        self.assertEqual(b.line(), b"+OK slept\r\n")
        for x in (a, b, c):
            x.close()

    def test_big_output_streams(self):
        c = Client(self.port)
        n = 8 * 1024 * 1024 + 123
        c.send(b"BIG %d\r\n" % n)
        self.assertEqual(c.line(), b"+OK %d\r\n" % n)
        self.assertEqual(c.exact(n + 2), big_payload(n) + b"\r\n")
        self.assertEqual(c.cmd("ECHO after"), b"+OK after\r\n")
        c.close()

    def test_slow_reader_big_output(self):
        # The client reads slowly: the loop flushes as it reads (no worker
        # waits on the socket) and the stream stays intact.
        c = Client(self.port)
        n = 4 * 1024 * 1024
        c.send(b"BIG %d\r\n" % n)
        got = b""
        header = c.line()
        self.assertEqual(header, b"+OK %d\r\n" % n)
        while len(got) < n + 2:
            got += c.exact(min(65536, n + 2 - len(got)))
            time.sleep(0.005)
        self.assertEqual(got, big_payload(n) + b"\r\n")
        c.close()

    def test_slow_client_byte_at_a_time(self):
        c = Client(self.port)
        other = Client(self.port)
        for b in b"ECHO slowly\r\n":
            c.send(bytes([b]))
            time.sleep(0.01)
            # Others are served while the partial command is pending.
        self.assertEqual(other.cmd("ECHO other"), b"+OK other\r\n")
        self.assertEqual(c.line(), b"+OK slowly\r\n")
        c.close()
        other.close()

    def test_vanishing_clients(self):
        # Gone with a partial command buffered.
        a = Client(self.port)
        a.send(b"ECHO never finish")
        a.close()
        # Gone while its command runs.
        b = Client(self.port)
        b.send(b"SLEEP 200\r\n")
        b.close()
        # Gone in the middle of a large reply (and with an RST).
        c = Client(self.port)
        c.send(b"BIG 50000000\r\n")
        c.line()
        c.exact(100000)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
        # Gone before the greeting was read.
        d = Client(self.port, greet=False)
        d.close()
        time.sleep(0.4)
        e = Client(self.port)
        self.assertEqual(e.cmd("ECHO still here"), b"+OK still here\r\n")
        e.close()

    def test_line_bound_preauth(self):
        c = Client(self.port)
        other = Client(self.port)
        c.send(b"ECHO " + b"x" * 5000)
        self.assertEqual(c.line(), b"-ERR line too long\r\n")
        self.assertTrue(c.closed_by_peer())
        c.close()
        # A line just under the bound is fine.
        line = "ECHO " + "y" * 900
        self.assertEqual(other.cmd(line), ("+OK " + "y" * 900 + "\r\n").encode())
        other.close()

    def test_line_bound_after_login_and_raise(self):
        c = Client(self.port)
        self.assertEqual(c.cmd("LOGIN alice@example.org"), b"+OK logged in\r\n")
        self.assertIn(b"user=alice@example.org", c.cmd("INFO"))
        # Post-login bound (4096) is larger than the pre-login one (1024).
        self.assertEqual(c.cmd("ECHO " + "z" * 3000)[:8], b"+OK zzzz")
        # A raised bound lasts for one framed unit.
        self.assertEqual(c.cmd("RAISE 100000"), b"+OK raised\r\n")
        self.assertEqual(c.cmd("X" * 60000), b"+OK long 60000\r\n")
        c.send(b"X" * 6000 + b"\r\n")
        self.assertEqual(c.line(), b"-ERR line too long\r\n")
        c.close()

    def test_timer_and_notify_wakeups(self):
        c = Client(self.port)
        self.assertEqual(c.cmd("TIMER 50"), b"+OK timer\r\n")
        self.assertEqual(c.line(), b"* timer\r\n")
        self.assertEqual(c.cmd("NOTIFY 50"), b"+OK notify\r\n")
        self.assertEqual(c.line(), b"* notify\r\n")
        # A wake-up waits for a running command, then arrives.
        c.send(b"NOTIFY 10\r\nSLEEP 200\r\n")
        self.assertEqual(c.line(), b"+OK notify\r\n")
        self.assertEqual(c.line(), b"+OK slept\r\n")
        self.assertEqual(c.line(), b"* notify\r\n")
        # A disarmed timer never fires.
        c.send(b"TIMER 100\r\nTIMER 0\r\n")
        self.assertEqual(c.line(), b"+OK timer\r\n")
        self.assertEqual(c.line(), b"+OK timer\r\n")
        time.sleep(0.3)
        self.assertEqual(c.cmd("ECHO x"), b"+OK x\r\n")
        c.close()

    def test_notify_after_close_is_harmless(self):
        c = Client(self.port)
        self.assertEqual(c.cmd("NOTIFY 100"), b"+OK notify\r\n")
        c.close()
        time.sleep(0.3)
        d = Client(self.port)
        self.assertEqual(d.cmd("ECHO ok"), b"+OK ok\r\n")
        d.close()

    def test_delay_holds_reply(self):
        c = Client(self.port)
        other = Client(self.port)
        c.send(b"DELAY 300\r\nECHO after\r\n")
        self.assertEqual(other.cmd("ECHO free"), b"+OK free\r\n")
        self.assertEqual(c.line(), b"+OK delayed\r\n")
        self.assertEqual(c.line(), b"+OK after\r\n")
        c.close()
        other.close()

    def test_implicit_tls_with_openssl_s_client(self):
        out = openssl_client(["-connect", "127.0.0.1:%d" % self.tls_port],
                             b"INFO\r\nECHO over tls\r\nQUIT\r\n")
        self.assertIn(GREETING, out)
        self.assertRegex(out, rb"\+OK tls=TLSv1\.[23] \S+ secure=1")
        self.assertIn(b"+OK over tls\r\n", out)
        self.assertIn(b"+OK bye\r\n", out)

    def test_implicit_tls_min_version(self):
        out = openssl_client(["-connect", "127.0.0.1:%d" % self.tls_port, "-tls1_1"],
                             b"INFO\r\n")
        self.assertNotIn(b"+OK", out)

    def test_starttls_with_openssl_s_client(self):
        # s_client's pop3 dialect sends STLS, which the test protocol takes.
        out = openssl_client(["-connect", "127.0.0.1:%d" % self.port, "-starttls", "pop3"],
                             b"INFO\r\nQUIT\r\n")
        self.assertRegex(out, rb"\+OK tls=TLSv1\.[23] \S+ secure=1")
        self.assertIn(b"+OK bye\r\n", out)

    def test_starttls_injection_is_not_executed(self):
        c = Client(self.port)
        # STARTTLS and a plaintext command in one packet: the second must
        # be discarded, never run (CVE-2011-0411).
        c.send(b"STARTTLS\r\nECHO injected\r\n")
        self.assertEqual(c.line(), b"+OK begin TLS\r\n")
        self.assertEqual(c.buf, b"")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        tls = ctx.wrap_socket(c.sock, server_hostname="roost.test")
        t = Client.__new__(Client)
        t.sock, t.buf = tls, b""
        self.assertIn(b"tls=TLSv1.3", t.cmd("INFO"))
        self.assertEqual(t.cmd("STARTTLS"), b"-ERR invalid argument\r\n")
        self.assertEqual(t.cmd("QUIT"), b"+OK bye\r\n")
        rest = t.rest()
        self.assertNotIn(b"injected", rest)
        tls.close()

    def test_tls_handshake_garbage(self):
        c = Client(self.tls_port, greet=False)
        c.send(b"this is not tls\r\n" * 10)
        self.assertTrue(c.closed_by_peer())
        c.close()
        d = Client(self.port)
        self.assertEqual(d.cmd("ECHO fine"), b"+OK fine\r\n")
        d.close()

    def test_reply_survives_close_with_unread_input(self):
        # The server closes while the client still sends: the last reply
        # must arrive intact, followed by a clean end of stream (lingering
        # close), not a reset that destroys it.
        for tls in (False, True):
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                c = Client.__new__(Client)
                c.sock = ctx.wrap_socket(
                    socket.create_connection(("127.0.0.1", self.tls_port), timeout=10),
                    server_hostname="roost.test")
                c.buf = b""
                self.assertEqual(c.line(), GREETING)
            else:
                c = Client(self.port)
            c.send(b"QUIT\r\n" + b"ECHO ignored\r\n" * 20000)
            self.assertEqual(c.line(), b"+OK bye\r\n")
            self.assertEqual(c.rest(), b"")
            c.close()
        c = Client(self.port)
        c.send(b"ECHO " + b"x" * 300000)
        self.assertEqual(c.line(), b"-ERR line too long\r\n")
        c.close()

    def test_half_close_still_answers(self):
        c = Client(self.port)
        c.send(b"ECHO one\r\nECHO two\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(c.rest(), b"+OK one\r\n+OK two\r\n")
        c.close()

    def test_self_signed_certificate(self):
        tls_dir = os.path.join(self.srv.data_dir, "tls")
        self.assertEqual(os.stat(os.path.join(tls_dir, "key.pem")).st_mode & 0o777, 0o600)
        out = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName",
                              "-in", os.path.join(tls_dir, "cert.pem")],
                             capture_output=True, timeout=10).stdout
        self.assertIn(b"CN = roost.test", out)
        self.assertIn(b"DNS:localhost", out)
        self.assertIn(b"IP Address:127.0.0.1", out)

    def test_sighup_reloads(self):
        # New certificate files, then SIGHUP: new connections get them.
        tls_dir = os.path.join(self.srv.data_dir, "tls")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=reloaded.test",
                        "-days", "2", "-keyout", os.path.join(tls_dir, "key.new"),
                        "-out", os.path.join(tls_dir, "cert.new")],
                       check=True, capture_output=True, timeout=20)
        os.rename(os.path.join(tls_dir, "key.new"), os.path.join(tls_dir, "key.pem"))
        os.rename(os.path.join(tls_dir, "cert.new"), os.path.join(tls_dir, "cert.pem"))
        self.srv.proc.send_signal(signal.SIGHUP)
        # The reload hook logs event=testd_reload after the certificate's
        # line: wait for both, not the first alone.
        deadline = time.monotonic() + 10
        while "event=testd_reload" not in self.srv.log():
            self.assertLess(time.monotonic(), deadline, "no reload in the log")
            time.sleep(0.05)
        self.assertIn("event=tls_reload status=ok", self.srv.log())
        self.assertIn("event=testd_reload", self.srv.log())
        out = openssl_client(["-connect", "127.0.0.1:%d" % self.tls_port], b"QUIT\r\n")
        self.assertIn(b"+OK bye", out)
        self.assertIn(b"CN = reloaded.test", out)


class RuntimeUnixSocket(unittest.TestCase):
    def test_unix_listener(self):
        sockdir = tempfile.mkdtemp(prefix="roost-unix-")
        path = os.path.join(sockdir, "test.sock")
        with testd({"listen": {"lmtp": "unix:" + path}}):
            self.assertTrue(wait_unix(path), "the unix listener never accepted")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(path)
            c = Client.__new__(Client)
            c.sock, c.buf = s, b""
            self.assertEqual(c.line(), GREETING)
            info = c.cmd("INFO")
            self.assertIn(b"peer=unix", info)
            self.assertIn(b"secure=1", info)
            self.assertIn(b"listener=testu", info)
            c.close()
        self.assertFalse(os.path.exists(path))      # unlinked at exit
        os.rmdir(sockdir)


class RuntimeTimeouts(unittest.TestCase):
    def test_idle_timeouts(self):
        with testd({"limits": {"preauth_idle_timeout": "1", "idle_timeout": "2"}}) as srv:
            port = srv.port("imap")
            a = Client(port)
            self.assertEqual(a.line(), b"-ERR idle timeout\r\n")
            self.assertTrue(a.closed_by_peer())
            a.close()
            # Activity resets the idle timer.
            b = Client(port)
            for _ in range(3):
                time.sleep(0.4)
                self.assertEqual(b.cmd("ECHO x"), b"+OK x\r\n")
            b.close()
            # Server-side wake-ups do not count as client activity.
            d = Client(port)
            self.assertEqual(d.cmd("TIMER 300"), b"+OK timer\r\n")
            self.assertEqual(d.line(), b"* timer\r\n")
            self.assertEqual(d.line(), b"-ERR idle timeout\r\n")
            d.close()
            # The per-connection override (IMAP IDLE style).
            c = Client(port)
            self.assertEqual(c.cmd("IDLE 3"), b"+OK\r\n")
            time.sleep(1.5)
            self.assertEqual(c.cmd("ECHO alive"), b"+OK alive\r\n")
            c.close()
            self.assertIn("event=idle_timeout", srv.log())

    def test_partial_command_timeout(self):
        with testd({"limits": {"preauth_idle_timeout": "30", "command_timeout": "1"}}) as srv:
            c = Client(srv.port("imap"))
            c.send(b"ECHO never ends")
            self.assertEqual(c.line(), b"-ERR idle timeout\r\n")
            self.assertTrue(c.closed_by_peer())
            c.close()
            self.assertIn("event=command_timeout", srv.log())

    def test_tls_handshake_timeout(self):
        with testd({"limits": {"tls_handshake_timeout": "1"}}) as srv:
            c = Client(srv.port("imaps"), greet=False)
            self.assertTrue(c.closed_by_peer())
            c.close()
            self.assertIn("event=tls_handshake_timeout", srv.log())


class RuntimeLimits(unittest.TestCase):
    def hold_to_limit(self, srv, n, refused):
        """n clients held on srv's IMAP port, once the start-up probes (one
        per listener) are gone; one more is closed by the server, which logs
        a line matching refused. Returns the held clients."""
        port = srv.port("imap")
        self.assertTrue(wait_log(srv, r"event=disconnect", 2))
        held = [Client(port) for _ in range(n)]
        extra = Client(port, greet=False)
        self.assertTrue(extra.closed_by_peer())
        extra.close()
        self.assertRegex(srv.log(), refused)
        return held

    def test_per_ip_limit(self):
        with testd({"limits": {"max_connections_per_ip": "5"}}) as srv:
            port = srv.port("imap")
            held = self.hold_to_limit(
                srv, 5, r"event=refused peer=\S+ .*reason=max_connections_per_ip")
            held[0].close()
            deadline = time.monotonic() + 5
            while True:
                again = Client(port, greet=False)
                try:
                    if again.line() == GREETING:
                        break
                except (EOFError, ConnectionResetError):
                    pass
                again.close()
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.1)
            self.assertEqual(again.cmd("ECHO ok"), b"+OK ok\r\n")
            again.close()
            for c in held[1:]:
                c.close()

    def test_out_of_descriptors(self):
        # The server runs with few descriptors: accept fails with EMFILE,
        # the server backs off (no spinning), and serves the waiting clients
        # once descriptors are free again.
        wrapdir = tempfile.mkdtemp(prefix="roost-wrap-")
        wrapper = os.path.join(wrapdir, "testd")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nulimit -n 48\nexec %s \"$@\"\n" % ROOST_TESTD)
        os.chmod(wrapper, 0o755)
        srv = testd()
        srv.binary = wrapper
        try:
            with srv:
                port = srv.port("imap")
                socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
                         for _ in range(60)]
                greeted, waiting = [], []
                time.sleep(0.5)
                for s in socks:
                    s.setblocking(False)
                    try:
                        (greeted if s.recv(100) == GREETING else waiting).append(s)
                    except BlockingIOError:
                        waiting.append(s)
                self.assertTrue(waiting, "every client got a descriptor")
                self.assertIn("event=accept_error", srv.log())
                for s in greeted:
                    s.close()
                for s in waiting:
                    s.settimeout(10)
                    self.assertEqual(s.recv(100), GREETING)
                    s.close()
        finally:
            os.unlink(wrapper)
            os.rmdir(wrapdir)

    def test_total_limit(self):
        with testd({"limits": {"max_connections": "3"}}) as srv:
            held = self.hold_to_limit(srv, 3, r"event=refused .*reason=max_connections\b")
            for c in held:
                c.close()


class RuntimeShutdown(unittest.TestCase):
    def test_graceful_shutdown_with_command_in_flight(self):
        srv = testd({"limits": {"shutdown_grace": "10"}}).start()
        try:
            port = srv.port("imap")
            busy = Client(port)
            idle = Client(port)
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
            t = Client.__new__(Client)
            t.sock = tls.wrap_socket(socket.create_connection(("127.0.0.1", srv.port("imaps"))),
                                     server_hostname="roost.test")
            t.buf = b""
            self.assertEqual(t.line(), GREETING)
            busy.send(b"SLEEP 1500\r\n")
            time.sleep(0.3)
            srv.proc.send_signal(signal.SIGTERM)
            self.assertEqual(idle.line(), b"-ERR shutting down\r\n")
            self.assertTrue(idle.closed_by_peer())
            self.assertEqual(t.line(), b"-ERR shutting down\r\n")
            self.assertEqual(busy.line(), b"+OK slept\r\n")
            self.assertEqual(busy.line(), b"-ERR shutting down\r\n")
            self.assertTrue(busy.closed_by_peer())
            # New connections are refused once shutdown began.
            with self.assertRaises(OSError):
                c = socket.create_connection(("127.0.0.1", port), timeout=2)
                if c.recv(100) == b"":
                    c.close()
                    raise OSError("closed")
            for c in (busy, idle, t):
                c.close()
            srv.stop()      # exit code 0, no sanitizer report
            self.assertIn("event=stopped", srv.log())
        finally:
            srv.kill()
            srv.cleanup()

    def test_grace_expires(self):
        srv = testd({"limits": {"shutdown_grace": "1"}}).start()
        try:
            busy = Client(srv.port("imap"))
            busy.send(b"SLEEP 2500\r\n")
            time.sleep(0.2)
            srv.proc.send_signal(signal.SIGTERM)
            srv.stop()
            self.assertIn("event=shutdown_force", srv.log())
            busy.close()
        finally:
            srv.kill()
            srv.cleanup()


if __name__ == "__main__":
    unittest.main()
