"""The core forwarding paths (SPEC section 4): CONNECT tunnels and absolute-form HTTP through
handoff to a real origin, driven by curl wherever curl can produce the traffic."""

import base64
import hashlib
import json
import os
import unittest

import certs
import core_support as cs
import harness
import origin

HOST = harness.HOST
ALLOW_ALL = "<proxy>\n  ALLOW\n"
TEN_MB = 10 * 1024 * 1024


class CoreHttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tc = certs.test_certs()
        cls.ca = tc.ca_cert
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)
        cls.tls_origin = origin.start_origin(tls_cert=tc.server_cert, tls_key=tc.server_key)
        cls.addClassCleanup(cls.tls_origin.stop)
        # No <ssl-intercept> layer: TLS after a CONNECT is tunnelled untouched.
        cls.proxy = harness.Handoff(policy_text=ALLOW_ALL)
        cls.addClassCleanup(cls.proxy.close)

    def curl(self, *args, timeout=60):
        return harness.curl(*args, proxy=self.proxy.url, timeout=timeout)

    def origin_url(self, path: str) -> str:
        return f"{self.origin.url}{path}"

    def assert_curl_ok(self, proc):
        self.assertEqual(proc.returncode, 0,
                         f"curl failed: {proc.stderr.decode(errors='replace')}\n"
                         f"{self.proxy.stderr_text()[-2000:]}")

    # ---- CONNECT ----

    def test_connect_tunnels_tls_and_curl_verifies_the_origin_certificate(self):
        target = f"{HOST}:{self.tls_origin.port}"
        proc = self.curl("--cacert", self.ca, "--proxytunnel",
                         f"https://{target}/bytes/100000", "-o", "-")
        self.assert_curl_ok(proc)
        self.assertEqual(hashlib.sha256(proc.stdout).hexdigest(), cs.expected_sha256(100000))
        entry = self.proxy.wait_log(lambda e: e.get("target") == target)
        self.assertEqual(entry.get("protocol"), "ssl", entry)
        self.assertIs(entry.get("tunneled"), True, entry)
        self.assertIs(entry.get("intercepted"), False, entry)
        self.assertEqual(entry.get("action"), "allowed", entry)
        self.assertGreater(entry.get("bytes_from_client", 0), 0, entry)
        # The server's answer carries the 100 000-byte body inside TLS records.
        self.assertGreater(entry.get("bytes_from_server", 0), 100000, entry)

    def test_connect_by_name_reaches_an_origin_named_in_its_certificate(self):
        # localhost may resolve to ::1 first, where nothing listens: the proxy must try the
        # next address.
        proc = self.curl("--cacert", self.ca, "--proxytunnel",
                         f"https://localhost:{self.tls_origin.port}/")
        self.assert_curl_ok(proc)
        self.assertEqual(proc.stdout, b"hello from origin\n")

    # ---- absolute-form HTTP ----

    def test_get_through_the_proxy(self):
        url = self.origin_url("/hello-get")
        proc = self.curl(url)
        self.assert_curl_ok(proc)
        self.assertEqual(proc.stdout, b"hello from origin\n")
        entry = self.proxy.wait_log(lambda e: e.get("url") == url)
        self.assertEqual(entry.get("method"), "GET", entry)
        self.assertEqual(entry.get("status"), 200, entry)
        self.assertEqual(entry.get("action"), "allowed", entry)
        self.assertEqual(entry.get("protocol"), "http", entry)

    def test_post_body_arrives_intact(self):
        path, digest = cs.random_file(cs.temp_dir(self), 300_000)
        proc = self.curl("--data-binary", f"@{path}", "-H", "Content-Type: application/octet-stream",
                         self.origin_url("/echo"))
        self.assert_curl_ok(proc)
        echo = json.loads(proc.stdout)
        self.assertEqual(echo["method"], "POST")
        self.assertEqual(echo["length"], 300_000)
        self.assertEqual(echo["sha256"], digest)

    def test_chunked_upload_arrives_intact(self):
        path, digest = cs.random_file(cs.temp_dir(self), 1_000_000)
        proc = self.curl("-H", "Transfer-Encoding: chunked", "-H", "Expect:",
                         "--data-binary", f"@{path}", self.origin_url("/echo"))
        self.assert_curl_ok(proc)
        echo = json.loads(proc.stdout)
        self.assertEqual(echo["length"], 1_000_000)
        self.assertEqual(echo["sha256"], digest)

    def _download(self, path: str):
        out = os.path.join(cs.temp_dir(self), "download.bin")
        proc = self.curl("-o", out, "-D", "-", self.origin_url(path), timeout=120)
        self.assert_curl_ok(proc)
        return out, proc.stdout.decode("latin-1")

    def test_ten_megabyte_download_is_byte_exact(self):
        out, _ = self._download(f"/bytes/{TEN_MB}")
        self.assertEqual(os.path.getsize(out), TEN_MB)
        self.assertEqual(cs.file_sha256(out), cs.expected_sha256(TEN_MB))

    def test_ten_megabyte_chunked_download_is_byte_exact(self):
        out, head = self._download(f"/bytes/{TEN_MB}?chunked=1")
        self.assertEqual(os.path.getsize(out), TEN_MB)
        self.assertEqual(cs.file_sha256(out), cs.expected_sha256(TEN_MB))

    def test_two_requests_share_one_kept_alive_proxy_connection(self):
        url = self.origin_url("/conn-id")
        proc = self.curl("-w", "|%{num_connects}\n", url, url)
        self.assert_curl_ok(proc)
        lines = [line for line in proc.stdout.decode().split("\n") if line]
        # Each transfer prints its body ("<origin connection id>") then "|<new connections>".
        self.assertEqual(len(lines), 4, proc.stdout)
        first_id, first_connects = lines[0], lines[1]
        second_id, second_connects = lines[2], lines[3]
        self.assertEqual(first_connects, "|1", proc.stdout)
        self.assertEqual(second_connects, "|0",
                         f"curl opened a new proxy connection for the second request: {proc.stdout}")
        self.assertEqual(first_id, second_id,
                         f"the proxy did not reuse its origin connection: {proc.stdout}")

    def test_pipelined_requests_are_answered_in_order(self):
        authority = f"{HOST}:{self.origin.port}"
        # The first answer is slow: a proxy answering as responses come back would swap them.
        requests = (
            f"GET http://{authority}/slow?ms=400 HTTP/1.1\r\nHost: {authority}\r\n\r\n"
            f"GET http://{authority}/headers?second HTTP/1.1\r\nHost: {authority}\r\n\r\n"
            f"GET http://{authority}/conn-id HTTP/1.1\r\nHost: {authority}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        with cs.connect(self.proxy.host, self.proxy.port) as sock:
            sock.sendall(requests)
            reader = origin.Reader(sock)
            first = cs.read_response(reader)
            second = cs.read_response(reader)
            third = cs.read_response(reader)
        self.assertEqual((first.status, first.body), (200, b"slow\n"))
        self.assertEqual(second.status, 200)
        self.assertTrue(json.loads(second.body)["target"].endswith("/headers?second"), second)
        self.assertEqual(third.status, 200)
        self.assertRegex(third.text, r"^\d+\n$")

    def test_expect_100_continue_with_curl(self):
        path, digest = cs.random_file(cs.temp_dir(self), 2_000_000)
        proc = self.curl("-v", "-H", "Expect: 100-continue", "--data-binary", f"@{path}",
                         self.origin_url("/echo"))
        self.assert_curl_ok(proc)
        self.assertEqual(json.loads(proc.stdout)["sha256"], digest)
        self.assertIn(b"< HTTP/1.1 100", proc.stderr,
                      "curl got no 100 Continue and sent the body after its own wait")

    def test_expect_100_continue_interim_answer_before_the_body(self):
        body = os.urandom(50_000)
        authority = f"{HOST}:{self.origin.port}"
        head = (f"POST http://{authority}/echo HTTP/1.1\r\nHost: {authority}\r\n"
                f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"
                "Connection: close\r\n\r\n").encode()
        with cs.connect(self.proxy.host, self.proxy.port, timeout=10) as sock:
            sock.sendall(head)
            reader = origin.Reader(sock)
            # The body is withheld until the interim answer: a proxy that never sends it
            # leaves this read waiting until the timeout.
            status, _, _ = cs.read_head(reader)
            self.assertEqual(status, 100)
            sock.sendall(body)
            response = cs.read_response(reader)
        self.assertEqual(response.status, 200)
        self.assertEqual(json.loads(response.body)["sha256"], hashlib.sha256(body).hexdigest())

    def test_hop_by_hop_headers_removed_and_via_added(self):
        proc = self.curl(
            "-H", "Connection: keep-alive, X-Drop-Me",
            "-H", "X-Drop-Me: secret",
            "-H", "Keep-Alive: timeout=5",
            "-H", "Proxy-Connection: keep-alive",
            "-H", "TE: trailers",
            "-H", "Trailer: X-Checksum",
            "-H", "Proxy-Authorization: Basic " + base64.b64encode(b"who:pw").decode(),
            "-H", "X-End-To-End: kept",
            self.origin_url("/headers"))
        self.assert_curl_ok(proc)
        seen = json.loads(proc.stdout)["headers"]
        for name in ("x-drop-me", "keep-alive", "proxy-connection", "te", "trailer",
                     "proxy-authorization"):
            self.assertNotIn(name, seen, f"{name} reached the origin: {seen}")
        self.assertNotIn("x-drop-me", seen.get("connection", "").lower(), seen)
        self.assertEqual(seen.get("x-end-to-end"), "kept", seen)
        self.assertIn("via", seen, seen)
        self.assertRegex(seen["via"], r"^(HTTP/)?1\.1 \S+", seen)

    def test_websocket_echo_through_an_upgrade(self):
        authority = f"{HOST}:{self.origin.port}"
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET http://{authority}/ws HTTP/1.1\r\nHost: {authority}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        with cs.connect(self.proxy.host, self.proxy.port, timeout=10) as sock:
            sock.sendall(request)
            reader = origin.Reader(sock)
            status, _, headers = cs.read_head(reader)
            self.assertEqual(status, 101)
            accept = dict((k.lower(), v) for k, v in headers).get("sec-websocket-accept")
            expected = base64.b64encode(
                hashlib.sha1((key + origin.WS_GUID).encode()).digest()).decode()
            self.assertEqual(accept, expected)
            message = b"hello through handoff " * 20
            sock.sendall(origin.ws_frame(0x1, message, mask=os.urandom(4)))
            self.assertEqual(origin.read_ws_frame(reader), (0x1, message))
            big = os.urandom(200_000)
            sock.sendall(origin.ws_frame(0x2, big, mask=os.urandom(4)))
            self.assertEqual(origin.read_ws_frame(reader), (0x2, big))
            sock.sendall(origin.ws_frame(0x8, b"\x03\xe8", mask=os.urandom(4)))
            self.assertEqual(origin.read_ws_frame(reader)[0], 0x8)

    def test_proxy_serves_a_pac_file(self):
        proc = harness.curl("-D", "-", f"{self.proxy.url}/proxy.pac")
        self.assert_curl_ok(proc)
        head, body = proc.stdout.split(b"\r\n\r\n", 1)
        self.assertRegex(head.decode().lower(),
                         r"content-type: application/x-ns-proxy-autoconfig")
        self.assertIn(b"FindProxyForURL", body)
        self.assertIn(f"PROXY {HOST}:{self.proxy.port}".encode(), body)


if __name__ == "__main__":
    unittest.main()
