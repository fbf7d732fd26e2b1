"""The policy as the running proxy and the command line apply it (SPEC §2, §5, §7, §9).

Every expected FILE:LINE is computed from the policy text the test writes, so a proxy that
names the wrong rule, or decides with the wrong rule, fails.
"""

import os
import random
import re
import shutil
import socket
import socketserver
import tempfile
import threading
import unittest

import harness
import origin

HOST = harness.HOST
IO_TIMEOUT_S = 10.0
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXAMPLES = os.path.join(REPO, "examples")


# ---- policy text ---------------------------------------------------------------------------


def line_of(text: str, fragment: str) -> int:
    """1-based number of the only line of text that contains fragment."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if fragment in line]
    if len(hits) != 1:
        raise ValueError(f"{fragment!r} is on lines {hits} of the policy, expected exactly one")
    return hits[0]


def column_of(text: str, line: int, fragment: str) -> int:
    """1-based column where fragment starts on that line."""
    col = text.splitlines()[line - 1].find(fragment)
    if col < 0:
        raise ValueError(f"{fragment!r} not on line {line}")
    return col + 1


def location_pattern(path: str, line: int, col: int = None) -> str:
    """FILE:LINE[:COL] where FILE is the policy path as resolved or as written in the config."""
    name = re.escape(os.path.basename(path))
    where = f"(?:{re.escape(path)}|(?<![\\w/.-]){name}):{line}"
    if col is not None:
        where += f":{col}"
    return where + r"(?!\d)"


def names(text: str, path: str, line: int, col: int = None) -> bool:
    return re.search(location_pattern(path, line, col), text or "") is not None


# ---- raw HTTP over sockets -------------------------------------------------------------------


def connect_to(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(IO_TIMEOUT_S)
    sock.connect((host, port))
    return sock


class Response:
    def __init__(self, status: int, head: str, body: bytes):
        self.status = status
        self.head = head
        self.body = body

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.head!r}, {self.body[:300]!r})"


class Conn:
    """One client TCP connection with buffered response reading."""

    def __init__(self, host: str, port: int):
        self.sock = connect_to(host, port)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_response(self, method: str = "GET") -> Response:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError(f"connection closed before a response head; got {self.buf!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        head_text = head.decode("latin-1")
        status = int(head_text.split(" ", 2)[1])
        headers = {}
        for line in head_text.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "CONNECT" and status == 200:
            return Response(status, head_text, b"")
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buf) < length:
                if not self._fill():
                    break
            body, self.buf = self.buf[:length], self.buf[length:]
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return Response(status, head_text, body)

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill():
                    return body
            size_line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                if not self._fill():
                    return body
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]
            if size == 0:
                return body

    def read_until_closed(self, limit: int = 1 << 20) -> bytes:
        """Everything the peer sends until it closes (a reset counts as a close)."""
        data, self.buf = self.buf, b""
        while len(data) < limit:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError(
                    f"peer still open after {IO_TIMEOUT_S}s; received {len(data)} bytes") from None
            if not chunk:
                break
            data += chunk
        return data

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise AssertionError(f"closed after {len(self.buf)} of {n} bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def connect_request(target: str) -> bytes:
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()


def get_request(target: str, host: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: handoff-test\r\n\r\n".encode()


def proxy_connect(proxy: harness.Handoff, target: str, host: str = None, port: int = None):
    """(Conn, Response) for a CONNECT sent to the proxy (or to host:port, another listener)."""
    conn = Conn(host or proxy.host, port or proxy.port)
    conn.send(connect_request(target))
    return conn, conn.read_response("CONNECT")


def proxy_get(proxy: harness.Handoff, url: str, host: str = None, port: int = None) -> Response:
    """One absolute-form GET through the proxy on its own connection."""
    conn = Conn(host or proxy.host, port or proxy.port)
    try:
        conn.send(get_request(url, url.split("/")[2]))
        return conn.read_response()
    finally:
        conn.close()


def free_port6() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


# ---- a TCP echo server that remembers what it received ---------------------------------------


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.received = []  # bytes received, one entry per accepted connection
        self.lock = threading.Lock()
        super().__init__((HOST, 0), EchoHandler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def total_received(self) -> int:
        with self.lock:
            return sum(len(b) for b in self.received)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        server = self.server
        with server.lock:
            index = len(server.received)
            server.received.append(b"")
        self.request.settimeout(60)
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                with server.lock:
                    server.received[index] += data
                self.request.sendall(data)
        except OSError:
            return


def opaque_bytes(n: int, seed: int) -> bytes:
    """Bytes no detector recognises: 0xA5 is neither a TLS record type, an HTTP/SIP token
    character, nor an MS-TURN frame type, and no STUN magic cookie sits at offset 4 or 6."""
    data = bytearray(random.Random(seed).randbytes(n))
    data[0] = 0xA5
    data[4:8] = b"\x00\x00\x00\x00"
    data[6:10] = b"\x00\x00\x00\x00"
    return bytes(data)


# ---- shared fixtures --------------------------------------------------------------------------


class PolicyTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.handoff_bin()
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)

    def start_proxy(self, policy_text: str, default: str = "allow", **sections) -> harness.Handoff:
        policy = dict(sections.pop("policy", {}))
        policy.setdefault("default", default)
        proxy = harness.Handoff(policy_text=policy_text, policy=policy, **sections)
        self.addCleanup(proxy.close)
        self.addCleanup(self.assert_clean_exit, proxy)
        return proxy

    def assert_clean_exit(self, proxy: harness.Handoff) -> None:
        """SIGTERM ends the proxy with 0 (SPEC §10) and no sanitizer report."""
        rc = proxy.stop()
        with open(proxy.process.stderr_path, "rb") as f:
            err = f.read().decode("utf-8", "replace")
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            self.assertNotIn(marker, err, err[-4000:])
        self.assertEqual(rc, 0, f"handoff exit status after SIGTERM; stderr:\n{err[-3000:]}")

    def origin_url(self, path: str = "/", host: str = HOST) -> str:
        return f"http://{host}:{self.origin.port}{path}"

    def assert_names_rule(self, text: str, proxy: harness.Handoff, line: int, what: str) -> None:
        self.assertTrue(
            names(text, proxy.policy_path, line),
            f"{what} should name {proxy.policy_path}:{line}, got {text!r}",
        )

    def connect_log(self, proxy: harness.Handoff, target: str) -> dict:
        return proxy.wait_log(
            lambda e: e.get("method") == "CONNECT"
            and target in (e.get("target") or e.get("url") or "")
        )


# ---- checkpoint 1: 403 naming the rule ------------------------------------------------------


class DenyAtRequestTest(PolicyTestCase):
    def test_denied_connect_gets_403_naming_the_rule_in_body_and_log(self):
        target = f"{HOST}:{self.origin.port}"
        text = (
            "; CONNECT to the test origin is refused\n"
            "<proxy>\n"
            f"    method=CONNECT url.port={self.origin.port} DENY\n"
            "    ALLOW\n"
        )
        deny_line = line_of(text, "DENY")
        proxy = self.start_proxy(text, default="allow")
        conn, resp = proxy_connect(proxy, target)
        conn.close()
        self.assertEqual(resp.status, 403, resp)
        self.assert_names_rule(resp.text(), proxy, deny_line, "403 body")
        entry = self.connect_log(proxy, target)
        self.assertEqual(entry.get("status"), 403, entry)
        self.assertEqual(entry.get("action"), "denied", entry)
        self.assert_names_rule(entry.get("rule"), proxy, deny_line, "access log rule")

    def test_denied_http_request_gets_403_and_allowed_one_names_its_rule(self):
        text = (
            "<proxy>\n"
            "    url.domain=localhost DENY   ; by name: refused\n"
            "    url.host=127.0.0.1 ALLOW    ; by address: allowed\n"
        )
        deny_line = line_of(text, "DENY")
        allow_line = line_of(text, "ALLOW")
        # default deny, so the 200 below can only come from the ALLOW rule
        proxy = self.start_proxy(text, default="deny")

        denied_url = self.origin_url("/denied", host="localhost")
        resp = proxy_get(proxy, denied_url)
        self.assertEqual(resp.status, 403, resp)
        self.assert_names_rule(resp.text(), proxy, deny_line, "403 body")
        entry = proxy.wait_log(lambda e: "/denied" in (e.get("url") or ""))
        self.assertEqual((entry.get("status"), entry.get("action")), (403, "denied"), entry)
        self.assert_names_rule(entry.get("rule"), proxy, deny_line, "access log rule")

        resp = proxy_get(proxy, self.origin_url("/allowed"))
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body, b"hello from origin\n")
        entry = proxy.wait_log(lambda e: "/allowed" in (e.get("url") or ""))
        self.assertEqual((entry.get("status"), entry.get("action")), (200, "allowed"), entry)
        self.assert_names_rule(entry.get("rule"), proxy, allow_line, "access log rule")

    def test_denied_http_request_never_reaches_the_origin(self):
        text = "<proxy>\n    url.domain=localhost DENY\n"
        proxy = self.start_proxy(text, default="allow")
        before = self.origin.stats()["connections"]
        resp = proxy_get(proxy, self.origin_url("/never", host="localhost"))
        self.assertEqual(resp.status, 403, resp)
        self.assertEqual(self.origin.stats()["connections"], before,
                         "the origin was contacted for a denied request")

    def test_request_inside_a_tunnel_logs_the_allowing_rule(self):
        target = f"{HOST}:{self.origin.port}"
        text = (
            "<proxy>\n"
            "    url.domain=localhost DENY\n"
            "    url.host=127.0.0.1 ALLOW\n"
        )
        allow_line = line_of(text, "ALLOW")
        proxy = self.start_proxy(text, default="deny")
        conn, resp = proxy_connect(proxy, target)
        self.assertEqual(resp.status, 200, resp)
        conn.send(b"GET /conn-id HTTP/1.1\r\nHost: " + target.encode() + b"\r\n\r\n")
        inner = conn.read_response()
        self.assertEqual(inner.status, 200, inner)
        conn.close()
        entry = proxy.wait_log(lambda e: e.get("method") != "CONNECT" and "/conn-id" in
                               (e.get("url") or e.get("target") or ""))
        self.assertEqual(entry.get("action"), "allowed", entry)
        self.assert_names_rule(entry.get("rule"), proxy, allow_line, "inner request rule")


class DefaultVerdictTest(PolicyTestCase):
    def test_default_deny_with_empty_policy_says_the_default_denied(self):
        proxy = self.start_proxy("", default="deny")
        resp = proxy_get(proxy, self.origin_url("/by-default"))
        self.assertEqual(resp.status, 403, resp)
        self.assertIn("default", resp.text().lower(), resp)
        self.assertNotIn("policy.cpl:", resp.text(), "no rule decided, none may be named")
        conn, cresp = proxy_connect(proxy, f"{HOST}:{self.origin.port}")
        conn.close()
        self.assertEqual(cresp.status, 403, cresp)
        self.assertIn("default", cresp.text().lower(), cresp)
        entry = proxy.wait_log(lambda e: "/by-default" in (e.get("url") or ""))
        self.assertEqual((entry.get("status"), entry.get("action")), (403, "denied"), entry)

    def test_default_allow_with_empty_policy_forwards(self):
        proxy = self.start_proxy("", default="allow")
        resp = proxy_get(proxy, self.origin_url("/by-default"))
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body, b"hello from origin\n")
        conn, cresp = proxy_connect(proxy, f"{HOST}:{self.origin.port}")
        self.assertEqual(cresp.status, 200, cresp)
        conn.close()


class ConnectPortTest(PolicyTestCase):
    def test_example_policy_denies_connect_to_other_ports_but_not_plain_get(self):
        with open(os.path.join(EXAMPLES, "policy.cpl")) as f:
            text = f.read()
        port_line = line_of(text, "method=CONNECT url.port=!(443, 5061, 8443) DENY")
        allow_line = line_of(text, "127.0.0.0/8")
        target = f"{HOST}:{self.origin.port}"
        proxy = self.start_proxy(text, default="deny")

        conn, resp = proxy_connect(proxy, target)
        conn.close()
        self.assertEqual(resp.status, 403, resp)
        self.assert_names_rule(resp.text(), proxy, port_line, "403 body")
        entry = self.connect_log(proxy, target)
        self.assert_names_rule(entry.get("rule"), proxy, port_line, "access log rule")

        resp = proxy_get(proxy, self.origin_url("/plain"))
        self.assertEqual(resp.status, 200, resp)
        entry = proxy.wait_log(lambda e: "/plain" in (e.get("url") or ""))
        self.assertEqual(entry.get("action"), "allowed", entry)
        self.assert_names_rule(entry.get("rule"), proxy, allow_line, "access log rule")

    def test_connect_to_a_listed_port_is_allowed(self):
        text = (
            "<proxy>\n"
            f"    method=CONNECT url.port=!(443, 5061, 8443, {self.origin.port}) DENY\n"
        )
        proxy = self.start_proxy(text, default="allow")
        conn, resp = proxy_connect(proxy, f"{HOST}:{self.origin.port}")
        try:
            self.assertEqual(resp.status, 200, resp)
            conn.send(get_request("/conn-id", f"{HOST}:{self.origin.port}"))
            self.assertEqual(conn.read_response().status, 200)
        finally:
            conn.close()
        other = harness.free_port()
        conn, resp = proxy_connect(proxy, f"{HOST}:{other}")
        conn.close()
        self.assertEqual(resp.status, 403, resp)
        self.assert_names_rule(resp.text(), proxy, 2, "403 body")


class ClientAddressTest(PolicyTestCase):
    def test_ipv4_only_rule_denies_an_ipv6_client(self):
        text = (
            "<proxy>\n"
            "    client.address=127.0.0.0/8 ALLOW\n"
            "    DENY                              ; every other client\n"
        )
        allow_line = line_of(text, "ALLOW")
        deny_line = line_of(text, "    DENY")
        port4, port6 = harness.free_port(), free_port6()
        proxy = self.start_proxy(
            text, default="allow", proxy={"listen": f"{HOST}:{port4}, [::1]:{port6}"}
        )
        harness.wait_port("::1", port6, alive=proxy.alive)

        resp = proxy_get(proxy, self.origin_url("/from-v6"), host="::1", port=port6)
        self.assertEqual(resp.status, 403, resp)
        self.assert_names_rule(resp.text(), proxy, deny_line, "403 body")
        entry = proxy.wait_log(lambda e: "/from-v6" in (e.get("url") or ""))
        self.assertIn("::1", entry.get("client") or "", entry)
        self.assertEqual(entry.get("action"), "denied", entry)
        self.assert_names_rule(entry.get("rule"), proxy, deny_line, "access log rule")

        resp = proxy_get(proxy, self.origin_url("/from-v4"), port=port4)
        self.assertEqual(resp.status, 200, resp)
        entry = proxy.wait_log(lambda e: "/from-v4" in (e.get("url") or ""))
        self.assertEqual(entry.get("action"), "allowed", entry)
        self.assert_names_rule(entry.get("rule"), proxy, allow_line, "access log rule")

    def test_ipv6_cidr_rule_allows_the_ipv6_client(self):
        text = (
            "<proxy>\n"
            "    client.address=::1/128 ALLOW\n"
            "    DENY\n"
        )
        port4, port6 = harness.free_port(), free_port6()
        proxy = self.start_proxy(
            text, default="deny", proxy={"listen": f"{HOST}:{port4}, [::1]:{port6}"}
        )
        harness.wait_port("::1", port6, alive=proxy.alive)
        resp = proxy_get(proxy, self.origin_url("/v6-ok"), host="::1", port=port6)
        self.assertEqual(resp.status, 200, resp)
        resp = proxy_get(proxy, self.origin_url("/v4-no"), port=port4)
        self.assertEqual(resp.status, 403, resp)
        self.assert_names_rule(resp.text(), proxy, 3, "403 body")


# ---- checkpoint 3: the carve-out before Step 3's DENY ----------------------------------------


class CarveOutTest(PolicyTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.echo = EchoServer()
        cls.addClassCleanup(cls.echo.stop)

    def carve_out_policy(self) -> str:
        with open(os.path.join(EXAMPLES, "policies", "carve-out.cpl")) as f:
            text = f.read()
        self.assertIn("url.domain=example.com", text)
        return text.replace("url.domain=example.com", "url.domain=localhost")

    def test_carved_out_domain_is_a_blind_tunnel_and_the_ip_literal_is_denied(self):
        text = self.carve_out_policy()
        deny_line = line_of(text, "DENY client.protocol=!ssl tunneled=yes")
        proxy = self.start_proxy(text, default="allow")
        payload = opaque_bytes(4096, seed=7)

        carved = f"localhost:{self.echo.port}"
        conn, resp = proxy_connect(proxy, carved)
        try:
            self.assertEqual(resp.status, 200, resp)
            conn.send(payload)
            self.assertEqual(conn.read_exact(len(payload)), payload,
                             "bytes through the carved-out tunnel were not relayed unchanged")
        finally:
            conn.close()
        entry = self.connect_log(proxy, carved)
        self.assertEqual(entry.get("protocol"), "tcp", entry)
        self.assertIs(entry.get("tunneled"), True, entry)
        self.assertEqual(entry.get("action"), "allowed", entry)
        self.assertEqual(entry.get("bytes_from_client"), len(payload), entry)

        received_before = self.echo.total_received()
        literal = f"{HOST}:{self.echo.port}"
        conn, resp = proxy_connect(proxy, literal)
        try:
            self.assertEqual(resp.status, 200, resp)
            conn.send(payload)
            echoed = conn.read_until_closed()
        finally:
            conn.close()
        self.assertEqual(echoed, b"", "a denied unknown protocol got data back")
        self.assertEqual(self.echo.total_received(), received_before,
                         "bytes of a denied unknown protocol reached the server")
        entry = self.connect_log(proxy, literal)
        self.assertEqual(entry.get("action"), "denied", entry)
        self.assertEqual(entry.get("protocol"), "tcp", entry)
        self.assertIs(entry.get("tunneled"), True, entry)
        self.assert_names_rule(entry.get("rule"), proxy, deny_line, "access log rule")


# ---- SIGHUP reload ----------------------------------------------------------------------------


class ReloadTest(PolicyTestCase):
    CONNECTIONS = 12

    def statuses(self, proxy: harness.Handoff, path: str) -> list:
        return [proxy_get(proxy, self.origin_url(f"{path}{i}")).status
                for i in range(self.CONNECTIONS)]

    def test_good_file_changes_new_connections_in_every_worker_but_not_open_ones(self):
        old_text = (
            "; old policy\n"
            "<proxy>\n"
            "    url.host=127.0.0.1 ALLOW\n"
        )
        old_allow = line_of(old_text, "ALLOW")
        new_text = (
            "; new policy: the test origin is refused from now on\n"
            ";\n"
            "<proxy>\n"
            f"    url.port={self.origin.port} DENY\n"
            "    ALLOW\n"
        )
        new_deny = line_of(new_text, "DENY")
        proxy = self.start_proxy(old_text, default="deny", proxy={"workers": "2"})
        target = f"{HOST}:{self.origin.port}"

        self.assertEqual(self.statuses(proxy, "/before-"), [200] * self.CONNECTIONS)

        # Opened under the old policy: a keep-alive proxied connection and a CONNECT tunnel
        # that carries plain HTTP (each inner request is evaluated on its own).
        keep = Conn(proxy.host, proxy.port)
        self.addCleanup(keep.close)
        keep.send(get_request(self.origin_url("/keep-1"), target))
        self.assertEqual(keep.read_response().status, 200)
        tunnel, resp = proxy_connect(proxy, target)
        self.addCleanup(tunnel.close)
        self.assertEqual(resp.status, 200, resp)
        tunnel.send(get_request("/tunnel-1", target))
        self.assertEqual(tunnel.read_response().status, 200)

        proxy.reload(new_text)
        first = harness.wait_until(
            lambda: (lambda r: r if r.status == 403 else None)(
                proxy_get(proxy, self.origin_url("/probe"))),
            timeout=10, what="a new connection denied by the reloaded policy")
        self.assert_names_rule(first.text(), proxy, new_deny, "403 body after reload")

        after = [proxy_get(proxy, self.origin_url(f"/after-{i}")) for i in range(self.CONNECTIONS)]
        self.assertEqual([r.status for r in after], [403] * self.CONNECTIONS,
                         "some new connection was still decided by the old policy")
        for r in after:
            self.assert_names_rule(r.text(), proxy, new_deny, "403 body after reload")
        conn, cresp = proxy_connect(proxy, target)
        conn.close()
        self.assertEqual(cresp.status, 403, cresp)

        keep.send(get_request(self.origin_url("/keep-2"), target))
        self.assertEqual(keep.read_response().status, 200,
                         "a keep-alive connection opened before the reload changed policy")
        tunnel.send(get_request("/tunnel-2", target))
        self.assertEqual(tunnel.read_response().status, 200,
                         "a tunnel opened before the reload changed policy")
        for path in ("/keep-2", "/tunnel-2"):
            entry = proxy.wait_log(lambda e, p=path: p in (e.get("url") or e.get("target") or ""))
            self.assertEqual(entry.get("action"), "allowed", entry)
            self.assert_names_rule(entry.get("rule"), proxy, old_allow, f"rule for {path}")

    def test_broken_file_keeps_the_old_policy_and_logs_every_error(self):
        old_text = (
            "<proxy>\n"
            f"    url.port={self.origin.port} DENY\n"
            "    ALLOW\n"
        )
        old_deny = line_of(old_text, "DENY")
        # Were the good lines of this file applied, the origin would become reachable.
        broken = (
            "; broken on purpose\n"
            "<proxy>\n"
            f"    url.port={self.origin.port} ALLOW\n"
            "    bogus.condition=1 DENY\n"
            "    client.address=300.1.2.3/8 ALLOW\n"
            "<ssl-intercept>\n"
            "    ssl.forward_proxy(maybe)\n"
        )
        errors = [
            (4, column_of(broken, 4, "bogus.condition")),
            (5, column_of(broken, 5, "300.1.2.3/8")),
            (7, column_of(broken, 7, "maybe")),
        ]
        proxy = self.start_proxy(old_text, default="allow", proxy={"workers": "2"})
        self.assertEqual(proxy_get(proxy, self.origin_url("/before")).status, 403)

        proxy.reload(broken)

        def all_errors_logged():
            err = proxy.stderr_text()
            return all(names(err, proxy.policy_path, line, col) for line, col in errors)

        try:
            harness.wait_until(all_errors_logged, timeout=10, what="every policy error on stderr")
        except TimeoutError:
            self.fail(f"stderr should name {[f'policy.cpl:{l}:{c}' for l, c in errors]}; "
                      f"stderr:\n{proxy.stderr_text()[-3000:]}")
        self.assertTrue(proxy.alive(), "the proxy exited on a broken policy")
        for i in range(ReloadTest.CONNECTIONS):
            resp = proxy_get(proxy, self.origin_url(f"/after-{i}"))
            self.assertEqual(resp.status, 403, f"connection {i} after a broken reload: {resp}")
            self.assert_names_rule(resp.text(), proxy, old_deny, "403 body after broken reload")


# ---- handoff --check ----------------------------------------------------------------------


def check(conf_path: str):
    proc = harness.run_handoff("-c", conf_path, "--check")
    return proc.returncode, proc.stdout + proc.stderr


class CheckCommandTest(unittest.TestCase):
    def config(self, policy_text: str = "", **sections) -> harness.Handoff:
        proxy = harness.Handoff(policy_text=policy_text, start=False, **sections)
        self.addCleanup(proxy.close)
        return proxy

    def test_good_config_and_policy_exit_0(self):
        proxy = self.config("<proxy>\n    client.address=(127.0.0.0/8, ::1) ALLOW\n    DENY\n")
        rc, out = check(proxy.conf_path)
        self.assertEqual(rc, 0, out)

    def test_policy_with_several_errors_prints_each_and_exits_1(self):
        text = (
            "; four mistakes\n"
            "<proxy>\n"
            "    url.port=80 bogus.condition=1 DENY\n"
            "    client.address=10.0.0.0/33 ALLOW\n"
            "<ssl-intercept>\n"
            "    ssl.forward_proxy(maybe)\n"
            "    method=(GET, POST DENY\n"
        )
        # (line, columns a reader would accept as pointing at the mistake)
        errors = [
            (3, [column_of(text, 3, "bogus.condition")]),
            (4, [column_of(text, 4, "10.0.0.0/33"), column_of(text, 4, "/33")]),
            (6, [column_of(text, 6, "maybe")]),
            (7, [column_of(text, 7, "(")]),
        ]
        proxy = self.config(text)
        rc, out = check(proxy.conf_path)
        self.assertEqual(rc, 1, out)
        for line, cols in errors:
            self.assertTrue(any(names(out, proxy.policy_path, line, c) for c in cols),
                            f"--check should report policy.cpl:{line}:{cols}; printed:\n{out}")
        for line in (1, 2, 5):
            self.assertFalse(names(out, proxy.policy_path, line),
                             f"--check reported an error on good line {line}:\n{out}")

    def test_every_example_passes_check(self):
        rc, out = check(os.path.join(EXAMPLES, "handoff.conf"))
        self.assertEqual(rc, 0, f"examples/handoff.conf: {out}")

        # The same files away from the repository, where ../state/ca does not exist:
        # --check must not need the CA.
        copy = tempfile.mkdtemp(prefix="handoff-examples-")
        self.addCleanup(shutil.rmtree, copy, True)
        conf_dir = os.path.join(copy, "examples")
        shutil.copytree(EXAMPLES, conf_dir)
        rc, out = check(os.path.join(conf_dir, "handoff.conf"))
        self.assertEqual(rc, 0, f"examples/handoff.conf without ../state/ca: {out}")

        policies = [os.path.join(EXAMPLES, "policy.cpl")]
        policy_dir = os.path.join(EXAMPLES, "policies")
        policies += sorted(os.path.join(policy_dir, n) for n in os.listdir(policy_dir)
                           if n.endswith(".cpl"))
        self.assertGreaterEqual(len(policies), 5, policies)
        for path in policies:
            with self.subTest(policy=os.path.relpath(path, REPO)):
                proxy = self.config(policy={"file": path})
                rc, out = check(proxy.conf_path)
                self.assertEqual(rc, 0, out)

    def test_check_fails_on_a_missing_policy_file(self):
        proxy = self.config(policy={"file": "no-such-policy.cpl"})
        rc, out = check(proxy.conf_path)
        self.assertEqual(rc, 1, out)
        self.assertIn("no-such-policy.cpl", out)


# ---- handoff explain ----------------------------------------------------------------------


SFB_POLICY = """\
; SfB site: local clients only, CONNECT to 443/5061/8443, Lync left untouched
<proxy>
    client.address=(127.0.0.0/8, ::1) ALLOW
    DENY

