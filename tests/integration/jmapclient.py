"""Small HTTP and JMAP helpers for the tests of the http listener: raw
exchanges over a socket (to see exactly what the server sends) and a JMAP
client over http.client."""
import base64
import http.client
import json
import socket
import time

from roosttest import LineClient

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail",
         "urn:ietf:params:jmap:submission"]


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


class Raw(LineClient):
    """A socket that sends bytes and reads whole HTTP responses."""

    def __init__(self, port, timeout=20):
        super().__init__(port, timeout=timeout)

    def response(self, head_only=False):
        """(status, headers dict with lower-case names, body)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), v.strip())
        n = 0 if head_only or status in (204, 304) or status < 200 \
            else int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed(self, timeout=20):
        """True once the server closed the connection (it sends nothing more)."""
        self.sock.settimeout(timeout)
        try:
            return self.read_to_close()
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


class Jmap:
    """A JMAP client for one user over one keep-alive connection."""

    def __init__(self, port, user, password):
        self.port = port
        self.auth = basic(user, password)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, body = self.get("/jmap/session")
        assert status == 200, (status, body)
        self.session = json.loads(body)
        self.acc = self.session["primaryAccounts"]["urn:ietf:params:jmap:mail"]

    def request(self, method, path, body=None, headers=None):
        h = {"Authorization": self.auth}
        h.update(headers or {})
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        return r.status, r.read(), r

    def get(self, path):
        status, body, _ = self.request("GET", path)
        return status, body

    def raw_api(self, req, ctype="application/json"):
        status, body, _ = self.request("POST", "/jmap/api/", json.dumps(req).encode(),
                                       {"Content-Type": ctype})
        return status, json.loads(body) if body else None

    def api(self, calls, using=USING):
        status, out = self.raw_api({"using": using, "methodCalls": calls})
        assert status == 200, (status, out)
        return out["methodResponses"]

    def call(self, name, args, tag="0"):
        args = dict(args)
        args.setdefault("accountId", self.acc)
        resp = self.api([[name, args, tag]])
        assert resp[0][0] == name, resp
        return resp[0][1]

    def mailboxes(self):
        return {m["role"] or m["name"]: m for m in self.call("Mailbox/get", {})["list"]}

    def query(self, **filter_):
        return self.call("Email/query", {"filter": filter_ or None,
                                         "sort": [{"property": "receivedAt",
                                                   "isAscending": True}]})["ids"]

    def upload(self, data, ctype="application/octet-stream"):
        status, body, _ = self.request("POST", "/jmap/upload/%s/" % self.acc, data,
                                       {"Content-Type": ctype})
        assert status == 201, (status, body)
        return json.loads(body)

    def close(self):
        self.conn.close()


def wait_for(fn, timeout=20.0):
    """Poll fn until it returns a true value (for effects that have no
    event to wait on, e.g. another client's view); fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in %.0f s" % timeout)
        time.sleep(0.05)


class EventStream:
    """An EventSource stream read over a raw socket."""

    def __init__(self, port, auth, query="types=*&closeafter=no&ping=0"):
        self.raw = Raw(port, timeout=30)
        self.raw.send(("GET /jmap/eventsource?%s HTTP/1.1\r\nHost: t\r\nAuthorization: %s\r\n"
                       "Accept: text/event-stream\r\n\r\n" % (query, auth)).encode())
        self.status, self.headers, _ = self.raw.response(head_only=True)

    def event(self, timeout=20):
        """The next (event, data) pair."""
        self.raw.sock.settimeout(timeout)
        while b"\n\n" not in self.raw.buf:
            self.raw._fill()
        block, self.raw.buf = self.raw.buf.split(b"\n\n", 1)
        ev = data = None
        for line in block.decode().split("\n"):
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        return ev, data

    def state_event(self, timeout=20):
        while True:
            ev, data = self.event(timeout)
            if ev == "state":
                return data

    def close(self):
        self.raw.close()
