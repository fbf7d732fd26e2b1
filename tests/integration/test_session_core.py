"""Regression tests for the session core (issue 9, "Defects to fix" 1-20; SPEC §4 Framing,
Closing, deadlines, descriptors, §4.1 credential checks, §8 admin, §9 log fields).

Each test drives real sockets on loopback and asserts what a user would notice: what the origin
received, what the client received and how the connection ended, and the access-log line.
Scripted origins below answer with exact bytes where the test origin (origin.py) cannot.
"""

import base64
import hashlib
import json
import os
import re
import socket
import socketserver
import ssl
import stat
import threading
import time
import unittest
import warnings

import certs
import core_support as cs
import harness
import origin
from background_server import BackgroundServer
from test_tls import http_get_over, names_port, trusting

HOST = harness.HOST
ALLOW_ALL = "<proxy>\n  ALLOW\n"
INTERCEPT = "<ssl-intercept>\n  ssl.forward_proxy(yes)\n<proxy>\n  ALLOW\n"
WAIT_S = 10.0


# ---- scripted origins -----------------------------------------------------------------------


class ScriptedServer(BackgroundServer):
    """A server whose every connection runs script(server, conn, number); conn is a TLS socket
    (ragged EOFs raised, not hidden) when tls is set. rcvbuf shrinks the accepted sockets'
    receive buffers so that a peer's writes back up quickly."""

    def __init__(self, script, tls: bool = False, rcvbuf: int = 0, cert=None, key=None):
        self.script = script
        self.rcvbuf = rcvbuf
        self.context = None
        if tls:
            c = certs.test_certs()
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(cert or c.server_cert, key or c.server_key)
        self.connections = 0
        self.events = []  # what the scripts observed, in order
        self.done = threading.Event()  # set when the test ends, to release blocked scripts
        super().__init__((HOST, 0), _ScriptedHandler)

    def server_bind(self):
        if self.rcvbuf:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        super().server_bind()

    def note(self, event) -> None:
        with self.lock:
            self.events.append(event)

    def stop(self) -> None:
        self.done.set()
        super().stop()


class _ScriptedHandler(socketserver.BaseRequestHandler):
    def handle(self):
        server = self.server
        conn = self.request
        server.track(conn)
        with server.lock:
            server.connections += 1
            number = server.connections
        try:
            conn.settimeout(20)
            if server.context:
                plain = conn
                server.context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
                conn = server.context.wrap_socket(plain, server_side=True,
                                                  suppress_ragged_eofs=False)
                server.untrack(plain)
                server.track(conn)
            server.script(server, conn, number)
        except (OSError, ssl.SSLError, origin.ClientGone) as e:
            server.note(("error", number, repr(e)))
        finally:
            server.untrack(conn)
            try:
                conn.close()
            except OSError:
                pass


def start_scripted(test, script, **kw) -> ScriptedServer:
    server = ScriptedServer(script, **kw).start()
    test.addCleanup(server.stop)
    return server


def start_proxy(test, policy: str = ALLOW_ALL, **sections) -> harness.Handoff:
    proxy = harness.Handoff(policy_text=policy, **sections)
    test.addCleanup(proxy.close)
    return proxy


def start_origin(test, **kw) -> origin.Origin:
    server = origin.start_origin(**kw)
    test.addCleanup(server.stop)
    return server


def start_tls_origin(test, cert=None, key=None) -> origin.Origin:
    c = certs.test_certs()
    return start_origin(test, tls_cert=cert or c.server_cert, tls_key=key or c.server_key)


def raw_connect(proxy: harness.Handoff, timeout: float = WAIT_S, source: str = None):
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout,
                                    source_address=(source, 0) if source else None)
    sock.settimeout(timeout)
    return sock


