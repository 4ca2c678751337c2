"""A real `roost serve` on loopback ports of its own, for integration tests.

    with RoostServer(backend="lmdb", users={"alice@example.org": "secret"}) as srv:
        imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))

Every server gets a fresh temporary directory (config, data, log), free
ports on 127.0.0.1, and is stopped (SIGTERM, then SIGKILL after a bound) by
stop() or the context manager. stop() fails the test if the server did not
exit cleanly or its log holds a sanitizer report.
"""
import imaplib
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ROOST_BIN = os.environ.get("ROOST_BIN") or os.path.join(ROOT, "build", "roost")
ROOST_TESTD = os.environ.get("ROOST_TESTD") or os.path.join(ROOT, "build", "roost-testd")
# build/tests/tools/roost-fill beside the binary: stores mail through the storage API.
FILL = os.path.join(os.path.dirname(ROOST_BIN), "tests", "tools", "roost-fill")

LISTENERS = ("smtp", "submission", "smtps", "lmtp", "imap", "imaps", "pop3", "pop3s", "http",
             "https", "metrics")
BACKENDS = tuple(b for b in os.environ.get("ROOST_BACKENDS", "lmdb,maildir").split(",") if b)
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")

DEFAULT_USERS = {"alice@example.org": "alice-secret", "bob@example.org": "bob-secret"}


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


_EPHEMERAL_LOW = _ephemeral_low()
_handed_out = set()


def free_port():
    """A port on 127.0.0.1 that nothing listens on and that this process
    has not handed out before. Taken below the kernel's ephemeral range
    when there is room, so that the source port of some client connection
    (ours or a concurrent run's) cannot take it between this call and the
    server's bind(); never the same port twice, so that two listeners of
    one server cannot be given one port."""
    low, high = 10000, _EPHEMERAL_LOW - 1
    for _ in range(200):
        if high - low > 1000:
            port = random.randint(low, high)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise AssertionError("no free port on 127.0.0.1")


def wait_port(port, timeout=15.0, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_unix(path, timeout=15.0):
    """Wait until a unix socket accepts a connection: the file exists from
    bind() on, but connecting is refused until listen()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            try:
                s.connect(path)
                return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


def wait_log(srv, pattern, count=1, timeout=15.0):
    """Wait until the server log holds count lines matching the regex."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(re.findall(pattern, srv.log())) >= count:
            return True
        time.sleep(0.05)
    return False


def wait_for(pred, timeout=30, what="condition"):
    """pred()'s first true value, polled until timeout (s); else the test
    fails naming what it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def imap_session(test, port, user, password, timeout=20):
    """An imaplib.IMAP4 session on 127.0.0.1:port logged in as user, logged
    out after the test (quiet_logout)."""
    m = imaplib.IMAP4("127.0.0.1", port, timeout=timeout)
    m.login(user, password)
    test.addCleanup(quiet_logout, m)
    return m


def quiet_logout(m):
    """LOGOUT, letting go a session the server or the test closed."""
    try:
        m.logout()
    except (imaplib.IMAP4.error, OSError):
        pass


def tls_context():
    """A client TLS context that takes the test server's self-signed
    certificate (no name or chain check)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def submission(srv, user, password, timeout=15):
    """An smtplib.SMTP session on srv's submission listener, after STARTTLS
    (tls_context()) and AUTH as user; a with statement closes it."""
    import smtplib
    s = smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=timeout)
    try:
        s.starttls(context=tls_context())
        s.login(user, password)
    except BaseException:
        s.close()
        raise
    return s


