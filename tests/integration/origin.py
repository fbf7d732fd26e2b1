"""A small threaded HTTP/1.1 origin server for the integration tests.

It parses requests itself so that keep-alive, chunked request bodies, Expect: 100-continue and
absolute-form targets behave exactly as HTTP/1.1 says. Endpoints:

  GET  /bytes/N[?chunked=1]  N deterministic bytes, header X-Content-SHA256
  POST|PUT /echo             JSON {length, sha256, method, chunked, headers} of the body received
  GET  /headers              JSON {method, target, version, headers, header_list, conn_id, peer}
  GET  /ws                   WebSocket handshake (RFC 6455), then frames are echoed back unmasked
  GET  /slow?ms=N            answers after N milliseconds
  GET  /conn-id              the id of the TCP connection the request came on
  GET  /stats                JSON {connections, requests, peers}
  GET  /status/N             an empty answer with status N
  GET  /close                answers, then closes the connection
  anything else              200 "hello from origin\\n"

Run it: python3 origin.py --port P [--tls-cert C --tls-key K]  (prints "ready" when listening),
or import it: start_origin(tls_cert=..., tls_key=...) -> Origin with .port, .url, .stop().
"""

import argparse
import base64
import hashlib
import json
import random
import socket
import socketserver
import ssl
import struct
import sys
import time
import urllib.parse

from background_server import BackgroundServer

MAX_HEAD_BYTES = 65536
IDLE_TIMEOUT_S = 60
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 204: "No Content",
    301: "Moved Permanently", 302: "Found", 304: "Not Modified", 400: "Bad Request",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
    413: "Content Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable",
}

HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te")


def deterministic_bytes(n: int) -> bytes:
    """The body of /bytes/N: the same N bytes on every run and in every process."""
    return random.Random(n).randbytes(n)


class BadRequest(Exception):
    pass


class ClientGone(Exception):
    pass


class Request:
    def __init__(self, method, target, version, header_list):
        self.method = method
        self.target = target
        self.version = version
        self.header_list = header_list
        self.headers = {}
        for name, value in header_list:
            key = name.lower()
            self.headers[key] = f"{self.headers[key]}, {value}" if key in self.headers else value
        parsed = urllib.parse.urlsplit(target)
        # Absolute-form (what a proxy might pass on) is accepted like origin-form.
        self.path = parsed.path or "/"
        self.query = urllib.parse.parse_qs(parsed.query)

    def tokens(self, name: str) -> set:
        return {t.strip().lower() for t in self.headers.get(name, "").split(",") if t.strip()}

    def wants_close(self) -> bool:
        connection = self.tokens("connection")
        if self.version == "HTTP/1.0":
            return "keep-alive" not in connection
        return "close" in connection


