"""Helpers shared by the core proxy tests: raw HTTP over a socket, files and checksums.

Raw sockets are only for what curl cannot send: malformed heads, pipelining, a WebSocket
conversation, a client that stops mid-head or vanishes.
"""

import hashlib
import os
import shutil
import socket
import tempfile
import unittest

import harness
import origin

HOST = harness.HOST
RAW_TIMEOUT_S = 15.0


class Response:
    def __init__(self, status: int, reason: str, headers: list, body: bytes):
        self.status = status
        self.reason = reason
        self.header_list = headers
        self.body = body

    def header(self, name: str):
        name = name.lower()
        return next((v for k, v in self.header_list if k.lower() == name), None)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<{self.status} {self.reason} {self.header_list} {self.body[:300]!r}>"


def connect(host: str, port: int, timeout: float = RAW_TIMEOUT_S) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_head(reader: origin.Reader):
    """(status, reason, [(name, value)]) of the next response head on reader."""
    lines = reader.head().decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise AssertionError(f"not an HTTP response: {lines[0]!r}")
    code, _, reason = rest.partition(" ")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return int(code), reason, headers


def read_response(reader: origin.Reader, head_request: bool = False) -> Response:
    """The next complete response (interim 1xx answers are skipped, except 101)."""
    while True:
        status, reason, headers = read_head(reader)
        if status == 101 or status >= 200:
            break
    response = Response(status, reason, headers, b"")
    if head_request or status in (101, 204, 304):
        return response
    te = (response.header("Transfer-Encoding") or "").lower()
    length = response.header("Content-Length")
    if "chunked" in te:
        parts = []
        while True:
            size = int(reader.line().split(b";")[0].strip(), 16)
            if size == 0:
                while reader.line():
                    pass
                break
            parts.append(reader.exact(size))
            reader.exact(2)
        response.body = b"".join(parts)
    elif length is not None:
        response.body = reader.exact(int(length))
    else:
        response.body = read_until_close(reader)
    return response


def read_until_close(reader: origin.Reader) -> bytes:
    data = reader.buf
    reader.buf = b""
    while True:
        try:
            chunk = reader.sock.recv(65536)
        except (ConnectionError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data


def exchange(host: str, port: int, payload: bytes, timeout: float = RAW_TIMEOUT_S) -> Response:
    """Send payload on a fresh connection and read one response."""
    with connect(host, port, timeout) as sock:
        sock.sendall(payload)
        return read_response(origin.Reader(sock))


def temp_dir(test: unittest.TestCase) -> str:
    path = tempfile.mkdtemp(prefix="handoff-core-")
    test.addCleanup(shutil.rmtree, path, True)
    return path


def random_file(directory: str, size: int, name: str = "body.bin"):
    """(path, sha256) of a new file of size random bytes."""
    data = os.urandom(size)
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    return path, hashlib.sha256(data).hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_sha256(n: int) -> str:
    """What /bytes/N must hash to, computed here rather than trusted from the origin."""
    return hashlib.sha256(origin.deterministic_bytes(n)).hexdigest()


class FullBacklogListener:
    """A loopback port whose accept queue is full: the kernel drops further SYNs, so a
    connect to it neither succeeds nor fails until the connector gives up."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((HOST, 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(8):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.5)
            self.fillers.append(filler)
            try:
                filler.connect((HOST, self.port))
            except socket.timeout:
                return  # this SYN was dropped: the queue is full
        raise RuntimeError("could not fill the accept queue of a listen(0) socket")

    def close(self) -> None:
        for s in self.fillers:
            s.close()
        self.listener.close()