def tunnel_from(proxy: harness.Handoff, port: int, source: str = None) -> socket.socket:
    """A socket on which CONNECT 127.0.0.1:port was answered 200 (from source, if given)."""
    sock = raw_connect(proxy, source=source)
    sock.sendall(f"CONNECT {HOST}:{port} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
    reader = origin.Reader(sock)
    status, _, _ = cs.read_head(reader)
    if status != 200:
        sock.close()
        raise AssertionError(f"CONNECT {HOST}:{port} answered {status}")
    assert not reader.buf, reader.buf
    return sock


def intercepted(proxy: harness.Handoff, port: int, source: str = None,
                ragged_eof_raises: bool = True) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:port through the proxy, verified against its CA."""
    sock = tunnel_from(proxy, port, source)
    context = trusting(proxy.ca_cert)
    if ragged_eof_raises:
        # Some builds turn this on by default, which makes a bare TCP close look clean.
        context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return context.wrap_socket(
        sock, server_hostname="localhost", suppress_ragged_eofs=not ragged_eof_raises)


def absolute(method: str, server_port: int, path: str, headers=(), body: bytes = b"") -> bytes:
    lines = [f"{method} http://{HOST}:{server_port}{path} HTTP/1.1", f"Host: {HOST}:{server_port}",
             *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_to_end(sock, limit_s: float = WAIT_S, chunk_size: int = 65536, pause: float = 0) -> tuple:
    """(bytes, how it ended): 'clean' (TLS: close_notify received; plain TCP: FIN), 'eof' (TLS
    ended by a bare TCP close, without close_notify), 'reset', or 'timeout'. A pause after each
    read of chunk_size bytes makes a slow reader."""
    data = b""
    deadline = time.monotonic() + limit_s
    while True:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(chunk_size)
        except ssl.SSLEOFError:
            return data, "eof"
        except ssl.SSLZeroReturnError:
            return data, "clean"
        except ConnectionResetError:
            return data, "reset"
        except socket.timeout:
            return data, "timeout"
        except ssl.SSLError as e:
            return data, f"ssl error {e}"
        if not chunk:
            return data, "clean"
        data += chunk
        if time.monotonic() >= deadline:
            return data, "timeout"
        if pause:
            time.sleep(pause)


def client_hello(sni: str = "localhost") -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    out = ssl.MemoryBIO()
    obj = context.wrap_bio(ssl.MemoryBIO(), out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def metric_values(proxy: harness.Handoff, name: str) -> list:
    """Every sample value of metric `name` (any labels) on /metrics; [] when it is absent."""
    text = proxy.admin_get("/metrics").decode()
    return [float(m.group(1)) for m in
            re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_lines_naming(proxy: harness.Handoff, needle: str) -> list:
    return [e for e in proxy.log_lines() if needle in (e.get("url") or e.get("target") or "")]


def settle(seconds: float = 0.5) -> None:
    """Time for a late (wrong) extra log line or request to show up before counting them."""
    time.sleep(seconds)


# ---- 1, 2, 3, 14: framing ---------------------------------------------------------------------


class FramingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)
        cls.proxy = harness.Handoff(policy_text=ALLOW_ALL)
        cls.addClassCleanup(cls.proxy.close)

    def test_01_connection_naming_content_length_does_not_unframe_a_request_body(self):
        inner = b"GET /smuggled HTTP/1.1\r\nHost: origin\r\n\r\n"
        before = self.origin.stats()["requests"]
        with raw_connect(self.proxy) as sock:
            sock.sendall(absolute("POST", self.origin.port, "/echo",
                                  ["Connection: content-length"], inner))
            response = cs.read_response(origin.Reader(sock))
        self.assertEqual(response.status, 200, response)
        self.assertEqual(json.loads(response.body)["length"], len(inner), response)
        settle()
        self.assertEqual(self.origin.stats()["requests"] - before, 1,
                         "the origin read the request body as a second request")
        self.assertNotEqual(self.origin.last_request.path, "/smuggled")

    def test_01_connection_naming_content_length_does_not_unframe_a_response_body(self):
        inner = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"

        def script(server, conn, number):
            reader = origin.Reader(conn)
            reader.head()
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: "
                         + str(len(inner)).encode() + b"\r\n\r\n" + inner)
            reader.head()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")

        server = start_scripted(self, script)
        with raw_connect(self.proxy, timeout=5) as sock:
            reader = origin.Reader(sock)
            sock.sendall(absolute("GET", server.port, "/first"))
            first = cs.read_response(reader)
            self.assertEqual(first.header("Content-Length"), str(len(inner)),
                             f"the response lost its framing: {first}")
            self.assertEqual(first.body, inner)
            sock.sendall(absolute("GET", server.port, "/second"))
            second = cs.read_response(reader)
        self.assertEqual(second.body, b"second", second)

    def test_02_absolute_form_request_carries_the_urls_authority_as_host(self):
        with raw_connect(self.proxy) as sock:
            sock.sendall(f"GET http://{HOST}:{self.origin.port}/headers HTTP/1.1\r\n"
                         "Host: other.example\r\n\r\n".encode())
            response = cs.read_response(origin.Reader(sock))
        self.assertEqual(response.status, 200, response)
        seen = json.loads(response.body)["headers"]
        self.assertEqual(seen.get("host"), f"{HOST}:{self.origin.port}", seen)

    def test_03_local_page_body_never_reaches_an_idle_origin_connection(self):
        inner = b"GET /smuggled-through-pac HTTP/1.1\r\nHost: origin\r\n\r\n"
        before = self.origin.stats()["requests"]
        with raw_connect(self.proxy) as sock:
            reader = origin.Reader(sock)
            sock.sendall(absolute("GET", self.origin.port, "/conn-id"))
            self.assertEqual(cs.read_response(reader).status, 200)
            sock.sendall(f"GET /proxy.pac HTTP/1.1\r\nHost: {HOST}:{self.proxy.port}\r\n"
                         f"Content-Length: {len(inner)}\r\n\r\n".encode() + inner)
            pac = cs.read_response(reader)
            self.assertLess(pac.status, 500, pac)
            settle()
            self.assertEqual(self.origin.stats()["requests"] - before, 1,
                             f"the local page's body reached the origin: "
                             f"{self.origin.last_request.path}")
            if pac.header("Connection") != "close":
                sock.sendall(absolute("GET", self.origin.port, "/conn-id"))
                self.assertEqual(cs.read_response(reader).status, 200)

    def _coded_upload_script(self, server, conn, number):
        reader = origin.Reader(conn)
        head = reader.head()
        server.note(("head", head))
        while True:  # a chunked body, whatever its codings
            size = int(reader.line().split(b";")[0], 16)
            if size == 0:
                while reader.line():
                    pass
                break
            reader.exact(size + 2)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                     b"4\r\ngzip\r\n0\r\n\r\n")

    def test_14_gzip_before_chunked_is_kept_in_both_directions(self):
        server = start_scripted(self, self._coded_upload_script)
        with raw_connect(self.proxy) as sock:
            sock.sendall(absolute("POST", server.port, "/coded",
                                  ["Transfer-Encoding: gzip, chunked"]) + b"4\r\nabcd\r\n0\r\n\r\n")
            response = cs.read_response(origin.Reader(sock))
        forwarded = next(e[1] for e in server.events if e[0] == "head").decode("latin-1")
        te = re.search(r"^transfer-encoding:\s*(.*)$", forwarded, re.I | re.M)
        self.assertIsNotNone(te, forwarded)
        self.assertRegex(te.group(1).lower(), r"gzip\s*,\s*chunked", forwarded)
        self.assertRegex((response.header("Transfer-Encoding") or "").lower(),
                         r"gzip\s*,\s*chunked", response)
        self.assertEqual(response.body, b"gzip")


# ---- 4: TLS handshake deadline -----------------------------------------------------------------


class TlsHandshakeDeadlineTest(unittest.TestCase):
    TIMEOUT_S = 2

    def proxy(self):
        return start_proxy(self, INTERCEPT, proxy={"tls_handshake_timeout_s": str(self.TIMEOUT_S)})

    def assert_logged_as_handshake_timeout(self, proxy, port):
        entry = proxy.wait_log(lambda e: names_port(e, port) and e.get("action") == "error")
        self.assertRegex(entry.get("error", ""), re.compile(r"handshake.*tim|tim.*handshake", re.I),
                         entry)

    def test_04_client_silent_after_its_client_hello_is_closed(self):
        server = start_tls_origin(self)
        proxy = self.proxy()
        sock = tunnel_from(proxy, server.port)
        self.addCleanup(sock.close)
        started = time.monotonic()
        sock.sendall(client_hello())
        _, ended = read_to_end(sock, limit_s=self.TIMEOUT_S + 6)
        elapsed = time.monotonic() - started
        self.assertNotEqual(ended, "timeout", "the proxy held a silent TLS handshake open")
        self.assertLess(elapsed, self.TIMEOUT_S + 4)
        self.assert_logged_as_handshake_timeout(proxy, server.port)

    def test_04_origin_that_never_finishes_its_handshake_is_given_up(self):
        def silent(server, conn, number):
            server.done.wait(30)  # accepts, reads nothing, answers nothing

        server = start_scripted(self, silent)
        proxy = self.proxy()
        started = time.monotonic()
        outcome = "timeout"
        try:
            tls = intercepted(proxy, server.port)
            tls.settimeout(self.TIMEOUT_S + 6)
            with tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                data, outcome = read_to_end(tls, self.TIMEOUT_S + 6)
                if data.startswith(b"HTTP/1.1 5"):
                    outcome = "answered 5xx"
        except socket.timeout:
            outcome = "timeout"
        except (ssl.SSLError, ConnectionError) as e:
            outcome = repr(e)
        elapsed = time.monotonic() - started
        self.assertNotEqual(outcome, "timeout", "the proxy waited on a silent origin handshake")
        self.assertLess(elapsed, self.TIMEOUT_S + 4, outcome)
        self.assert_logged_as_handshake_timeout(proxy, server.port)


# ---- 5: queued bytes are delivered before a close ------------------------------------------------


class GracefulCloseTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)
        cls.proxy = harness.Handoff(policy_text=ALLOW_ALL)
        cls.addClassCleanup(cls.proxy.close)

    def assert_whole(self, data: bytes, size: int, ended: str) -> None:
        head, sep, body = data.partition(b"\r\n\r\n")
        self.assertTrue(sep and head.startswith(b"HTTP/1.1 200"), data[:300])
        self.assertIn(f"content-length: {size}".encode(), head.lower())
        self.assertEqual(len(body), size,
                         f"{size - len(body)} bytes lost; the connection ended by {ended}")
        self.assertEqual(hashlib.sha256(body).hexdigest(), cs.expected_sha256(size))

    def test_05_answer_queued_when_the_client_half_closes_arrives_whole(self):
        # Smaller than the proxy's write-queue bound, so the whole answer is read from the
        # origin and queued while the client, with a small receive buffer, has not read it.
        size = 200_000
        path = f"/bytes/{size}?half-close"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        with sock:
            sock.connect((self.proxy.host, self.proxy.port))
            sock.sendall(absolute("GET", self.origin.port, path))
            time.sleep(0.5)  # the answer is in the proxy's queue now
            sock.shutdown(socket.SHUT_WR)
            time.sleep(0.5)  # the proxy has seen the half-close
            data, ended = read_to_end(sock, 30)
        self.assert_whole(data, size, ended)
        entry = self.proxy.wait_log(lambda e: e.get("url", "").endswith(path))
        self.assertEqual(entry.get("action"), "allowed", entry)

    def test_05_large_body_with_an_immediate_half_close_arrives_whole(self):
        size = 4_000_000
        path = f"/bytes/{size}?immediate-half-close"
        with raw_connect(self.proxy, timeout=30) as sock:
            sock.sendall(absolute("GET", self.origin.port, path))
            sock.shutdown(socket.SHUT_WR)
            data, ended = read_to_end(sock, 30, chunk_size=32768, pause=0.002)
        self.assert_whole(data, size, ended)
        entry = self.proxy.wait_log(lambda e: e.get("url", "").endswith(path))
        self.assertEqual(entry.get("action"), "allowed", entry)

    def test_05_slow_reader_after_a_closing_answer_gets_every_byte(self):
        size = 3_000_000
        path = f"/bytes/{size}?slow-reader"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        with sock:
            sock.connect((self.proxy.host, self.proxy.port))
            sock.sendall(absolute("GET", self.origin.port, path, ["Connection: close"]))
            time.sleep(7)  # longer than any short linger timer, far below idle_timeout_s
            data, ended = read_to_end(sock, 30)
        self.assert_whole(data, size, ended)
        entry = self.proxy.wait_log(lambda e: e.get("url", "").endswith(path))
        self.assertEqual(entry.get("action"), "allowed", entry)



# ---- 6, 7, 11, 12, 15, 20: intercepted connections -----------------------------------------------


class InterceptedSessionTest(unittest.TestCase):
    def test_06_origin_closing_after_its_answer_gives_one_log_line_and_a_clean_close(self):
        def answer_and_close(server, conn, number):
            origin.Reader(conn).head()
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 8\r\n\r\n"
                         b"closing\n")
            time.sleep(0.05 * (number - 1))  # the origin's close comes at a different moment
            conn.settimeout(1)
            try:
                conn.unwrap()
            except (OSError, ssl.SSLError):
                pass

        server = start_scripted(self, answer_and_close, tls=True)
        proxy = start_proxy(self, INTERCEPT)
        tries = 4
        for attempt in range(tries):
            with intercepted(proxy, server.port) as tls:
                tls.sendall(f"GET /close?try={attempt} HTTP/1.1\r\nHost: localhost\r\n\r\n"
                            .encode())
                data, ended = read_to_end(tls)
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
            self.assertTrue(data.endswith(b"closing\n"), data[-200:])
            self.assertNotEqual(ended, "reset", "the proxy reset the client connection")
            proxy.wait_log(lambda e, a=attempt: e.get("url", "").endswith(f"/close?try={a}"))
        settle(1.0)
        lines = [e for e in proxy.log_lines() if names_port(e, server.port)]
        for attempt in range(tries):
            self.assertEqual([e.get("action") for e in lines
                              if e.get("url", "").endswith(f"/close?try={attempt}")],
                             ["allowed"], lines)
        self.assertEqual([e for e in lines if e.get("action") == "error"], [], lines)

    def test_07_next_request_after_the_origin_closed_an_idle_connection_gets_a_new_one(self):
        def answer_once_then_close(server, conn, number):
            origin.Reader(conn).head()
            body = f"connection {number}".encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            time.sleep(0.3)
            conn.settimeout(1)
            try:
                conn.unwrap()
            except (OSError, ssl.SSLError):
                pass

        server = start_scripted(self, answer_once_then_close, tls=True)
        proxy = start_proxy(self, INTERCEPT)
        with intercepted(proxy, server.port) as tls:
            reader = origin.Reader(tls)
            tls.sendall(b"GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n")
            first = cs.read_response(reader)
            self.assertEqual(first.body, b"connection 1")
            time.sleep(1.0)  # the origin has closed its idle connection by now
            tls.sendall(b"GET /two HTTP/1.1\r\nHost: localhost\r\n\r\n")
            second = cs.read_response(reader)
        self.assertEqual(second.status, 200, second)
        self.assertEqual(second.body, b"connection 2")

    def test_11_tls_origin_ending_without_close_notify_is_logged_as_a_truncation(self):
        def truncating(server, conn, number):
            origin.Reader(conn).head()
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 50_000)
            # close() without unwrap(): a bare TCP close, no close_notify

        server = start_scripted(self, truncating, tls=True)
        proxy = start_proxy(self, INTERCEPT)
        with intercepted(proxy, server.port) as tls:
            tls.sendall(b"GET /truncated HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data, ended = read_to_end(tls)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
        entry = proxy.wait_log(lambda e: e.get("url", "").endswith("/truncated"))
        self.assertEqual(entry.get("action"), "error", entry)
        self.assertRegex(entry.get("error", ""),
                         re.compile(r"truncat|close_notify|unexpected eof", re.I), entry)
        self.assertNotEqual(ended, "clean",
                            f"the truncation was passed on to the client as a clean end "
                            f"({len(data)} bytes)")

    def test_12_session_resumed_without_verification_is_not_reused_where_it_must_verify(self):
        c = certs.test_certs()
        server = start_tls_origin(self, c.self_signed_cert, c.self_signed_key)
        proxy = start_proxy(self, "<ssl-intercept>\n"
                                  "  client.address=127.0.0.2 ssl.forward_proxy(yes) "
                                  "ssl.verify_server(no)\n"
                                  "  ssl.forward_proxy(yes)\n"
                                  "<proxy>\n  ALLOW\n")
        with intercepted(proxy, server.port, source="127.0.0.2") as tls:
            status, _, _ = http_get_over(tls, "localhost", "/unverified")
        self.assertEqual(status, 200, "verify_server(no) must reach the self-signed origin")
        requests = server.stats()["requests"]
        with intercepted(proxy, server.port, source=HOST, ragged_eof_raises=False) as tls:
            status, _, body = http_get_over(tls, "localhost", "/must-verify")
        self.assertEqual(status, 502, f"a cached unverified session was resumed: {body[:200]!r}")
        self.assertEqual(server.stats()["requests"], requests)
        resumed = metric_values(proxy, 'handoff_tls_handshakes_total{leg="origin",resumed="yes"}')
        self.assertIn(resumed, ([], [0.0]))

    def test_15_bytes_after_the_client_hello_beyond_the_hold_reach_the_tls_leg(self):
        # A ClientHello and, in the same write, more than detection holds (16 KiB): the bytes
        # past the hold must reach the TLS server in order. Here they are not a valid record,
        # so the handshake must fail on them at once; had they been dropped, the handshake would
        # wait for the client until tls_handshake_timeout_s.
        server = start_tls_origin(self)
        proxy = start_proxy(self, INTERCEPT, proxy={"tls_handshake_timeout_s": "20"})
        sock = tunnel_from(proxy, server.port)
        self.addCleanup(sock.close)
        started = time.monotonic()
        sock.sendall(client_hello() + b"\x17\x03\x03\x40\x00" + b"\0" * 20000)
        data, ended = read_to_end(sock, 15)
        elapsed = time.monotonic() - started
        self.assertNotEqual(ended, "timeout", "the proxy waited for more of the handshake")
        self.assertLess(elapsed, 10, "the bytes past the hold did not reach the TLS server")
        entry = proxy.wait_log(lambda e: names_port(e, server.port))
        self.assertEqual(entry.get("action"), "error", entry)
        self.assertNotRegex(entry.get("error", ""), r"(?i)timed out", entry)

    def test_20_client_leg_ends_with_close_notify(self):
        server = start_tls_origin(self)
        proxy = start_proxy(self, INTERCEPT)
        with intercepted(proxy, server.port) as tls:
            tls.sendall(b"GET /close HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data, ended = read_to_end(tls)
        self.assertTrue(data.endswith(b"closing\n"), data[-200:])
        self.assertEqual(ended, "clean", "the proxy ended TLS with a bare TCP close")

    def test_20_origin_leg_ends_with_close_notify(self):
        def answer_then_watch_the_end(server, conn, number):
            origin.Reader(conn).head()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            data, ended = read_to_end(conn, WAIT_S)
            server.note(("end", ended))

        server = start_scripted(self, answer_then_watch_the_end, tls=True)
        proxy = start_proxy(self, INTERCEPT)
        with intercepted(proxy, server.port) as tls:
            tls.sendall(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n")
            self.assertEqual(cs.read_response(origin.Reader(tls)).body, b"ok")
            tls.settimeout(2)
            try:
                tls.unwrap()  # the client ends TLS properly; the proxy must do the same
            except (OSError, ssl.SSLError):
                pass
        ends = harness.wait_until(lambda: [e for e in server.events if e[0] in ("end", "error")],
                                  WAIT_S + 2, what="the origin saw its connection end")
        self.assertEqual(ends[0], ("end", "clean"), "the proxy ended TLS towards the origin "
                         f"without close_notify: {server.events}")


# ---- 8: an upload still queued to one origin, then a request to another --------------------------


class OriginSwitchTest(unittest.TestCase):
    def test_08_upload_still_queued_to_origin_a_does_not_kill_a_request_to_origin_b(self):
        size = 3 * 1024 * 1024

        def early_answer_then_slow_reads(server, conn, number):
            origin.Reader(conn).head()
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n"
                         b"Content-Length: 2\r\n\r\nA!")
            got = 0
            while got < size and not server.done.is_set():
                chunk = conn.recv(16384)  # slowly: the proxy's queue to A stays full
                if not chunk:
                    break
                got += len(chunk)
                time.sleep(0.005)
            server.note(("read", got))

        a = start_scripted(self, early_answer_then_slow_reads, rcvbuf=4096)
        b = start_origin(self)
        proxy = start_proxy(self)
        upload = os.urandom(size)
        payload = (absolute("POST", a.port, "/upload", body=upload)
                   + absolute("GET", b.port, "/conn-id"))
        with raw_connect(proxy, timeout=WAIT_S * 2) as sock:
            sender = threading.Thread(target=_send_quietly, args=(sock, payload), daemon=True)
            sender.start()
            reader = origin.Reader(sock)
            first = second = None
            try:
                first = cs.read_response(reader)
                second = cs.read_response(reader)
            except (origin.ClientGone, ConnectionError) as e:
                self.fail(f"the proxy ended the client connection ({e!r}) after "
                          f"{'A' if first else 'no'} answer; origin A: {a.events}")
            except socket.timeout:
                self.fail("the request to origin B was never answered")
            finally:
                sender.join(timeout=WAIT_S)
        self.assertEqual(first.body, b"A!")
        self.assertEqual(second.status, 200, second)
        self.assertEqual(b.stats()["requests"], 1)


def _send_quietly(sock, payload: bytes) -> None:
    try:
        sock.sendall(payload)
    except OSError:
        pass


# ---- 9: running out of descriptors --------------------------------------------------------------


class DescriptorExhaustionTest(unittest.TestCase):
    LIMIT = 64

    def start_limited(self, soft: int, hard: int) -> harness.Handoff:
        proxy = harness.Handoff(policy_text=ALLOW_ALL, start=False)
        self.addCleanup(proxy.close)
        wrapper = os.path.join(proxy.dir, "limited-nofile")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec prlimit --nofile={soft}:{hard} -- {proxy.binary} \"$@\"\n")
        os.chmod(wrapper, stat.S_IRWXU)
        proxy.binary = wrapper
        proxy.start()
        return proxy

    def test_09_descriptor_limit_is_raised_to_the_hard_limit_at_start(self):
        proxy = self.start_limited(self.LIMIT, 4096)
        with open(f"/proc/{proxy.pid}/limits") as f:
            line = next(l for l in f if l.startswith("Max open files"))
        self.assertEqual(line.split()[3:5], ["4096", "4096"], line)

    def test_09_accept_pauses_without_spinning_and_resumes_when_descriptors_free_up(self):
        server = start_origin(self)
        # Soft and hard limit both: the proxy may raise its soft limit to the hard one.
        proxy = self.start_limited(self.LIMIT, self.LIMIT)
        fillers = []
        waiting = None
        try:
            for _ in range(self.LIMIT * 2):
                fillers.append(socket.create_connection((proxy.host, proxy.port), timeout=2))
            time.sleep(1.0)
            # A client arriving while no descriptor is free waits in the backlog; it is
            # neither dropped nor refused.
            waiting = raw_connect(proxy)
            waiting.sendall(absolute("GET", server.port, "/while-out-of-descriptors"))
            cpu_before = cpu_seconds(proxy.pid)
            time.sleep(3.0)
            spent = cpu_seconds(proxy.pid) - cpu_before
        finally:
            for s in fillers:
                s.close()
        self.addCleanup(waiting.close)
        self.assertTrue(proxy.alive(), proxy.stderr_text()[-2000:])
        self.assertLess(spent, 0.5, f"the accept loop spun: {spent:.2f}s CPU in 3s")
        try:
            response = cs.read_response(origin.Reader(waiting))
        except (origin.ClientGone, ConnectionError, socket.timeout) as e:
            self.fail(f"the client that arrived while descriptors ran out was dropped: {e!r}")
        self.assertEqual(response.status, 200, response)
        url = f"{server.url}/after-emfile"

        def served():
            proc = harness.curl("-w", "|%{http_code}", url, proxy=proxy.url, timeout=3)
            return proc.stdout.endswith(b"|200")

        try:
            harness.wait_until(served, 10, interval=0.5, what="service after EMFILE")
        except TimeoutError:
            self.fail("the proxy stopped accepting after running out of descriptors:\n"
                      + proxy.stderr_text()[-2000:])
        said = [line for line in proxy.stderr_text().splitlines()
                if re.search(r"EMFILE|too many open files|descriptor", line, re.I)]
        self.assertLessEqual(len(said), 8, "the condition must be logged at most once a second")


# ---- 10: credential checks do not starve name resolution -----------------------------------------


def _bcrypt_hash(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 12))


def _basic(user: str, password: str) -> str:
    return "Proxy-Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class CredentialCheckTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)
        cls.proxy = harness.Handoff(policy_text=ALLOW_ALL,
                                    files={"users.htpasswd": f"alice:{_bcrypt_hash('right')}\n"},
                                    auth={"htpasswd": "users.htpasswd"})
        cls.addClassCleanup(cls.proxy.close)

    def timed(self, host: str, password: str, path: str) -> tuple:
        started = time.monotonic()
        with raw_connect(self.proxy, timeout=20) as sock:
            sock.sendall(f"GET http://{host}:{self.origin.port}{path} HTTP/1.1\r\n"
                         f"Host: {host}:{self.origin.port}\r\n{_basic('alice', password)}\r\n"
                         "Connection: close\r\n\r\n".encode())
            status = cs.read_response(origin.Reader(sock)).status
        return status, time.monotonic() - started

    def test_10_wrong_passwords_do_not_delay_name_resolution(self):
        status, _ = self.timed("localhost", "right", "/warm")  # the right password is now known
        self.assertEqual(status, 200)
        stop = threading.Event()

        def flood(n):
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    self.timed(HOST, f"wrong-{n}-{i}", "/flood")
                except (OSError, origin.ClientGone):
                    pass

        threads = [threading.Thread(target=flood, args=(n,), daemon=True) for n in range(24)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            status, elapsed = self.timed("localhost", "right", "/during-flood")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        self.assertEqual(status, 200)
        self.assertLess(elapsed, 1.0, f"resolving localhost took {elapsed:.2f}s behind "
                                      "password checks")

    def test_10_a_repeated_wrong_password_is_answered_without_a_new_hash(self):
        first_status, first = self.timed(HOST, "wrong-again", "/first-try")
        times = [self.timed(HOST, "wrong-again", f"/retry-{i}")[1] for i in range(3)]
        self.assertEqual(first_status, 407)
        self.assertGreater(first, 0.05, "the hash is too cheap here to tell a cached answer")
        self.assertLess(sorted(times)[1], first / 4,
                        f"first check {first:.3f}s, repeats {times}: failures are not remembered")


# ---- 13: access-log strings that are not UTF-8 ---------------------------------------------------


class LogEscapingTest(unittest.TestCase):
    def test_13_url_with_bytes_that_are_not_utf8_is_logged_escaped(self):
        server = start_origin(self)
        proxy = start_proxy(self)
        with raw_connect(proxy) as sock:
            sock.sendall(f"GET http://{HOST}:{server.port}/caf".encode() + b"\xe9-menu HTTP/1.1\r\n"
                         + f"Host: {HOST}:{server.port}\r\n\r\n".encode())
            cs.read_response(origin.Reader(sock))

        def line():
            with open(proxy.process.stdout_path, "rb") as f:
                return next((raw for raw in f.read().splitlines() if b"-menu" in raw), None)

        try:
            raw = harness.wait_until(line, 5, what="a log line naming the URL")
        except TimeoutError:
            self.fail("no access-log line carries the URL:\n"
                      + "\n".join(json.dumps(e) for e in proxy.log_lines()[-5:]))
        entry = json.loads(raw.decode("utf-8"))  # the line itself is valid UTF-8 JSON
        self.assertIn("url", entry, entry)
        self.assertRegex(entry["url"], r"/caf(\u00e9|\\x[eE]9|%[eE]9|\ufffd)-menu$", entry)


# ---- 16: the sessions snapshot and credential threads --------------------------------------------


class SessionsSnapshotTest(unittest.TestCase):
    @unittest.skip("item 16 is a data race on s->user; no check outside ThreadSanitizer can "
                   "observe it reliably, so no test here claims to")
    def test_16_sessions_snapshot_during_credential_checks(self):
        pass


# ---- 17: splice pipes ---------------------------------------------------------------------------


class SplicePipeTest(unittest.TestCase):
    def test_17_kernel_pipe_bytes_are_counted_and_released(self):
        server = start_origin(self)
        proxy = start_proxy(self, proxy={"protocol_detection": "no"})
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(WAIT_S)
        sock.connect((proxy.host, proxy.port))
        with sock:
            sock.sendall(f"CONNECT {HOST}:{server.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            reader = origin.Reader(sock)
            self.assertEqual(cs.read_head(reader)[0], 200)
            sock.sendall(b"GET /bytes/30000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIsNotNone(cs.read_head(reader))  # the relay runs; now stop reading
            self.assertNotEqual(metric_values(proxy, "handoff_splice_pipe_bytes"), [],
                                "/metrics has no handoff_splice_pipe_bytes")
            values = harness.wait_until(
                lambda: (lambda v: v if v and sum(v) > 0 else None)(
                    metric_values(proxy, "handoff_splice_pipe_bytes")),
                WAIT_S, what="handoff_splice_pipe_bytes above 0 for a stalled spliced tunnel")
            self.assertGreater(sum(values), 0)
        harness.wait_until(lambda: sum(metric_values(proxy, "handoff_splice_pipe_bytes")) == 0,
                           WAIT_S, what="pipe bytes released after the tunnel closed")


# ---- 18: the admin listener ----------------------------------------------------------------------


class AdminListenerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proxy = harness.Handoff(policy_text=ALLOW_ALL, proxy={"header_timeout_s": "2"})
        cls.addClassCleanup(cls.proxy.close)

    def admin_socket(self):
        return socket.create_connection((self.proxy.admin_host, self.proxy.admin_port), timeout=5)

    def test_18_head_is_answered_without_a_body(self):
        for path in ("/healthz", "/metrics", "/proxy.pac"):
            with self.subTest(path), self.admin_socket() as sock:
                sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
                             .encode())
                data, _ = read_to_end(sock, 5)
                head, sep, rest = data.partition(b"\r\n\r\n")
                self.assertTrue(sep and head.startswith(b"HTTP/1.1 200"), data[:200])
                self.assertEqual(rest, b"", f"HEAD {path} got a body")

    def test_18_silent_admin_client_is_closed_after_header_timeout(self):
        with self.admin_socket() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and nothing more
            started = time.monotonic()
            _, ended = read_to_end(sock, 8)
            elapsed = time.monotonic() - started
        self.assertNotEqual(ended, "timeout", "the admin listener kept a silent client")
        self.assertLess(elapsed, 6)


# ---- 19: a local page on a kept-alive proxy connection -------------------------------------------


class LocalPageKeepAliveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proxy = harness.Handoff(policy_text=ALLOW_ALL)
        cls.addClassCleanup(cls.proxy.close)

    def pac_request(self, path: str = "/proxy.pac") -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{self.proxy.port}\r\n\r\n".encode()

    def test_19_pac_then_silence_is_one_response_and_one_log_line(self):
        path = "/proxy.pac?silence"
        with raw_connect(self.proxy) as sock:
            reader = origin.Reader(sock)
            sock.sendall(self.pac_request(path))
            first = cs.read_response(reader)
            self.assertEqual(first.status, 200, first)
            sock.settimeout(1.5)
            try:
                extra = sock.recv(65536)
            except socket.timeout:
                extra = None  # still open, nothing unsolicited: right
            self.assertIsNone(extra, "unsolicited bytes after the PAC: "
                                     f"{reader.buf + (extra or b'')!r}")
        settle()
        lines = [e for e in self.proxy.log_lines() if "proxy.pac" in (e.get("url") or "")
                 or (e.get("status") == 400 and e.get("url") in ("", None))]
        self.assertEqual(len([e for e in lines if "silence" in (e.get("url") or "")]), 1, lines)
        self.assertEqual([e for e in lines if e.get("status") == 400], [], lines)

    def test_19_pipelined_request_after_a_local_page_is_answered(self):
        with raw_connect(self.proxy) as sock:
            reader = origin.Reader(sock)
            sock.sendall(self.pac_request("/proxy.pac?pipelined") + self.pac_request("/wpad.dat"))
            first = cs.read_response(reader)
            try:
                second = cs.read_response(reader)
            except (origin.ClientGone, ConnectionError, socket.timeout) as e:
                self.fail(f"the pipelined request was lost: {e!r}")
        self.assertEqual(first.status, 200, first)
        self.assertEqual(second.status, 200, second)
        self.assertIn(b"FindProxyForURL", second.body)


if __name__ == "__main__":
    unittest.main()
