"""A small authoritative DNS responder on loopback UDP, for the outbound tests.

    dns = DnsStub({"remote.test": {"MX": [(10, "mx.remote.test")]},
                   "mx.remote.test": {"A": ["127.0.0.1"]}}).start()
    ... [dns] servers = 127.0.0.1:<dns.port> ...
    dns.stop()

Names in the zone answer the record types they have (MX, A, AAAA, TXT) and
NOERROR with no answer for the others; every other name is NXDOMAIN. The
zone may be changed while the responder runs (zone is a plain dict).
"""
import socket
import struct
import threading

TYPES = {"A": 1, "MX": 15, "TXT": 16, "AAAA": 28}
TYPE_NAMES = {v: k for k, v in TYPES.items()}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def decode_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        if n == 0:
            return ".".join(labels), off + 1
        if n & 0xC0:
            raise ValueError("compression in a question")
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n


def rdata(rtype, value):
    if rtype == "A":
        return socket.inet_pton(socket.AF_INET, value)
    if rtype == "AAAA":
        return socket.inet_pton(socket.AF_INET6, value)
    if rtype == "MX":
        pref, host = value
        return struct.pack("!H", pref) + encode_name(host)
    if rtype == "TXT":
        data = value.encode()
        return b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255]
                        for i in range(0, max(len(data), 1), 255))
    raise ValueError(rtype)


class DnsStub:
    def __init__(self, zone):
        self.zone = {k.lower().rstrip("."): v for k, v in zone.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop = True
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"", ("127.0.0.1", self.port))
        except OSError:
            pass
        self.thread.join(5)
        self.sock.close()

    def answer(self, msg):
        qid, flags, qd = struct.unpack("!HHH", msg[:6])
        name, off = decode_name(msg, 12)
        qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
        question = msg[12:off + 4]
        self.queries.append((name.lower(), TYPE_NAMES.get(qtype, qtype)))
        node = self.zone.get(name.lower().rstrip("."))
        answers = b""
        count = 0
        rcode = 0
        if node is None:
            rcode = 3
        else:
            tname = TYPE_NAMES.get(qtype)
            for value in node.get(tname, []) if tname else []:
                data = rdata(tname, value)
                answers += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, len(data)) + data
                count += 1
        rflags = 0x8400 | (flags & 0x0100) | rcode
        return struct.pack("!HHHHHH", qid, rflags, 1, count, 0, 0) + question + answers

    def _run(self):
        while not self._stop:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if self._stop:
                return
            if len(msg) < 17:
                continue
            try:
                self.sock.sendto(self.answer(msg), peer)
            except (ValueError, IndexError, struct.error, OSError):
                continue
