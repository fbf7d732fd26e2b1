"""Every error status of SPEC section 4: the status, a body naming the cause, and the access-log
line (action, status, error or rule)."""

import re
import subprocess
import time
import unittest
import warnings

import core_support as cs
import harness
import origin

HOST = harness.HOST

# A label longer than 63 bytes cannot be put in a DNS query, so the resolver refuses the name
# at once without asking any server: a .invalid name that fails fast whether or not a DNS
# server is reachable (a plain unknown name would wait for the server, and with none
# reachable the connect timeout would answer 504 instead).
UNRESOLVABLE = "x" * 70 + ".handoff.invalid"


class ErrorChecks(unittest.TestCase):
    """Shared assertions."""

    def assert_status(self, proc, status: int, connect: bool = False):
        if connect:
            # For a refused CONNECT curl reports the proxy's status in %{http_connect}.
            self.assertEqual(proc.stdout.decode().strip().split("|")[-1], str(status),
                             proc.stderr.decode(errors="replace"))
        else:
            self.assertEqual(proc.returncode, 0, proc.stderr.decode(errors="replace"))
            self.assertTrue(proc.stdout.endswith(f"|{status}".encode()),
                            f"expected {status}, got: {proc.stdout[-500:]!r}")

    def curl_status(self, proxy, url: str, *args, timeout=20):
        """curl through proxy printing the body then |<status>."""
        return harness.curl(*args, "-w", "|%{http_code}", url, proxy=proxy.url, timeout=timeout)

    def curl_connect_status(self, proxy, authority: str, timeout=20):
        return harness.curl("--proxytunnel", "-w", "|%{http_connect}",
                            f"https://{authority}/", proxy=proxy.url, timeout=timeout)

    def logged(self, proxy, status: int, key: str, value: str, timeout=10.0) -> dict:
        return proxy.wait_log(lambda e: e.get("status") == status and e.get(key) == value,
                              timeout=timeout)

    def assert_error_logged(self, proxy, status, key, value, pattern):
        entry = self.logged(proxy, status, key, value)
        self.assertEqual(entry.get("action"), "error", entry)
        self.assertRegex(entry.get("error") or "", pattern, entry)
        return entry


class MalformedRequestTest(ErrorChecks):
    @classmethod
    def setUpClass(cls):
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)
        cls.proxy = harness.Handoff(policy_text="<proxy>\n  ALLOW\n")
        cls.addClassCleanup(cls.proxy.close)

    def raw(self, payload: bytes) -> cs.Response:
        return cs.exchange(self.proxy.host, self.proxy.port, payload)

    def last_entry_with(self, status):
        entries = [e for e in self.proxy.log_lines() if e.get("status") == status]
        return entries[-1] if entries else None

    def test_malformed_request_line_is_400(self):
        response = self.raw(b"THIS IS NOT HTTP\r\n\r\n")
        self.assertEqual(response.status, 400, response)
        self.assertRegex(response.text.lower(), r"malformed|invalid")
        entry = self.proxy.wait_log(lambda e: e.get("status") == 400
                                    and re.search(r"method", e.get("error") or "", re.I))
        self.assertEqual(entry.get("action"), "error", entry)

    def settled_requests(self) -> int:
        """The origin's request count once an earlier test's request has stopped arriving (a
        request whose bad body is refused still reaches the origin with its head)."""
        count = self.origin.stats()["requests"]
        for _ in range(10):
            time.sleep(0.3)
            now = self.origin.stats()["requests"]
            if now == count:
                return now
            count = now
        return count

    def test_content_length_with_transfer_encoding_is_400(self):
        authority = f"{HOST}:{self.origin.port}"
        before = self.settled_requests()
        response = self.raw(
            f"POST http://{authority}/echo HTTP/1.1\r\nHost: {authority}\r\n"
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            .encode())
        self.assertEqual(response.status, 400, response)
        self.assertIn("content-length", response.text.lower())
        self.assertIn("transfer-encoding", response.text.lower())
        entry = self.proxy.wait_log(lambda e: e.get("status") == 400
                                    and "transfer-encoding" in (e.get("error") or "").lower())
        self.assertEqual(entry.get("action"), "error", entry)
        self.assertEqual(self.origin.stats()["requests"], before,
                         "the smuggling-shaped request reached the origin")

    def test_bad_chunk_size_is_400(self):
        authority = f"{HOST}:{self.origin.port}"
        response = self.raw(
            f"POST http://{authority}/echo HTTP/1.1\r\nHost: {authority}\r\n"
            "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".encode())
        self.assertEqual(response.status, 400, response)
        self.assertIn("chunk", response.text.lower())
        entry = self.proxy.wait_log(lambda e: e.get("status") == 400
                                    and "chunk" in (e.get("error") or "").lower())
        self.assertEqual(entry.get("action"), "error", entry)