class Reader:
    """Buffered reads over a socket with exact-length and line primitives."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ClientGone()
        self.buf += data

    def head(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head, self.buf = self.buf[:end], self.buf[end + 4:]
                return head
            if len(self.buf) > MAX_HEAD_BYTES:
                raise BadRequest("request head too large")
            self._fill()

    def line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2:]
                return line
            if len(self.buf) > MAX_HEAD_BYTES:
                raise BadRequest("line too long")
            self._fill()

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def parse_head(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    # Leading empty lines before a request are allowed (RFC 9112 2.2).
    while lines and lines[0] == "":
        lines.pop(0)
    parts = lines[0].split(" ") if lines else []
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("bad request line")
    header_list = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("bad header line")
        header_list.append((name, value.strip()))
    return Request(parts[0], parts[1], parts[2], header_list)


class Origin(BackgroundServer):

    def __init__(self, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, alpn=None):
        self.tls = None
        if tls_cert:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(tls_cert, tls_key)
            if alpn:
                self.tls.set_alpn_protocols(list(alpn))
        self.connections = 0
        self.requests = 0
        self.peers = []
        self.last_request = None
        super().__init__((host, port), Handler)
        self.host = host

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def register(self, sock, peer) -> int:
        with self.lock:
            self.connections += 1
            self.peers.append(f"{peer[0]}:{peer[1]}")
            self.open_sockets.add(sock)
            return self.connections

    def replace_socket(self, old, new) -> None:
        with self.lock:
            self.open_sockets.discard(old)
            self.open_sockets.add(new)

    def stats(self) -> dict:
        with self.lock:
            return {"connections": self.connections, "requests": self.requests,
                    "peers": list(self.peers)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.sock = self.request
        self.sock.settimeout(IDLE_TIMEOUT_S)
        self.conn_id = self.server.register(self.sock, self.client_address)

    def finish(self):
        self.server.untrack(self.sock)
        try:
            self.sock.close()
        except OSError:
            pass

    def handle(self):
        try:
            if self.server.tls:
                plain = self.sock
                self.sock = self.server.tls.wrap_socket(plain, server_side=True)
                self.server.replace_socket(plain, self.sock)
            self.reader = Reader(self.sock)
            while self.serve_one():
                pass
        except (ClientGone, ConnectionError, socket.timeout, ssl.SSLError, OSError):
            pass
        except BadRequest as e:
            self.respond(400, f"{e}\n".encode(), close=True)

    # ---- one request ----

    def serve_one(self) -> bool:
        try:
            head = self.reader.head()
        except ClientGone:
            return False
        req = parse_head(head)
        with self.server.lock:
            self.server.requests += 1
            self.server.last_request = req
        body, chunked = self.read_body(req)
        close = req.wants_close()
        route = req.path
        if route == "/ws" and "websocket" in req.tokens("upgrade"):
            self.websocket(req)
            return False
        if route.startswith("/bytes/"):
            return self.bytes_endpoint(req, route[len("/bytes/"):], close)
        if route == "/echo":
            if req.method not in ("POST", "PUT"):
                return self.respond(405, b"POST or PUT\n", close=close)
            return self.respond_json({
                "length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                "method": req.method, "chunked": chunked, "headers": req.headers,
            }, close)
        if route == "/headers":
            return self.respond_json({
                "method": req.method, "target": req.target, "version": req.version,
                "headers": req.headers, "header_list": req.header_list,
                "conn_id": self.conn_id, "peer": f"{self.client_address[0]}:{self.client_address[1]}",
            }, close)
        if route == "/slow":
            time.sleep(int(req.query.get("ms", ["1000"])[0]) / 1000.0)
            return self.respond(200, b"slow\n", close=close, method=req.method)
        if route == "/conn-id":
            return self.respond(200, f"{self.conn_id}\n".encode(), close=close, method=req.method)
        if route == "/stats":
            return self.respond_json(self.server.stats(), close)
        if route.startswith("/status/"):
            return self.respond(int(route[len("/status/"):]), b"", close=close, method=req.method)
        if route == "/close":
            return self.respond(200, b"closing\n", close=True, method=req.method)
        return self.respond(200, b"hello from origin\n", close=close, method=req.method)

    def read_body(self, req: Request):
        te = req.tokens("transfer-encoding")
        has_length = "content-length" in req.headers
        if te and has_length:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if not te and not has_length:
            return b"", False
        if "100-continue" in req.tokens("expect"):
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if te:
            if te != {"chunked"}:
                raise BadRequest("unsupported transfer coding")
            return self.read_chunked(), True
        try:
            length = int(req.headers["content-length"])
        except ValueError:
            raise BadRequest("bad Content-Length") from None
        if length < 0:
            raise BadRequest("bad Content-Length")
        return self.reader.exact(length), False

    def read_chunked(self) -> bytes:
        parts = []
        while True:
            size_text = self.reader.line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest("bad chunk size") from None
            if size == 0:
                while self.reader.line():  # trailers end with an empty line
                    pass
                return b"".join(parts)
            parts.append(self.reader.exact(size))
            if self.reader.exact(2) != b"\r\n":
                raise BadRequest("chunk not followed by CRLF")

    # ---- responses ----

    def respond(self, status: int, body: bytes, close: bool, headers=(), method: str = "GET") -> bool:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if status >= 200 and status not in (204, 304):
            lines.append(f"Content-Length: {len(body)}")
        if not any(k.lower() == "content-type" for k, _ in headers):
            lines.append("Content-Type: text/plain")
        lines.append("Connection: close" if close else "Connection: keep-alive")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if method != "HEAD" and status not in (204, 304):
            payload += body
        self.sock.sendall(payload)
        return not close

    def respond_json(self, value, close: bool) -> bool:
        body = json.dumps(value).encode()
        return self.respond(200, body, close, headers=[("Content-Type", "application/json")])

    def bytes_endpoint(self, req: Request, count_text: str, close: bool) -> bool:
        try:
            count = int(count_text)
        except ValueError:
            return self.respond(404, b"bad count\n", close=close)
        body = deterministic_bytes(count)
        digest = hashlib.sha256(body).hexdigest()
        if req.query.get("chunked") != ["1"]:
            return self.respond(200, body, close, method=req.method, headers=[
                ("X-Content-SHA256", digest), ("Content-Type", "application/octet-stream")])
        head = (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"X-Content-SHA256: {digest}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        self.sock.sendall(head.encode())
        step = 65536
        for offset in range(0, count, step):
            chunk = body[offset:offset + step]
            self.sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        self.sock.sendall(b"0\r\n\r\n")
        return not close

    # ---- WebSocket ----

    def websocket(self, req: Request) -> None:
        key = req.headers.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.sock.sendall((
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        while True:
            opcode, payload = read_ws_frame(self.reader)
            if opcode == 0x9:  # ping -> pong
                self.sock.sendall(ws_frame(0xA, payload))
                continue
            self.sock.sendall(ws_frame(opcode, payload))
            if opcode == 0x8:
                return


def ws_frame(opcode: int, payload: bytes, mask: bytes = None) -> bytes:
    """One final WebSocket frame; masked when mask (4 bytes) is given, as a client must."""
    head = bytes([0x80 | opcode])
    mask_bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def read_ws_frame(reader: Reader):
    """(opcode, unmasked payload) of the next frame from reader."""
    first, second = reader.exact(2)
    n = second & 0x7F
    if n == 126:
        n = struct.unpack("!H", reader.exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", reader.exact(8))[0]
    mask = reader.exact(4) if second & 0x80 else None
    payload = reader.exact(n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


def start_origin(host="127.0.0.1", port=0, tls_cert=None, tls_key=None, alpn=None) -> Origin:
    """An origin serving in background threads of this process; call .stop() when done."""
    return Origin(host, port, tls_cert, tls_key, alpn).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    opts = parser.parse_args()
    origin = Origin(opts.host, opts.port, opts.tls_cert, opts.tls_key)
    print(f"ready {origin.port}", flush=True)
    try:
        origin.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        origin.server_close()


if __name__ == "__main__":
    sys.exit(main())
