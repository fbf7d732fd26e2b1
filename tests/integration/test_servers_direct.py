"""The test servers and the harness, checked directly (no proxy in between), so that a failing
proxy test points at the proxy and not at its surroundings."""

import hashlib
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import unittest

import certs
import harness
import origin
import servers
import wire

HOST = harness.HOST


def set_env(test: unittest.TestCase, name: str, value: str) -> None:
    """Set an environment variable for the duration of one test."""
    old = os.environ.get(name)
    os.environ[name] = value
    if old is None:
        test.addCleanup(os.environ.pop, name, None)
    else:
        test.addCleanup(os.environ.__setitem__, name, old)


def temp_dir(test: unittest.TestCase) -> str:
    path = tempfile.mkdtemp(prefix="handoff-test-")
    test.addCleanup(shutil.rmtree, path, True)
    return path


class OriginTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)

    def test_large_download_matches_its_checksum(self):
        proc = harness.curl("-D", "-", f"{self.origin.url}/bytes/10000000", timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        head, body = proc.stdout.split(b"\r\n\r\n", 1)
        self.assertEqual(len(body), 10_000_000)
        digest = hashlib.sha256(body).hexdigest()
        self.assertIn(f"x-content-sha256: {digest}".encode(), head.lower())
        self.assertEqual(body, origin.deterministic_bytes(10_000_000))

    def test_chunked_response_carries_the_same_bytes(self):
        proc = harness.curl("-D", "-", f"{self.origin.url}/bytes/300000?chunked=1")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        head, body = proc.stdout.split(b"\r\n\r\n", 1)
        self.assertIn(b"transfer-encoding: chunked", head.lower())
        self.assertEqual(body, origin.deterministic_bytes(300000))

    def test_chunked_upload_is_decoded_and_echoed(self):
        data = os.urandom(200_000)
        proc = harness.curl("-H", "Transfer-Encoding: chunked", "-H", "Expect:",
                            "--data-binary", "@-", f"{self.origin.url}/echo", input=data)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        echo = json.loads(proc.stdout)
        self.assertEqual(echo["length"], len(data))
        self.assertEqual(echo["sha256"], hashlib.sha256(data).hexdigest())
        self.assertTrue(echo["chunked"])
        self.assertEqual(echo["method"], "POST")

    def test_expect_100_continue_gets_an_interim_response(self):
        data = os.urandom(50_000)
        proc = harness.curl("-v", "-X", "PUT", "-H", "Expect: 100-continue", "--data-binary", "@-",
                            f"{self.origin.url}/echo", input=data)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(b"< HTTP/1.1 100 Continue", proc.stderr)
        self.assertEqual(json.loads(proc.stdout)["sha256"], hashlib.sha256(data).hexdigest())

    def test_keep_alive_reuses_one_connection(self):
        proc = harness.curl(f"{self.origin.url}/conn-id", f"{self.origin.url}/conn-id")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        first, second = proc.stdout.split()
        self.assertEqual(first, second)
        other = harness.curl(f"{self.origin.url}/conn-id")
        self.assertNotEqual(other.stdout.strip(), first)

    def test_headers_endpoint_reports_what_was_received(self):
        proc = harness.curl("-H", "X-Probe: 42", f"{self.origin.url}/headers")
        seen = json.loads(proc.stdout)
        self.assertEqual(seen["headers"]["x-probe"], "42")
        self.assertEqual(seen["method"], "GET")
        self.assertIn(["X-Probe", "42"], seen["header_list"])

    def test_slow_answers_after_the_delay(self):
        proc = harness.curl("-w", "%{time_total}", "-o", "/dev/null", f"{self.origin.url}/slow?ms=400")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertGreaterEqual(float(proc.stdout), 0.4)

    def test_websocket_echoes_frames(self):
        with socket.create_connection((HOST, self.origin.port), timeout=10) as sock:
            sock.sendall(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            reader = origin.Reader(sock)
            head = reader.head().decode()
            self.assertTrue(head.startswith("HTTP/1.1 101"), head)
            # The RFC 6455 section 1.3 example key and its accept value.
            self.assertIn("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head)
            for size in (5, 300, 70000):
                payload = os.urandom(size)
                sock.sendall(origin.ws_frame(0x2, payload, mask=os.urandom(4)))
                self.assertEqual(origin.read_ws_frame(reader), (0x2, payload))

    def test_origin_runs_as_a_script(self):
        port = harness.free_port()
        workdir = temp_dir(self)
        proc = harness.ManagedProcess(
            [sys.executable, os.path.abspath("origin.py"), "--port", port], workdir, "origin")
        try:
            harness.wait_port(HOST, port, 10, alive=proc.alive)
            out = harness.curl(f"http://{HOST}:{port}/anything")
            self.assertEqual(out.stdout, b"hello from origin\n")
            self.assertTrue(proc.stdout_text().startswith("ready"))
        finally:
            proc.stop(grace=5)


class TlsOriginTest(unittest.TestCase):
    def start(self, cert: str, key: str) -> origin.Origin:
        server = origin.start_origin(tls_cert=cert, tls_key=key)
        self.addCleanup(server.stop)
        return server

    def test_valid_cert_is_trusted_with_the_test_ca(self):
        c = certs.test_certs()
        server = self.start(c.server_cert, c.server_key)
        for url in (f"https://127.0.0.1:{server.port}/headers",
                    f"https://localhost:{server.port}/headers"):
            proc = harness.curl("--cacert", c.ca_bundle, url)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertEqual(json.loads(proc.stdout)["method"], "GET")
        named = harness.curl("--cacert", c.ca_bundle, "--resolve",
                             f"origin.test:{server.port}:127.0.0.1",
                             f"https://origin.test:{server.port}/")
        self.assertEqual(named.stdout, b"hello from origin\n", named.stderr)

    def test_bad_certs_are_rejected_by_a_verifying_client(self):
        c = certs.test_certs()
        for name, cert, key in (("self-signed", c.self_signed_cert, c.self_signed_key),
                                ("expired", c.expired_cert, c.expired_key),
                                ("wrong name", c.wrong_name_cert, c.wrong_name_key)):
            with self.subTest(name):
                server = self.start(cert, key)
                proc = harness.curl("--cacert", c.ca_bundle, f"https://localhost:{server.port}/")
                self.assertEqual(proc.returncode, 60, proc.stderr)
                # The same server is fine once verification is off: only the cert is at fault.
                loose = harness.curl("-k", f"https://localhost:{server.port}/")
                self.assertEqual(loose.stdout, b"hello from origin\n", loose.stderr)

    def test_openssl_s_client_sees_the_server_cert(self):
        c = certs.test_certs()
        server = self.start(c.server_cert, c.server_key)
        proc = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile", c.ca_cert,
             "-verify_return_error", "-brief"],
            input=b"", capture_output=True, timeout=20)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(b"Verification: OK", proc.stderr)


class HarnessTest(unittest.TestCase):
    def test_curl_goes_through_the_given_proxy_and_ignores_env_proxies(self):
        server = origin.start_origin()
        self.addCleanup(server.stop)
        dead = f"http://{HOST}:{harness.free_port()}"
        for name in ("http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
            set_env(self, name, dead)
        direct = harness.curl(f"{server.url}/headers")
        self.assertEqual(direct.returncode, 0, direct.stderr)
        self.assertEqual(json.loads(direct.stdout)["target"], "/headers")
        # The origin accepts absolute-form, so it can stand in for a proxy here.
        unreachable = f"http://127.0.0.2:{harness.free_port()}/headers"
        via = harness.curl(unreachable, proxy=server.url)
        self.assertEqual(via.returncode, 0, via.stderr)
        self.assertEqual(json.loads(via.stdout)["target"], unreachable)

    def test_interception_ca_key_is_private_and_cert_is_a_ca(self):
        cert, key = harness.proxy_ca()
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        text = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-text"],
                              capture_output=True, text=True, timeout=20).stdout
        self.assertIn("CA:TRUE", text)

    def test_config_has_every_spec_section(self):
        text = harness.render_ini(harness._default_config(3128, 8082))
        for section in ("[proxy]", "[tls]", "[policy]", "[admin]", "[auth]", "[log]", "[pac]"):
            self.assertIn(section, text)
        self.assertIn("listen = 127.0.0.1:3128", text)
        self.assertIn("access_log = -", text)

    def test_stop_kills_a_process_that_ignores_sigterm(self):
        workdir = temp_dir(self)
        proc = harness.ManagedProcess(
            [sys.executable, "-c",
             "import signal,time;signal.signal(signal.SIGTERM,signal.SIG_IGN);"
             "print('up',flush=True);time.sleep(60)"], workdir, "stubborn")
        harness.wait_until(lambda: "up" in proc.stdout_text(), 10, what="child start")
        code = proc.stop(grace=0.5)
        self.assertEqual(code, -9)
        self.assertFalse(proc.alive())


def sip_exchange(sock, request: bytes):
    sock.sendall(request)
    return wire.recv_sip_message(sock)


class KamailioTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sip = servers.start_kamailio(tls=True)
        cls.addClassCleanup(cls.sip.stop)

    def test_options_over_tcp_is_answered_200(self):
        with socket.create_connection((HOST, self.sip.port), timeout=10) as sock:
            line, headers, _ = sip_exchange(sock, wire.sip_request("OPTIONS", "TCP"))
        self.assertEqual(wire.sip_status(line), 200, line)
        self.assertEqual(headers["cseq"], "1 OPTIONS")

    def test_register_over_tcp_is_saved(self):
        with socket.create_connection((HOST, self.sip.port), timeout=10) as sock:
            line, headers, _ = sip_exchange(sock, wire.sip_request("REGISTER", "TCP"))
            self.assertEqual(wire.sip_status(line), 200, line)
            self.assertIn("expires=", headers.get("contact", ""))
            # Several messages on one connection, as a long-lived SIP client sends them.
            line, _, _ = sip_exchange(sock, wire.sip_request("MESSAGE", "TCP", cseq=2,
                                                             body=b"hello"))
            self.assertEqual(wire.sip_status(line), 200, line)
            line, _, _ = sip_exchange(sock, wire.sip_request("INVITE", "TCP", cseq=3))
            self.assertEqual(wire.sip_status(line), 404, line)

    def test_negotiate_echoes_compression(self):
        with socket.create_connection((HOST, self.sip.port), timeout=10) as sock:
            line, headers, _ = sip_exchange(sock, wire.sip_request(
                "NEGOTIATE", "TCP", extra_headers=["Compression: LZ77-8K"]))
        self.assertEqual(wire.sip_status(line), 200, line)
        self.assertEqual(headers.get("compression"), "LZ77-8K")

    def test_options_and_register_over_tls(self):
        c = certs.test_certs()
        context = ssl.create_default_context(cafile=c.ca_cert)
        raw = socket.create_connection((HOST, self.sip.tls_port), timeout=10)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            line, _, _ = sip_exchange(sock, wire.sip_request("OPTIONS", "TLS"))
            self.assertEqual(wire.sip_status(line), 200, line)
            line, headers, _ = sip_exchange(sock, wire.sip_request("REGISTER", "TLS", cseq=2))
            self.assertEqual(wire.sip_status(line), 200, line)
            self.assertIn("transport=tls", headers.get("contact", ""))


class CoturnTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.turn = servers.start_coturn()
        cls.addClassCleanup(cls.turn.stop)

    def test_allocate_without_credentials_gets_401_with_realm_and_nonce(self):
        txid = os.urandom(12)
        with socket.create_connection((HOST, self.turn.port), timeout=10) as sock:
            sock.sendall(wire.stun_allocate_request(txid))
            answer = wire.parse_stun(wire.recv_stun(sock))
        self.assertEqual(answer["type"], wire.STUN_ALLOCATE_ERROR)
        self.assertEqual(answer["cookie"], wire.STUN_MAGIC)
        self.assertEqual(answer["txid"], txid)
        self.assertEqual(wire.stun_error_code(answer["attrs"][wire.ATTR_ERROR_CODE][0]), 401)
        self.assertEqual(answer["attrs"][wire.ATTR_REALM][0], self.turn.realm.encode())
        self.assertTrue(answer["attrs"][wire.ATTR_NONCE][0])


class MsTurnServerTest(unittest.TestCase):
    def setUp(self):
        self.server = servers.start_msturn_server()
        self.addCleanup(self.server.stop)

    def connect(self):
        sock = socket.create_connection((HOST, self.server.port), timeout=10)
        self.addCleanup(sock.close)
        return sock

    def test_hello_gets_the_83_byte_server_hello(self):
        sock = self.connect()
        sock.sendall(wire.pseudo_tls_client_hello())
        reply = wire.recv_exact(sock, 83)
        self.assertTrue(wire.is_pseudo_tls_server_hello(reply), reply.hex())
        self.assertEqual(reply[:5], bytes.fromhex("160301004e"))
        self.assertEqual(reply[-4:], bytes.fromhex("0e000000"))

    def test_allocate_after_hello_gets_401_then_success_with_username(self):
        sock = self.connect()
        sock.sendall(wire.pseudo_tls_client_hello())
        wire.recv_exact(sock, 83)
        txid = os.urandom(16)
        sock.sendall(wire.ms_turn_allocate_frame(txid=txid))
        frame_type, payload = wire.recv_ms_turn_frame(sock)
        self.assertEqual(frame_type, wire.MS_FRAME_CONTROL)
        answer = wire.parse_ms_turn(payload)
        self.assertEqual(answer["type"], wire.MS_ALLOCATE_ERROR)
        self.assertEqual(answer["txid"], txid)
        self.assertEqual(answer["first_attr"], 0x000F)
        self.assertEqual(wire.stun_error_code(answer["attrs"][wire.MS_ATTR_ERROR_CODE][0]), 401)
        self.assertEqual(answer["attrs"][wire.MS_ATTR_REALM][0], b"handoff.test")
        self.assertIn(wire.MS_ATTR_NONCE, answer["attrs"])

        sock.sendall(wire.ms_turn_allocate_frame(username=b"alice"))
        frame_type, payload = wire.recv_ms_turn_frame(sock)
        self.assertEqual(wire.parse_ms_turn(payload)["type"], wire.MS_ALLOCATE_RESPONSE)

    def test_data_frames_are_echoed(self):
        sock = self.connect()
        sock.sendall(wire.pseudo_tls_client_hello())
        wire.recv_exact(sock, 83)
        for size in (1, 1400, 65535):
            frame = wire.ms_turn_frame(wire.MS_FRAME_DATA, os.urandom(size))
            sock.sendall(frame)
            self.assertEqual(wire.recv_exact(sock, len(frame)), frame)
        self.assertEqual(self.server.stats()["data"], 3)

    def test_framing_without_pseudo_tls_is_accepted(self):
        sock = self.connect()
        sock.sendall(wire.ms_turn_allocate_frame())
        frame_type, payload = wire.recv_ms_turn_frame(sock)
        self.assertEqual(wire.parse_ms_turn(payload)["type"], wire.MS_ALLOCATE_ERROR)
        self.assertEqual(self.server.stats()["hellos"], 0)

    def test_a_real_tls_hello_is_refused(self):
        sock = self.connect()
        hello = bytearray(wire.pseudo_tls_client_hello())
        hello[47] = 0x2F  # another cipher suite: not the MS-TURN hello any more
        sock.sendall(bytes(hello))
        self.assertEqual(sock.recv(100), b"")


if __name__ == "__main__":
    unittest.main()