class LineClient:
    """A client socket for the raw exchanges of the tests, to port on
    127.0.0.1 or to an (address, port) pair, over TLS when tls is set:
    send() bytes, crlf_line() the next line without its CRLF,
    read_to_close() what comes until the server closes. Bytes read and not
    taken wait in buf."""

    def __init__(self, port, timeout=30, tls=False):
        where = port if isinstance(port, tuple) else ("127.0.0.1", port)
        self.sock = socket.create_connection(where, timeout=timeout)
        if tls:
            self.sock = tls_context().wrap_socket(self.sock)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed; have %r" % self.buf[:200])
        self.buf += data

    def crlf_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_to_close(self):
        """Read into buf until the server closes the connection: True. A
        timeout or a reset on the way is raised (buf keeps what came)."""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return True
            self.buf += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class ScriptedPeer:
    """A scripted TCP server on (ip, port): a thread accepts, and a thread per
    connection runs self.serve(conn, n), n counting connections from 1.
    Subclasses set their own fields before calling this __init__ (the
    accepting starts in it). stop() closes the socket and the connections
    a subclass kept in self.held, and joins the accepting thread."""

    def __init__(self, ip, port):
        self.connections = 0
        self.held = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.stopped = False
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def serve(self, conn, n):
        raise NotImplementedError

    def stop(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.held:
            c.close()
        self.thread.join(5)

    def accept_loop(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(conn, self.connections),
                             daemon=True).start()


class SmtpPeer(ScriptedPeer):
    """A scripted SMTP server (a ScriptedPeer): each connection is greeted
    by greet(conn, n) (False: nothing more), then every command line is
    kept in self.commands and answered by command(s, verb, line, n), s the
    connection's SmtpSession, verb the line's first four octets in upper
    case; command() returns False to end the connection. The base answers
    EHLO and HELO with ehlo(s), MAIL, RCPT, DATA (the message appended to
    self.messages), RSET and QUIT, and 502 to anything else: a subclass
    scripts the rest (extensions, BDAT, STARTTLS, failures) and hands
    what it does not script to it. Lines are read up to max_line octets
    (-1: no bound). A connection in self.held is left open."""
    max_line = -1

    def __init__(self, ip, port):
        self.commands = []
        self.messages = []
        super().__init__(ip, port)

    def greet(self, conn, n):
        conn.sendall(b"220 fake ESMTP\r\n")
        return True

    def ehlo(self, s):
        return b"250 fake\r\n"

    def command(self, s, verb, line, n):
        if verb in (b"EHLO", b"HELO"):
            s.send(self.ehlo(s))
        elif verb == b"MAIL":
            s.send(b"250 2.1.0 ok\r\n")
        elif verb == b"RCPT":
            s.send(b"250 2.1.5 ok\r\n")
        elif verb == b"DATA":
            data = s.read_data()
            if data is None:
                return False
            self.messages.append(data)
            s.send(b"250 2.0.0 queued\r\n")
        elif verb == b"RSET":
            s.send(b"250 2.0.0 ok\r\n")
        elif verb == b"QUIT":
            s.send(b"221 2.0.0 bye\r\n")
            return False
        else:
            s.send(b"502 5.5.1 no\r\n")
        return True

    def serve(self, conn, n):
        conn.settimeout(20)
        s = None
        try:
            if not self.greet(conn, n):
                return
            s = SmtpSession(conn)
            while True:
                line = s.f.readline(self.max_line)
                if not line:
                    return
                self.commands.append(line.strip())
                if self.command(s, line[:4].upper(), line, n) is False:
                    return
        except (OSError, ValueError):
            return
        finally:
            if s is not None:
                conn = s.conn
            if conn not in self.held:
                conn.close()


class SmtpSession:
    """One connection of an SmtpPeer: conn and f (its reader) are replaced
    by STARTTLS; chunks holds the BDAT chunks of the message under way."""

    def __init__(self, conn):
        self.conn = conn
        self.f = conn.makefile("rb")
        self.chunks = []
        self.secure = False

    def send(self, data):
        self.conn.sendall(data)

    def read_data(self):
        """After DATA: 354, then the message up to and with its final dot
        line; None when the client closes first."""
        self.send(b"354 go\r\n")
        data = b""
        while not data.endswith(b"\r\n.\r\n"):
            line = self.f.readline()
            if not line:
                return None
            data += line
        return data


class RoostServer:
    def __init__(self, backend="lmdb", users=None, conf=None, listeners=LISTENERS,
                 binary=None, args=(), preexec_fn=None, aliases=None):
        """conf: {"section": {"key": "value"}} laid over the test defaults
        (a value None leaves the key out, at the server's own default).
        listeners: which listeners to open (others are "off").
        preexec_fn: run in the server's process before it starts (limits).
        aliases: the text of an aliases file in the server's directory
        (aliases_path), which [smtp] aliases names."""
        self.backend = backend
        self.users = DEFAULT_USERS if users is None else users
        self.extra_conf = conf or {}
        self.listeners = tuple(listeners)
        self.binary = binary or ROOST_BIN
        self.args = tuple(args)
        self.preexec_fn = preexec_fn
        self.aliases = aliases
        self.dir = None
        self.proc = None
        self.ports = {}
        self.returncode = None

    # -- paths --
    @property
    def conf_path(self):
        return os.path.join(self.dir, "roost.conf")

    @property
    def data_dir(self):
        return os.path.join(self.dir, "var")

    @property
    def log_path(self):
        return os.path.join(self.dir, "server.log")

    @property
    def aliases_path(self):
        return os.path.join(self.dir, "aliases")

    def port(self, name):
        return self.ports[name]

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # -- set-up --
    def write_config(self):
        conf = {
            "server": {"data_dir": self.data_dir, "hostname": "roost.test", "workers": "4",
                       "loops": "2", "log_level": "debug"},
            "storage": {"backend": self.backend},
            "listen": {},
            "smtp": {"domains": "example.org, roost.test"},
            # Outbound mail never reaches the machine's resolver: a test
            # that relays points [dns] servers at its own responder.
            "dns": {"servers": "127.0.0.1:9"},
        }
        for name in LISTENERS:
            if name in self.listeners:
                self.ports[name] = free_port()
                conf["listen"][name] = "127.0.0.1:%d" % self.ports[name]
            else:
                conf["listen"][name] = "off"
        for section, keys in self.extra_conf.items():
            conf.setdefault(section, {}).update(keys)
        if self.aliases is not None:
            with open(self.aliases_path, "w") as f:
                f.write(self.aliases)
            conf["smtp"]["aliases"] = self.aliases_path
        # A test that gives a listener its own address waits on that port.
        for name, addrs in conf["listen"].items():
            if name in self.listeners and addrs not in ("off", None):
                self.ports[name] = int(addrs.split(",")[0].strip().rsplit(":", 1)[1])
        with open(self.conf_path, "w") as f:
            for section, keys in conf.items():
                f.write("[%s]\n" % section)
                for k, v in keys.items():
                    if v is not None:  # None: the key is left at its default
                        f.write("%s = %s\n" % (k, v))
                f.write("\n")

    def cli(self, *args, input=None, check=True, timeout=60):
        """Run `roost <args> --config <this server's config>`."""
        cmd = [self.binary] + list(args) + ["--config", self.conf_path]
        res = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout,
                             text=isinstance(input, str) or input is None)
        if check and res.returncode != 0:
            raise AssertionError("%s failed (%d): %s" % (" ".join(cmd), res.returncode,
                                                         res.stderr))
        return res

    def add_user(self, name, password):
        self.cli("user", "add", name, input=password + "\n")

    def serve_refused(self, prepare=None, timeout=60):
        """Run `roost serve` in the foreground on a new directory, for a
        configuration it must refuse to start with: the CompletedProcess
        (text), the directory removed. prepare(self) runs before the
        configuration is written (files it names, in self.dir)."""
        self.dir = tempfile.mkdtemp(prefix="roost-test-")
        try:
            os.makedirs(self.data_dir)
            if prepare is not None:
                prepare(self)
            self.write_config()
            return subprocess.run([self.binary, "serve", "--config", self.conf_path],
                                  capture_output=True, text=True, timeout=timeout)
        finally:
            self.cleanup()

    def start_or_skip(self):
        """start(), or skip the test (unittest.SkipTest, the directory
        removed) when this build does not have the server's backend."""
        try:
            self.start()
        except AssertionError as e:
            self.cleanup()
            if "unknown backend" in str(e):
                raise unittest.SkipTest("backend %s not in this build" % self.backend)
            raise

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="roost-test-")
        os.makedirs(self.data_dir)
        self.write_config()
        for name, password in self.users.items():
            self.add_user(name, password)
        # A port can still be taken by another program between free_port()
        # and the server's bind(): then the server is started again on new
        # ports (its data directory is still empty of mail).
        for attempt in range(3):
            try:
                return self.launch()
            except AssertionError as e:
                if "Address already in use" not in str(e) or attempt == 2:
                    raise
                self.logf.close()
                os.unlink(self.log_path)
                self.write_config()

    def launch(self):
        """Start the process on the existing directory (again, after kill())."""
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "serve", "--config", self.conf_path]
                                     + list(self.args),
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, preexec_fn=self.preexec_fn)
        for name in self.listeners:
            if not wait_port(self.ports[name]):
                self.kill()
                raise AssertionError("server did not listen on %s:\n%s" % (name, self.log()))
        return self

    # -- tear-down --
    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.returncode = None if self.proc is None else self.proc.returncode

    def stop(self, timeout=30):
        """SIGTERM, wait, and check the server exited cleanly."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("server did not stop within %ds:\n%s"
                                     % (timeout, self.log()[-4000:]))
        self.returncode = self.proc.returncode
        self.logf.close()
        self.proc = None
        log = self.log()
        for mark in SANITIZER_MARKS:
            if mark in log:
                raise AssertionError("sanitizer report in server log:\n" + log[-8000:])
        if self.returncode != 0:
            raise AssertionError("server exited with %s:\n%s" % (self.returncode, log[-4000:]))

    def cleanup(self):
        if self.dir and os.environ.get("ROOST_KEEP") is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        # `srv = start_server(); with srv:` must not start a second server
        # (the first one would be orphaned, still listening, after the test).
        if self.proc is not None:
            return self
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.stop()
            else:
                self.kill()
        finally:
            self.cleanup()
        return False


def backend_classes(namespace, base, name, backends=("lmdb", "maildir")):
    """Put in namespace (a test module's globals()) a unittest class of base
    (a class, or a tuple of classes) for each of backends that BACKENDS
    selects, with its backend set. The class is named name % backend when
    name holds "%s" ("TestImap_%s": TestImap_lmdb), else name and the
    backend's name capitalised (JmapMailLmdb). The default leaves pgsql
    out: a class on it needs a database (PrivatePgsql)."""
    bases = base if isinstance(base, tuple) else (base,)
    if not any(issubclass(b, unittest.TestCase) for b in bases):
        bases += (unittest.TestCase,)
    for backend in backends:
        if backend in BACKENDS:
            cls_name = name % backend if "%s" in name else name + backend.capitalize()
            namespace[cls_name] = type(cls_name, bases,
                                       {"backend": backend, "__module__": namespace["__name__"]})


def own_server(test, **options):
    """A RoostServer(**options) of one test alone: started (the test
    skipped where the build lacks its backend), stopped (and checked, as
    stop() does) and its directory removed after the test."""
    srv = RoostServer(**options)
    srv.start_or_skip()
    test.addCleanup(srv.cleanup)
    test.addCleanup(srv.stop)
    return srv


class SharedServer:
    """Mixin for a unittest class whose tests share one server, started before
    the first and stopped after the last: server_options holds RoostServer's
    keyword arguments, and the class's backend, when it has one, is used. A
    class whose options are known only when it starts (a port of its
    module's set-up) overrides server_args(). server_started() runs once
    the server listens (mail the tests share; the server is killed and
    removed when it fails), server_stopped() after it stopped cleanly (a
    check of its log; the directory is removed after it in any case).
    A class with needs_fill set is skipped where FILL is not built."""
    server_options = {}
    needs_fill = False

    @classmethod
    def server_args(cls):
        """RoostServer's keyword arguments for this class's server."""
        opts = dict(cls.server_options)
        if hasattr(cls, "backend"):
            opts.setdefault("backend", cls.backend)
        return opts

    @classmethod
    def server_started(cls):
        pass

    @classmethod
    def server_stopped(cls):
        pass

    @classmethod
    def setUpClass(cls):
        if cls.needs_fill and not os.path.exists(FILL):
            raise unittest.SkipTest("%s not built" % FILL)
        cls.srv = RoostServer(**cls.server_args())
        cls.srv.start_or_skip()
        try:
            cls.server_started()
        except BaseException:
            cls.srv.kill()
            cls.srv.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.srv.stop()
            cls.server_stopped()
        finally:
            cls.srv.cleanup()


PG_TEST = os.path.join(ROOT, "scripts", "pg-test.sh")


def pgsql_wanted():
    """False when ROOST_BACKENDS is set and leaves pgsql out."""
    only = os.environ.get("ROOST_BACKENDS")
    return only in (None, "") or "pgsql" in only


def psql(dsn, sql):
    """Run one SQL statement on dsn (psql, stopping at the first error)."""
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql], check=True,
                   capture_output=True, timeout=60)


class PrivatePgsql:
    """Mixin, named before a SharedServer class whose setUpClass lays
    cls.extra_conf over its configuration: the class runs on the pgsql
    backend in a PostgreSQL of its own (scripts/pg-test.sh), in the
    database pg_database made there. Skipped when ROOST_BACKENDS is set
    without pgsql, or where PostgreSQL is not installed; the PostgreSQL is
    stopped after the last test, or when the set-up fails."""
    backend = "pgsql"
    pg_database = "roost_test"

    @classmethod
    def setUpClass(cls):
        if not pgsql_wanted():
            raise unittest.SkipTest("pgsql not in ROOST_BACKENDS")
        res = subprocess.run([PG_TEST, "start"], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise unittest.SkipTest("no PostgreSQL: " + (res.stderr.strip() or "pg-test.sh"))
        cls.pg, dsn = res.stdout.strip().split(" ", 1)
        try:
            psql(dsn, "CREATE DATABASE " + cls.pg_database)
            cls.extra_conf = {"storage": {"pgsql_dsn": dsn + " dbname=" + cls.pg_database}}
            super().setUpClass()
        except BaseException:
            subprocess.run([PG_TEST, "stop", cls.pg], timeout=120)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            subprocess.run([PG_TEST, "stop", cls.pg], timeout=120)


class Mbsync:
    """isync's mbsync syncing user's mail on 127.0.0.1:port to a local
    Maildir (maildir), in a temporary HOME (tmp) removed after test. Its
    configuration (conf): the account (tls: SSLType IMAPS, with no
    certificate to trust, else None), the local store with store's lines
    added, and one channel "ch" of channel's lines (Far and Near given).
    run(): mbsync -a, its exit status and output."""

    def __init__(self, test, port, user, password, channel, tls=False, store=""):
        self.tmp = tempfile.mkdtemp(prefix="roost-mbsync-")
        test.addCleanup(shutil.rmtree, self.tmp, True)
        self.maildir = os.path.join(self.tmp, "mail")
        os.makedirs(self.maildir)
        self.conf = os.path.join(self.tmp, "mbsyncrc")
        ssl_type = "SSLType IMAPS\nCertificateFile /dev/null\n" if tls else "SSLType None\n"
        with open(self.conf, "w") as f:
            f.write("IMAPAccount roost\nHost 127.0.0.1\nPort %d\nUser %s\nPass %s\n"
                    "%sAuthMechs LOGIN\n\n"
                    "IMAPStore remote\nAccount roost\n\n"
                    "MaildirStore local\nPath %s/\nInbox %s/INBOX\n%s\n"
                    "Channel ch\nFar :remote:\nNear :local:\n%s"
                    % (port, user, password, ssl_type, self.maildir, self.maildir, store,
                       channel))

    def run(self, timeout=60):
        r = subprocess.run(["mbsync", "-c", self.conf, "-V", "-a"], capture_output=True,
                           timeout=timeout, env=dict(os.environ, HOME=self.tmp))
        return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


class JmapMailTest:
    """Mixin for a unittest class testing alice's mail over JMAP: a server of
    its own per test (own_server: self.backend, HTTP, SMTP and IMAP,
    DEFAULT_USERS; server_options laid over that), self.j a Jmap client as
    alice, deliver() mail from bob to alice over SMTP, imap() a logged-in
    IMAP session as alice."""
    backend = "lmdb"
    server_options = {}

    def setUp(self):
        from jmapclient import Jmap
        opts = {"backend": self.backend, "listeners": ("http", "smtp", "imap"),
                "users": dict(DEFAULT_USERS)}
        opts.update(self.server_options)
        self.srv = own_server(self, **opts)
        self.j = Jmap(self.srv.port("http"), "alice@example.org", "alice-secret")
        self.addCleanup(self.j.close)

    def deliver(self, data):
        import smtplib
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=20) as s:
            s.sendmail("bob@example.org", ["alice@example.org"], data)

    def imap(self):
        import imaplib
        m = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=20)
        m.login("alice@example.org", "alice-secret")
        self.addCleanup(m.logout)
        return m


POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTFIX_MASTER_CF = "/etc/postfix/master.cf"


def postfix_config(d, smtp_port, main_cf):
    """A private Postfix instance's configuration under directory d (its
    queue, data and log there, smtpd on 127.0.0.1:smtp_port, no chroot,
    loopback only, no DNS), main_cf's lines added to main.cf (what it
    relays where). Returns the config directory, for postfix -c. The
    daemons run as postfix: needs root."""
    etc = os.path.join(d, "etc")
    os.makedirs(etc)
    os.chmod(d, 0o755)
    for sub in ("spool", "data"):
        os.makedirs(os.path.join(d, sub))
    shutil.chown(os.path.join(d, "data"), "postfix")
    with open(os.path.join(etc, "main.cf"), "w") as f:
        f.write("""compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.test
mydestination =
local_recipient_maps =
alias_maps =
mynetworks = 127.0.0.0/8
relay_recipient_maps =
smtp_host_lookup = native
disable_dns_lookups = yes
""".format(d=d) + main_cf)
    # The stock master.cf with chroot off and smtpd on our own port.
    out = []
    with open(POSTFIX_MASTER_CF) as f:
        for line in f:
            fields = line.split()
            if line[:1].isalnum() and len(fields) >= 8:
                if fields[0] == "smtp" and fields[1] == "inet":
                    fields[0] = "127.0.0.1:%d" % smtp_port
                fields[4] = "n"
                line = " ".join(fields) + "\n"
            out.append(line)
    with open(os.path.join(etc, "master.cf"), "w") as f:
        f.writelines(out)
    return etc