<proxy>
    method=CONNECT url.port=!(443, 5061, 8443) DENY

<ssl-intercept>
    url.domain=lync.com ssl.forward_proxy(no)
    ssl.forward_proxy(yes)

<proxy>
    url.domain=blocked.test DENY
    DENY client.protocol=!ssl tunneled=yes
"""


def sections_by_checkpoint(output: str) -> dict:
    """{1: text, 2: text, 3: text} for the lines under each `checkpoint N` heading."""
    sections, current = {}, None
    for line in output.splitlines():
        m = re.match(r"\s*checkpoint\s+(\d)", line, re.IGNORECASE)
        if m:
            current = int(m.group(1))
            sections[current] = line + "\n"
        elif current is not None and not line.startswith("decision:"):
            sections[current] += line + "\n"
    return sections


class ExplainTest(unittest.TestCase):
    def setUp(self):
        self.proxy = harness.Handoff(policy_text=SFB_POLICY, start=False,
                                     policy={"default": "deny"})
        self.addCleanup(self.proxy.close)
        self.path = self.proxy.policy_path

        def ln(fragment: str) -> int:
            return line_of(SFB_POLICY, fragment)

        headers = [i + 1 for i, l in enumerate(SFB_POLICY.splitlines()) if l.startswith("<")]
        self.layers = dict(zip(("who", "ports", "tls", "protocols"), headers))
        self.allow_local = ln("client.address=(127.0.0.0/8, ::1) ALLOW")
        self.deny_others = next(i + 1 for i, l in enumerate(SFB_POLICY.splitlines())
                                if l.strip() == "DENY")
        self.port_rule = ln("method=CONNECT url.port=")
        self.lync_bypass = ln("url.domain=lync.com")
        self.intercept = ln("    ssl.forward_proxy(yes)")
        self.blocked = ln("url.domain=blocked.test DENY")
        self.step3 = ln("DENY client.protocol=!ssl")

    def explain(self, *args) -> str:
        proc = harness.run_handoff("-c", self.proxy.conf_path, "explain", *args)
        out = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 0, out)
        return proc.stdout

    def assert_section(self, sections: dict, cp: int, layers, matched, not_matched, out: str):
        self.assertIn(cp, sections, f"no checkpoint {cp} in:\n{out}")
        text = sections[cp]
        for line in layers:
            self.assertTrue(names(text, self.path, line),
                            f"checkpoint {cp} should show the layer at line {line}:\n{out}")
        for line in matched:
            self.assertTrue(names(text, self.path, line),
                            f"checkpoint {cp} should show rule line {line} matching:\n{out}")
        for line in not_matched:
            self.assertFalse(names(text, self.path, line),
                             f"checkpoint {cp} names rule line {line}, which does not match:\n{out}")

    def last_line(self, out: str) -> str:
        lines = [l for l in out.splitlines() if l.strip()]
        self.assertTrue(lines, "explain printed nothing")
        return lines[-1].strip()

    def assert_decision(self, out: str, verdict: str, line: int) -> None:
        last = self.last_line(out)
        pattern = rf"decision: {verdict} \({location_pattern(self.path, line)}\)"
        self.assertRegex(last, f"^{pattern}$", f"full output:\n{out}")

    def test_sip_to_lync_on_5061_is_allowed_at_every_checkpoint(self):
        out = self.explain("--connect", "127.0.0.1:5061", "--sni", "edge.lync.com",
                           "--protocol", "sip")
        sections = sections_by_checkpoint(out)
        proxy_layers = (self.layers["who"], self.layers["ports"], self.layers["protocols"])
        self.assert_section(sections, 1, proxy_layers, [self.allow_local],
                            [self.deny_others, self.port_rule, self.blocked, self.step3], out)
        self.assert_section(sections, 2, [self.layers["tls"]], [self.lync_bypass],
                            [self.intercept], out)
        self.assert_section(sections, 3, proxy_layers, [self.allow_local],
                            [self.deny_others, self.port_rule, self.blocked, self.step3], out)
        self.assert_decision(out, "allow", self.allow_local)

    def test_intercepted_name_shows_the_intercept_rule(self):
        out = self.explain("--connect", "127.0.0.1:443", "--sni", "www.example.org",
                           "--protocol", "https", "--tunneled", "no")
        sections = sections_by_checkpoint(out)
        self.assert_section(sections, 2, [self.layers["tls"]], [self.intercept],
                            [self.lync_bypass], out)
        self.assert_decision(out, "allow", self.allow_local)

    def test_connect_to_port_22_is_denied_by_the_port_rule(self):
        out = self.explain("--connect", "127.0.0.1:22")
        sections = sections_by_checkpoint(out)
        self.assert_section(sections, 1, [self.layers["who"], self.layers["ports"]],
                            [self.allow_local, self.port_rule],
                            [self.deny_others, self.blocked, self.step3], out)
        self.assert_decision(out, "deny", self.port_rule)

    def test_unknown_protocol_tunnel_is_denied_by_step3(self):
        out = self.explain("--connect", "127.0.0.1:443", "--protocol", "tcp")
        sections = sections_by_checkpoint(out)
        self.assert_section(sections, 3, [self.layers["protocols"]], [self.step3],
                            [self.blocked, self.port_rule], out)
        self.assert_decision(out, "deny", self.step3)

    def test_a_redirected_connection_has_no_method_for_the_port_rule(self):
        # Transparent (SPEC 4.2): no CONNECT, so `method=CONNECT url.port=!(...) DENY` does not
        # match a redirected connection to port 22; the explicit CONNECT is denied by it.
        out = self.explain("--connect", "127.0.0.1:22", "--mode", "transparent")
        sections = sections_by_checkpoint(out)
        self.assertNotIn("CONNECT", sections[1], out)
        self.assert_section(sections, 1, [self.layers["who"], self.layers["ports"]],
                            [self.allow_local], [self.port_rule, self.deny_others], out)
        self.assert_decision(out, "allow", self.allow_local)
        out = self.explain("--connect", "127.0.0.1:22", "--mode", "explicit")
        self.assert_decision(out, "deny", self.port_rule)

    def test_url_to_blocked_domain_is_denied(self):
        out = self.explain("--url", "http://blocked.test/", "--method", "GET")
        sections = sections_by_checkpoint(out)
        self.assert_section(sections, 1, [self.layers["who"], self.layers["protocols"]],
                            [self.allow_local, self.blocked],
                            [self.deny_others, self.port_rule, self.step3], out)
        self.assert_decision(out, "deny", self.blocked)

    def test_client_outside_the_local_networks_is_denied(self):
        out = self.explain("--client", "192.0.2.10", "--url", "http://www.example.org/")
        self.assert_decision(out, "deny", self.deny_others)


if __name__ == "__main__":
    unittest.main()