class HeadLimitsTest(ErrorChecks):
    @classmethod
    def setUpClass(cls):
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)
        cls.proxy = harness.Handoff(policy_text="<proxy>\n  ALLOW\n",
                                    proxy={"max_header_bytes": "4096", "header_timeout_s": "1"})
        cls.addClassCleanup(cls.proxy.close)

    def test_head_larger_than_max_header_bytes_is_431(self):
        url = f"{self.origin.url}/too-big"
        proc = self.curl_status(self.proxy, url, "-H", "X-Padding: " + "p" * 5000)
        self.assert_status(proc, 431)
        self.assertRegex(proc.stdout.decode().lower(), r"too large|max_header_bytes")
        # The head was cut short, so the line is found by its status alone.
        entry = self.proxy.wait_log(lambda e: e.get("status") == 431)
        self.assertEqual(entry.get("action"), "error", entry)
        self.assertRegex(entry.get("error") or "", r"(?i)too large|max_header_bytes", entry)

    def test_head_under_the_limit_is_forwarded(self):
        proc = self.curl_status(self.proxy, f"{self.origin.url}/fits", "-H",
                                "X-Padding: " + "p" * 2000)
        self.assert_status(proc, 200)

    def test_head_not_complete_in_time_is_408(self):
        authority = f"{HOST}:{self.origin.port}"
        with cs.connect(self.proxy.host, self.proxy.port, timeout=10) as sock:
            sock.sendall(f"GET http://{authority}/never-ends HTTP/1.1\r\nHost: {authority}\r\n"
                         .encode())
            response = cs.read_response(origin.Reader(sock))
        self.assertEqual(response.status, 408, response)
        self.assertRegex(response.text.lower(), r"time|within")
        entry = self.proxy.wait_log(lambda e: e.get("status") == 408)
        self.assertEqual(entry.get("action"), "error", entry)
        self.assertRegex(entry.get("error") or "", r"(?i)time|within", entry)


class PolicyDenialTest(ErrorChecks):
    POLICY = "<proxy>\n  url.domain=blocked.test DENY\n  ALLOW\n"

    @classmethod
    def setUpClass(cls):
        cls.proxy = harness.Handoff(policy_text=cls.POLICY)
        cls.addClassCleanup(cls.proxy.close)

    def test_denied_request_is_403_naming_the_rule(self):
        # blocked.test does not resolve: the policy decides before any lookup.
        url = "http://www.blocked.test/page"
        proc = self.curl_status(self.proxy, url)
        self.assert_status(proc, 403)
        self.assertIn("policy.cpl:2", proc.stdout.decode())
        entry = self.logged(self.proxy, 403, "url", url)
        self.assertEqual(entry.get("action"), "denied", entry)
        self.assertTrue((entry.get("rule") or "").endswith("policy.cpl:2"), entry)

    def test_denied_connect_is_403_naming_the_rule(self):
        proc = self.curl_connect_status(self.proxy, "blocked.test:443")
        self.assert_status(proc, 403, connect=True)
        entry = self.logged(self.proxy, 403, "target", "blocked.test:443")
        self.assertEqual(entry.get("action"), "denied", entry)
        self.assertTrue((entry.get("rule") or "").endswith("policy.cpl:2"), entry)
        response = cs.exchange(self.proxy.host, self.proxy.port,
                               b"CONNECT blocked.test:443 HTTP/1.1\r\nHost: blocked.test:443\r\n\r\n")
        self.assertEqual(response.status, 403)
        self.assertIn("policy.cpl:2", response.text)


