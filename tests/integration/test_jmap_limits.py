"""The limits of the JMAP Session resource (RFC 8620 2) are enforced as
advertised, with the RFC's errors: maxConcurrentUpload over several
connections (an upload counts from its head to its end, also when the
client goes away), maxConcurrentRequests (a burst: every answer is a
result or the limit problem), maxCallsInRequest, maxSizeRequest,
maxObjectsInGet and maxObjectsInSet on every /get and /set-like method;
and hostile requests (deep JSON, huge arrays, unknown methods) get a
correct error while the server keeps serving."""
import json
import threading
import unittest

from jmapclient import Jmap, Raw, basic
from roosttest import DEFAULT_USERS, own_server

LIMIT = "urn:ietf:params:jmap:error:limit"


class Limits(unittest.TestCase):
    def setUp(self):
        self.srv = own_server(self, backend="lmdb", listeners=("http",), users=dict(DEFAULT_USERS))
        self.port = self.srv.port("http")
        self.j = Jmap(self.port, "alice@example.org", "alice-secret")
        self.addCleanup(self.j.close)
        self.core = self.j.session["capabilities"]["urn:ietf:params:jmap:core"]
        self.auth = basic("alice@example.org", "alice-secret")

    def start_upload(self, size=1000):
        """An upload the server counts as running: its head went out, the
        server's 100 Continue (sent once the upload is counted) came back,
        and part of the body went out.

        Waiting for the count matters: the probes of the tests are uploads
        themselves, and a probe counted before a held upload's head was
        read takes that upload's place, which is then refused; the probe
        ends and only three stay counted, so no probe is ever refused
        (test_concurrent_uploads waited 60 s for it and failed, once in a
        clean run and twice in 40 on a loaded machine)."""
        raw = Raw(self.port)
        self.addCleanup(raw.close)
        raw.send(("POST /jmap/upload/%s/ HTTP/1.1\r\nHost: t\r\nAuthorization: %s\r\n"
                  "Content-Type: text/plain\r\nContent-Length: %d\r\n"
                  "Expect: 100-continue\r\n\r\n"
                  % (self.j.acc, self.auth, size)).encode())
        status, _, body = raw.response(head_only=True)
        self.assertEqual(status, 100, body)
        raw.send(b"x" * 10)
        return raw

    def upload_status(self):
        st, body, _ = self.j.request("POST", "/jmap/upload/%s/" % self.j.acc, b"hello",
                                     {"Content-Type": "text/plain"})
        return st, json.loads(body)

    def api_ok(self):
        return self.j.call("Core/echo", {"x": 1})["x"] == 1

    def test_concurrent_uploads(self):
        n = self.core["maxConcurrentUpload"]
        self.assertEqual(n, 4)
        ups = [self.start_upload() for _ in range(n)]
        # all four are counted: the next one is refused (a refusal closes
        # its connection, so a fresh client asks each time)
        def refused():
            j = Jmap(self.port, "alice@example.org", "alice-secret")
            try:
                st, body, _ = j.request("POST", "/jmap/upload/%s/" % j.acc, b"hello",
                                        {"Content-Type": "text/plain"})
                self.assertEqual(st, 400, body)
                return json.loads(body)
            finally:
                j.close()
        from jmapclient import wait_for
        problem = refused()
        self.assertEqual((problem["type"], problem["limit"]), (LIMIT, "maxConcurrentUpload"))
        # the API is another limit: still served
        self.assertTrue(self.api_ok())
        # bob has his own count
        b = Jmap(self.port, "bob@example.org", "bob-secret")
        self.addCleanup(b.close)
        st, _, _ = b.request("POST", "/jmap/upload/%s/" % b.acc, b"hi",
                             {"Content-Type": "text/plain"})
        self.assertEqual(st, 201)
        # one finishes, one is dropped by its client: two free places
        ups[0].send(b"y" * 990)
        status, _, body = ups[0].response()
        self.assertEqual(status, 201)
        ups[1].close()

        def free_again():
            j = Jmap(self.port, "alice@example.org", "alice-secret")
            try:
                st, _, _ = j.request("POST", "/jmap/upload/%s/" % j.acc, b"hello",
                                     {"Content-Type": "text/plain"})
                return st == 201
            finally:
                j.close()

        def two_free():
            # The dropped upload is released when the server sees the close,
            # which may come after the finished one's answer: hold one place
            # and ask for another. The held upload is finished, not dropped,
            # so its place is free again when its answer has come.
            held = self.start_upload()
            ok = free_again()
            held.send(b"y" * 990)
            self.assertEqual(held.response()[0], 201)
            return ok
        wait_for(two_free, timeout=60.0)
        # two are still running (two_free saw the dropped one released):
        # exactly two more fit
        more = [self.start_upload() for _ in range(2)]
        self.assertEqual(refused()["limit"], "maxConcurrentUpload")
        for raw in ups[2:] + more:
            raw.close()
        wait_for(free_again, timeout=60.0)

    def test_concurrent_requests_burst(self):
        self.assertEqual(self.core["maxConcurrentRequests"], 4)
        # Requests that take a while (a text search over many messages is
        # not available without mail, so many calls each) from 12
        # connections at once: each answer is a result or the limit problem.
        calls = [["Mailbox/get", {"accountId": self.j.acc}, str(i)] for i in range(32)]
        results = []

        def one():
            j = Jmap(self.port, "alice@example.org", "alice-secret")
            try:
                for _ in range(5):
                    st, out = j.raw_api({"using": ["urn:ietf:params:jmap:core",
                                                   "urn:ietf:params:jmap:mail"],
                                         "methodCalls": calls})
                    results.append((st, out))
                    if st != 200:
                        j.close()
                        j = Jmap(self.port, "alice@example.org", "alice-secret")
            finally:
                j.close()
        ts = [threading.Thread(target=one) for _ in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(len(results), 60)
        for st, out in results:
            if st == 200:
                self.assertEqual(len(out["methodResponses"]), 32)
            else:
                self.assertEqual((st, out["type"], out["limit"]),
                                 (400, LIMIT, "maxConcurrentRequests"))
        self.assertTrue(self.api_ok())

    def test_calls_size_and_objects(self):
        acc = self.j.acc
        calls = [["Core/echo", {}, str(i)] for i in range(self.core["maxCallsInRequest"] + 1)]
        st, out = self.j.raw_api({"using": ["urn:ietf:params:jmap:core"],
                                  "methodCalls": calls})
        self.assertEqual((st, out["type"], out["limit"]), (400, LIMIT, "maxCallsInRequest"))
        # maxSizeRequest: refused before the body is read
        j = Jmap(self.port, "alice@example.org", "alice-secret")
        self.addCleanup(j.close)
        big = b"{" + b" " * (self.core["maxSizeRequest"] + 10) + b"}"
        st, body, resp = j.request("POST", "/jmap/api/", big,
                                   {"Content-Type": "application/json"})
        self.assertEqual(st, 413)
        self.assertEqual(resp.getheader("Content-Type"), "application/problem+json")
        problem = json.loads(body)
        self.assertEqual((problem["type"], problem["limit"], problem["status"]),
                         (LIMIT, "maxSizeRequest", 413))
        # the same when the body comes in chunks, found at the chunk's size
        raw = Raw(self.port)
        self.addCleanup(raw.close)
        raw.send(("POST /jmap/api/ HTTP/1.1\r\nHost: t\r\nAuthorization: %s\r\n"
                  "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "%x\r\n" % (self.auth, self.core["maxSizeRequest"] + 1)).encode())
        st, headers, body = raw.response()
        self.assertEqual((st, headers["content-type"]), (413, "application/problem+json"))
        self.assertEqual(json.loads(body)["limit"], "maxSizeRequest")
        self.assertTrue(raw.closed())
        # other paths keep their plain answer
        raw = Raw(self.port)
        self.addCleanup(raw.close)
        raw.send(("POST /jmap/upload/%s/ HTTP/1.1\r\nHost: t\r\nAuthorization: %s\r\n"
                  "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                  % (acc, self.auth, self.core["maxSizeUpload"] + 1)).encode())
        st, headers, _ = raw.response()
        self.assertEqual(st, 413)
        self.assertNotEqual(headers.get("content-type"), "application/problem+json")
        get_n = self.core["maxObjectsInGet"] + 1
        set_n = self.core["maxObjectsInSet"] + 1
        ids = ["X%d" % i for i in range(get_n)]
        gets = ["Mailbox/get", "Email/get", "Thread/get", "Identity/get",
                "EmailSubmission/get"]
        resp = self.j.api([[m, {"accountId": acc, "ids": ids}, m] for m in gets] +
                          [["SearchSnippet/get", {"accountId": acc, "emailIds": ids}, "s"]])
        for r in resp:
            self.assertEqual((r[0], r[1]["type"]), ("error", "requestTooLarge"), r[2])
        many = {"k%d" % i: {} for i in range(set_n)}
        resp = self.j.api([
            ["Mailbox/set", {"accountId": acc, "create": many}, "mb"],
            ["Email/set", {"accountId": acc, "destroy": list(many)}, "em"],
            ["Email/import", {"accountId": acc, "emails": many}, "imp"],
            ["Email/copy", {"accountId": acc, "fromAccountId": acc, "create": many}, "copy"],
            ["EmailSubmission/set", {"accountId": acc, "create": many}, "sub"],
        ])
        for r in resp:
            self.assertEqual((r[0], r[1]["type"]), ("error", "requestTooLarge"), r[2])
        # within the limits: answered, submissions not kept
        r = self.j.call("EmailSubmission/set", {"update": {"S1": {"undoStatus": "canceled"}},
                                                "destroy": ["S2"]})
        self.assertEqual(r["notUpdated"]["S1"]["type"], "notFound")
        self.assertEqual(r["notDestroyed"]["S2"]["type"], "notFound")
        resp = self.j.api([["Identity/get", {"accountId": acc, "ids": [1]}, "i"],
                           ["EmailSubmission/get", {"accountId": acc, "ids": "x"}, "g"]])
        self.assertEqual(resp[0][1]["type"], "invalidArguments")
        self.assertEqual(resp[1][1]["type"], "invalidArguments")
        self.assertTrue(self.api_ok())

    def test_hostile_requests(self):
        acc = self.j.acc
        deep = "[" * 100000 + "]" * 100000
        j = Jmap(self.port, "alice@example.org", "alice-secret")
        self.addCleanup(j.close)
        st, body, _ = j.request("POST", "/jmap/api/", deep.encode(),
                                {"Content-Type": "application/json"})
        self.assertIn(st, (400, 413))
        if st == 400:
            self.assertEqual(json.loads(body)["type"], "urn:ietf:params:jmap:error:notJSON")
        j2 = Jmap(self.port, "alice@example.org", "alice-secret")
        self.addCleanup(j2.close)
        nested = "[" * 500 + "]" * 500
        body = ('{"using":["urn:ietf:params:jmap:core"],"methodCalls":'
                '[["Core/echo",{"a":%s},"0"]]}' % nested).encode()
        st, out, _ = j2.request("POST", "/jmap/api/", body, {"Content-Type": "application/json"})
        self.assertEqual(st, 200)
        resp = self.j.api([
            ["Nope/get", {"accountId": acc}, "a"],
            ["Email/get", {"accountId": acc, "ids": ["E" + "0" * 16, "E\u00e9", "", "E" * 5000,
                                                      "#unknown"]}, "b"],
            ["Email/query", {"accountId": acc, "filter": {"operator": "AND", "conditions":
                                                          [{"text": "x"}] * 5000}}, "c"],
            ["Mailbox/get", {"accountId": acc, "ids": [None]}, "d"],
            ["Email/get", {"accountId": acc, "ids": ["x"], "properties": "all"}, "e"],
        ])
        self.assertEqual(resp[0][1]["type"], "unknownMethod")
        self.assertEqual(len(resp[1][1]["notFound"]), 5)
        self.assertEqual(resp[2][0], "Email/query")
        self.assertEqual(resp[3][1]["type"], "invalidArguments")
        self.assertEqual(resp[4][1]["type"], "invalidArguments")
        self.assertTrue(self.api_ok())


if __name__ == "__main__":
    unittest.main()