def _bcrypt_hash(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


def _sha_crypt_hash(password: str) -> str:
    proc = subprocess.run(["openssl", "passwd", "-6", password], capture_output=True, text=True,
                          timeout=30, check=True)
    return proc.stdout.strip()


class AuthTest(ErrorChecks):
    @classmethod
    def setUpClass(cls):
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)
        bcrypt = _bcrypt_hash("blowfish-pw")
        sha = _sha_crypt_hash("sha-pw")
        assert bcrypt.startswith("$2"), bcrypt
        assert sha.startswith("$6$"), sha
        cls.proxy = harness.Handoff(
            policy_text="<proxy>\n  ALLOW\n",
            files={"users.htpasswd": f"alice:{bcrypt}\nbob:{sha}\n"},
            auth={"htpasswd": "users.htpasswd", "realm": "handoff test"})
        cls.addClassCleanup(cls.proxy.close)

    def test_request_without_credentials_is_407_with_a_challenge(self):
        url = f"{self.origin.url}/no-credentials"
        before = self.origin.stats()["requests"]
        proc = harness.curl("-D", "-", "-w", "|%{http_code}", url, proxy=self.proxy.url)
        self.assert_status(proc, 407)
        head = proc.stdout.decode("latin-1").lower()
        self.assertRegex(head, r'proxy-authenticate: basic realm="handoff test"')
        self.assertIn("auth", head.split("\r\n\r\n", 1)[1])
        entry = self.logged(self.proxy, 407, "url", url)
        self.assertEqual(entry.get("action"), "denied", entry)
        self.assertEqual(self.origin.stats()["requests"], before,
                         "a request without credentials reached the origin")

    def test_connect_without_credentials_is_407(self):
        proc = self.curl_connect_status(self.proxy, f"{HOST}:{self.origin.port}")
        self.assert_status(proc, 407, connect=True)

    def test_wrong_password_is_407(self):
        url = f"{self.origin.url}/wrong-password"
        proc = self.curl_status(self.proxy, url, "--proxy-user", "alice:not-it")
        self.assert_status(proc, 407)
        self.logged(self.proxy, 407, "url", url)

    def test_bcrypt_user_gets_through_and_is_logged(self):
        url = f"{self.origin.url}/headers?alice"
        proc = self.curl_status(self.proxy, url, "--proxy-user", "alice:blowfish-pw")
        self.assert_status(proc, 200)
        self.assertNotIn(b"proxy-authorization", proc.stdout.lower(),
                         "the credentials were forwarded to the origin")
        entry = self.logged(self.proxy, 200, "url", url)
        self.assertEqual(entry.get("user"), "alice", entry)

    def test_sha_crypt_user_gets_through_a_tunnel_and_is_logged(self):
        target = f"{HOST}:{self.origin.port}"
        proc = harness.curl("--proxytunnel", "--proxy-user", "bob:sha-pw",
                            f"http://{target}/tunnelled", proxy=self.proxy.url)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, b"hello from origin\n")
        entry = self.proxy.wait_log(lambda e: e.get("user") == "bob" and e.get("status") == 200)
        self.assertIn(target, (entry.get("target") or "") + (entry.get("url") or ""), entry)


class UpstreamFailureTest(ErrorChecks):
    @classmethod
    def setUpClass(cls):
        cls.proxy = harness.Handoff(policy_text="<proxy>\n  ALLOW\n",
                                    proxy={"connect_timeout_s": "1"})
        cls.addClassCleanup(cls.proxy.close)

    def test_name_that_does_not_resolve_is_502(self):
        url = f"http://{UNRESOLVABLE}/"
        proc = self.curl_status(self.proxy, url)
        self.assert_status(proc, 502)
        self.assertIn(UNRESOLVABLE, proc.stdout.decode())
        self.assertIn("resolve", proc.stdout.decode().lower())
        self.assert_error_logged(self.proxy, 502, "url", url, r"(?i)resolve")

    def test_connect_to_a_name_that_does_not_resolve_is_502(self):
        target = f"{UNRESOLVABLE}:443"
        proc = self.curl_connect_status(self.proxy, target)
        self.assert_status(proc, 502, connect=True)
        self.assert_error_logged(self.proxy, 502, "target", target, r"(?i)resolve")

    def test_connection_refused_is_502(self):
        port = harness.free_port()  # nothing listens there
        url = f"http://{HOST}:{port}/"
        proc = self.curl_status(self.proxy, url)
        self.assert_status(proc, 502)
        self.assertIn("refused", proc.stdout.decode().lower())
        self.assert_error_logged(self.proxy, 502, "url", url, r"(?i)refused")

    def test_origin_connect_timeout_is_504(self):
        silent = cs.FullBacklogListener()
        self.addCleanup(silent.close)
        url = f"http://{HOST}:{silent.port}/"
        proc = self.curl_status(self.proxy, url)
        self.assert_status(proc, 504)
        self.assertRegex(proc.stdout.decode().lower(), r"timed out|timeout")
        self.assert_error_logged(self.proxy, 504, "url", url, r"(?i)timed out|timeout")

    def test_connect_timeout_is_504_for_a_tunnel_too(self):
        silent = cs.FullBacklogListener()
        self.addCleanup(silent.close)
        target = f"{HOST}:{silent.port}"
        proc = self.curl_connect_status(self.proxy, target)
        self.assert_status(proc, 504, connect=True)
        self.assert_error_logged(self.proxy, 504, "target", target, r"(?i)timed out|timeout")


class SilentOriginTest(ErrorChecks):
    def test_origin_that_accepts_but_never_answers_is_504(self):
        # idle_timeout_s bounds the wait for an answer once the request is sent.
        proxy = harness.Handoff(policy_text="<proxy>\n  ALLOW\n", proxy={"idle_timeout_s": "1"})
        self.addCleanup(proxy.close)
        server = origin.start_origin()
        self.addCleanup(server.stop)
        url = f"{server.url}/slow?ms=4000"
        proc = self.curl_status(proxy, url)
        self.assert_status(proc, 504)
        self.assertIn("no answer", proc.stdout.decode())
        self.assert_error_logged(proxy, 504, "url", url, r"(?i)no answer|idle")


class SelfTargetTest(ErrorChecks):
    @classmethod
    def setUpClass(cls):
        cls.proxy = harness.Handoff(policy_text="<proxy>\n  ALLOW\n")
        cls.addClassCleanup(cls.proxy.close)

    def test_request_to_the_proxy_port_is_508(self):
        url = f"http://{HOST}:{self.proxy.port}/loop"
        proc = self.curl_status(self.proxy, url)
        self.assert_status(proc, 508)
        self.assertIn("loop", proc.stdout.decode().lower())
        self.assert_error_logged(self.proxy, 508, "url", url, r"(?i)loop")

    def test_request_to_the_proxy_port_by_name_is_508(self):
        proc = self.curl_status(self.proxy, f"http://localhost:{self.proxy.port}/loop")
        self.assert_status(proc, 508)

    def test_connect_to_the_proxy_port_is_508(self):
        target = f"{HOST}:{self.proxy.port}"
        proc = self.curl_connect_status(self.proxy, target)
        self.assert_status(proc, 508, connect=True)
        self.assert_error_logged(self.proxy, 508, "target", target, r"(?i)loop")

    def test_admin_listener_is_not_reachable_through_the_proxy(self):
        url = f"{self.proxy.admin_url}/healthz"
        proc = self.curl_status(self.proxy, url)
        self.assert_status(proc, 403)
        self.assertIn("admin", proc.stdout.decode().lower())
        self.assertNotIn(b"ok|", proc.stdout)
        entry = self.logged(self.proxy, 403, "url", url)
        self.assertIn(entry.get("action"), ("denied", "error"), entry)
        proc = self.curl_connect_status(self.proxy, f"{HOST}:{self.proxy.admin_port}")
        self.assert_status(proc, 403, connect=True)


class MaxConnectionsTest(ErrorChecks):
    def test_connection_over_max_connections_is_503(self):
        target = origin.start_origin()
        self.addCleanup(target.stop)
        proxy = harness.Handoff(policy_text="<proxy>\n  ALLOW\n",
                                proxy={"max_connections": "2"})
        self.addCleanup(proxy.close)
        # The harness's start-up probe must have been read as closed before the limit is used.
        harness.wait_until(lambda: b"\nhandoff_active_sessions 0\n" in proxy.admin_get("/metrics"),
                           timeout=10, what="no open connection")
        held = [cs.connect(proxy.host, proxy.port) for _ in range(2)]
        for sock in held:
            self.addCleanup(sock.close)
        # Wait until the proxy has accepted both idle connections.
        harness.wait_until(lambda: len(proxy.sessions()) >= 2, timeout=10,
                           what="two open sessions")
        url = f"{target.url}/third"
        proc = self.curl_status(proxy, url)
        self.assert_status(proc, 503)
        self.assertIn("max_connections", proc.stdout.decode())
        entry = proxy.wait_log(lambda e: e.get("status") == 503)
        self.assertEqual(entry.get("action"), "error", entry)
        self.assertIn("max_connections", entry.get("error") or "", entry)
        # Below the limit again, new clients are served.
        held[0].close()
        time.sleep(0.3)

        def served():
            return self.curl_status(proxy, f"{target.url}/after").stdout.endswith(b"|200")

        harness.wait_until(served, timeout=10, interval=0.3, what="a request served again")


if __name__ == "__main__":
    unittest.main()


class GarbageFloodTest(ErrorChecks):
    """Random bytes after plausible and implausible starts, from many clients in a row."""

    def test_bad_input_breaks_nothing(self):
        import random
        import socket as socket_module
        proxy = harness.Handoff(policy_text="<proxy>\n  ALLOW\n",
                                proxy={"workers": "2", "detect_timeout_ms": "200"})
        self.addCleanup(proxy.close)
        server = origin.start_origin()
        self.addCleanup(server.stop)
        rnd = random.Random(7)
        starts = [b"", b"GET ", b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % server.port,
                  b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                  % server.port,
                  b"POST http://127.0.0.1:%d/echo HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
                  % server.port]
        for _ in range(150):
            sock = socket_module.create_connection((HOST, proxy.port), timeout=2)
            payload = rnd.choice(starts) + bytes(rnd.getrandbits(8)
                                                 for _ in range(rnd.randint(0, 2000)))
            try:
                sock.sendall(payload)
                if rnd.random() < 0.5:
                    sock.shutdown(socket_module.SHUT_WR)
                sock.recv(4096)
            except OSError:
                pass
            sock.close()
        # Still serving, and a well-formed request goes through.
        proc = self.curl_status(proxy, f"{server.url}/bytes/1000", "-o", "/dev/null")
        self.assert_status(proc, 200)
        self.assertEqual(proxy.admin_get("/healthz").strip(), b"ok")
        code = proxy.stop()
        err = proxy.stderr_text()  # after the stop: leak reports are written at exit
        self.assertEqual(code, 0, err[-3000:])
        for report in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            self.assertNotIn(report, err)
