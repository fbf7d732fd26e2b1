"""Transparent listeners (SPEC 4.2): clients that know of no proxy, redirected by the kernel.

The whole module runs in a network namespace of its own: at module set-up the test process
unshares its network namespace (so every server, handoff and every client it starts live there),
brings loopback up and installs nftables rules that redirect the clients' connections to handoff's
transparent listeners -- REDIRECT in the nat OUTPUT chain, with handoff's origin connections
exempted by their socket mark, and one TPROXY rule in prerouting. Where namespaces or nftables are
not available the module is skipped with one reason.
"""

import ctypes
import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import time
import unittest

import certs
import harness
import origin
import servers
import wire
from background_server import BackgroundServer

HOST = harness.HOST
CLONE_NEWNET = 0x40000000
MARK = 0x68
TABLE = "handoff_transparent_test"

POLICY = (
    "<ssl-intercept>\n"
    "  ssl.forward_proxy(yes)\n"
    "<proxy>\n"
    "  proxy.mode=transparent url.port={deny_port} DENY\n"
    "  ALLOW\n"
    "<proxy>\n"
    "  DENY client.protocol=!ssl tunneled=yes\n"
)


def _run(*cmd, input_text: str = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], input=input_text, capture_output=True,
                          text=True, timeout=30)


def _enter_namespace() -> str:
    """Moves this process into a new network namespace; returns why not, or None."""
    if os.geteuid() != 0:
        return "transparent tests need root (a network namespace and nftables rules)"
    if shutil.which("nft") is None:
        return "nft is not installed (Debian package nftables)"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        return ("network namespaces are not allowed here: unshare(CLONE_NEWNET) failed: "
                + os.strerror(ctypes.get_errno()))
    up = _run("ip", "link", "set", "lo", "up")
    if up.returncode != 0:
        return f"cannot bring loopback up in the new namespace: {up.stderr.strip()}"
    probe = _run("nft", "-f", "-", input_text=f"table inet {TABLE}_probe {{}}\n"
                 f"delete table inet {TABLE}_probe\n")
    if probe.returncode != 0:
        return f"nftables does not work in the namespace: {probe.stderr.strip()}"
    return None


def setUpModule():
    harness.handoff_bin()  # skips when the proxy is not built
    reason = _enter_namespace()
    if reason:
        raise unittest.SkipTest(reason)


def nft(ruleset: str) -> subprocess.CompletedProcess:
    return _run("nft", "-f", "-", input_text=ruleset)


def port_set(ports) -> str:
    return "{ " + ", ".join(str(p) for p in sorted(ports)) + " }"


def free_port_on(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Origin6(origin.Origin):
    address_family = socket.AF_INET6


class EchoServer(BackgroundServer):
    """Counts what it receives and echoes it: the unknown protocol's server."""

    def __init__(self):
        self.received = 0
        super().__init__((HOST, 0), _EchoHandler)


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.track(self.request)
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                with self.server.lock:
                    self.server.received += len(data)
                self.request.sendall(data)
        except OSError:
            pass
        finally:
            self.server.untrack(self.request)


def read_until_closed(sock, limit_s: float = 10.0) -> tuple:
    """(everything received, whether the peer closed) within limit_s."""
    data = b""
    deadline = time.monotonic() + limit_s
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def close_tls(tls) -> None:
    try:
        tls.settimeout(5)
        tls.unwrap().close()
    except (OSError, ValueError):
        tls.close()


class TransparentTest(unittest.TestCase):
    """One handoff with transparent listeners for IPv4, IPv6 and TPROXY, and the origins that
    clients believe they reach directly."""

    @classmethod
    def setUpClass(cls):
        c = certs.test_certs()
        cls.https = origin.start_origin(tls_cert=c.server_cert, tls_key=c.server_key)
        cls.addClassCleanup(cls.https.stop)
        cls.http = origin.start_origin()
        cls.addClassCleanup(cls.http.stop)
        cls.http6 = Origin6(host="::1").start()
        cls.addClassCleanup(cls.http6.stop)
        cls.denied = origin.start_origin()
        cls.addClassCleanup(cls.denied.stop)
        cls.echo = EchoServer().start()
        cls.addClassCleanup(cls.echo.stop)
        cls.msturn = servers.start_msturn_server()
        cls.addClassCleanup(cls.msturn.stop)
        cls.sip = servers.start_kamailio(tls=True)
        cls.addClassCleanup(cls.sip.stop)

        cls.t4 = harness.free_port()
        cls.t6 = free_port_on("::1")
        cls.ttp = harness.free_port()
        explicit = harness.free_port()
        cls.second_listen = ("127.0.0.2", free_port_on("127.0.0.2"))
        cls.proxy = harness.Handoff(
            policy_text=POLICY.format(deny_port=cls.denied.port),
            proxy={
                "listen": f"{HOST}:{explicit}, {cls.second_listen[0]}:{cls.second_listen[1]}",
                "transparent": f"{HOST}:{cls.t4}, [::1]:{cls.t6}, {HOST}:{cls.ttp}",
                "transparent_mark": hex(MARK),
            },
        )
        cls.addClassCleanup(cls.proxy.close)

        v4_ports = {cls.https.port, cls.http.port, cls.denied.port, cls.echo.port,
                    cls.msturn.port, cls.sip.tls_port}
        rules = nft(
            f"table inet {TABLE} {{\n"
            "  chain output {\n"
            "    type nat hook output priority -100; policy accept;\n"
            f"    meta mark {MARK:#x} return\n"
            f"    ip daddr {HOST} tcp dport {port_set(v4_ports)} redirect to :{cls.t4}\n"
            f"    ip daddr {cls.second_listen[0]} tcp dport {cls.second_listen[1]} "
            f"redirect to :{cls.t4}\n"
            f"    ip6 daddr ::1 tcp dport {cls.http6.port} redirect to :{cls.t6}\n"
            "  }\n"
            "}\n")
        if rules.returncode != 0:
            raise AssertionError(f"nft rejected the REDIRECT rules: {rules.stderr}")
        cls.addClassCleanup(nft, f"delete table inet {TABLE}\n")

    def log_for(self, predicate, timeout: float = 10.0) -> dict:
        return self.proxy.wait_log(predicate, timeout)

    # ---- HTTPS, intercepted ----

    def test_curl_without_a_proxy_gets_an_intercepted_page(self):
        port = self.https.port
        proc = harness.curl("-f", f"https://origin.test:{port}/transparent-https",
                            "--resolve", f"origin.test:{port}:{HOST}",
                            "--cacert", self.proxy.ca_cert, "-w", "|%{ssl_verify_result}")
        self.assertEqual(proc.returncode, 0, proc.stderr.decode(errors="replace")
                         + self.proxy.stderr_text()[-2000:])
        body, verify = proc.stdout.decode().rsplit("|", 1)
        self.assertEqual(body, "hello from origin\n")
        self.assertEqual(verify, "0")  # the leaf chains to handoff's CA, the only one trusted
        entry = self.log_for(lambda e: "/transparent-https" in (e.get("url") or ""))
        self.assertEqual(entry["url"], f"https://origin.test:{port}/transparent-https")
        self.assertEqual(entry["sni"], "origin.test")
        self.assertIs(entry["intercepted"], True, entry)
        self.assertEqual(entry["mode"], "transparent", entry)
        self.assertEqual(entry["action"], "allowed", entry)

    def test_the_origin_certificate_is_verified_against_the_sni(self):
        # The test certificate does not name wrong.test: handoff must refuse the origin.
        port = self.https.port
        proc = harness.curl(f"https://wrong.test:{port}/wrong-name",
                            "--resolve", f"wrong.test:{port}:{HOST}",
                            "--cacert", self.proxy.ca_cert, "-w", "%{http_code}")
        self.assertEqual(proc.stdout.decode()[-3:], "502", proc.stdout)
        entry = self.log_for(lambda e: "/wrong-name" in (e.get("url") or ""))
        self.assertEqual(entry["action"], "error", entry)
        self.assertEqual(entry["mode"], "transparent", entry)

    # ---- plain HTTP ----

    def test_plain_http_is_forwarded_per_request_with_host_as_its_name(self):
        proc = harness.curl("-f", f"http://{HOST}:{self.http.port}/plain-one")
        self.assertEqual(proc.stdout, b"hello from origin\n", proc.stderr)
        entry = self.log_for(lambda e: "/plain-one" in (e.get("url") or ""))
        self.assertEqual(entry["url"], f"http://{HOST}:{self.http.port}/plain-one")
        self.assertEqual(entry["protocol"], "http", entry)
        self.assertEqual(entry["mode"], "transparent", entry)
        self.assertNotIn("error", entry)

    def test_a_host_that_resolves_elsewhere_still_goes_to_the_original_destination(self):
        proc = harness.curl("-f", f"http://{HOST}:{self.http.port}/elsewhere",
                            "-H", "Host: 127.0.0.9")
        self.assertEqual(proc.stdout, b"hello from origin\n", proc.stderr)
        entry = self.log_for(lambda e: "/elsewhere" in (e.get("url") or ""))
        self.assertEqual(entry["url"], f"http://127.0.0.9:{self.http.port}/elsewhere")
        self.assertIn("127.0.0.9", entry.get("error", ""), entry)
        self.assertIn(f"sent to {HOST}:{self.http.port}", entry.get("error", ""), entry)
        self.assertEqual(entry["action"], "allowed", entry)

    def test_ipv6_redirected_connection(self):
        proc = harness.curl("-f", f"http://[::1]:{self.http6.port}/over-ipv6")
        self.assertEqual(proc.stdout, b"hello from origin\n", proc.stderr)
        entry = self.log_for(lambda e: "/over-ipv6" in (e.get("url") or ""))
        self.assertEqual(entry["url"], f"http://[::1]:{self.http6.port}/over-ipv6")
        self.assertEqual(entry["mode"], "transparent", entry)

    # ---- passthrough protocols ----

    def test_sip_over_tls_to_kamailio_is_detected_inside_tls(self):
        sock = socket.create_connection((HOST, self.sip.tls_port), timeout=10)
        context = ssl.create_default_context(cafile=self.proxy.ca_cert)
        tls = context.wrap_socket(sock, server_hostname="localhost")
        self.addCleanup(tls.close)
        tls.sendall(wire.sip_request("OPTIONS", "TLS"))
        line, headers, _ = wire.recv_sip_message(tls)
        self.assertEqual(wire.sip_status(line), 200, line)
        self.assertEqual(headers["cseq"], "1 OPTIONS")
        sessions = harness.wait_until(
            lambda: [s for s in self.proxy.sessions() if s.get("protocol") == "sip"], 5,
            what="a sip session")
        self.assertEqual(sessions[0]["mode"], "transparent", sessions)
        self.assertIs(sessions[0]["intercepted"], True, sessions)
        self.assertEqual(sessions[0]["target"], f"{HOST}:{self.sip.tls_port}", sessions)
        close_tls(tls)
        entry = self.log_for(lambda e: e.get("target") == f"{HOST}:{self.sip.tls_port}")
        self.assertEqual(entry["protocol"], "sip", entry)
        self.assertIs(entry["intercepted"], True, entry)
        self.assertEqual(entry["action"], "allowed", entry)  # Step 3 lets SIP through
        self.assertEqual(entry["mode"], "transparent", entry)
        self.assertNotIn("method", entry)  # no CONNECT: the method is unknown

    def test_ms_turn_pseudo_tls_is_passed_through(self):
        sock = socket.create_connection((HOST, self.msturn.port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(wire.pseudo_tls_client_hello())
        answer = wire.recv_exact(sock, wire.PSEUDO_TLS_SERVER_HELLO_LEN)
        self.assertTrue(wire.is_pseudo_tls_server_hello(answer), answer.hex())
        txid = os.urandom(16)
        sock.sendall(wire.ms_turn_allocate_frame(txid=txid))
        frame_type, payload = wire.recv_ms_turn_frame(sock)
        self.assertEqual(frame_type, wire.MS_FRAME_CONTROL)
        reply = wire.parse_ms_turn(payload)
        self.assertEqual(reply["txid"], txid)
        self.assertEqual(reply["type"], wire.MS_ALLOCATE_ERROR)
        sock.close()
        entry = self.log_for(lambda e: e.get("target") == f"{HOST}:{self.msturn.port}")
        self.assertEqual(entry["protocol"], "ms-turn", entry)
        self.assertEqual(entry["action"], "allowed", entry)
        self.assertEqual(entry["mode"], "transparent", entry)

    def test_unknown_protocol_is_denied_by_step3(self):
        sock = socket.create_connection((HOST, self.echo.port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b"\xfe\xed\xfa\xce" + os.urandom(60))
        data, closed = read_until_closed(sock)
        self.assertTrue(closed, "an unknown protocol stayed open under the Step 3 DENY")
        self.assertEqual(data, b"")
        entry = self.log_for(lambda e: e.get("target") == f"{HOST}:{self.echo.port}")
        self.assertEqual(entry["action"], "denied", entry)
        self.assertEqual(entry["protocol"], "tcp", entry)
        self.assertIs(entry["tunneled"], True, entry)
        self.assertEqual(entry["mode"], "transparent", entry)
        self.assertEqual(self.echo.received, 0, "denied bytes reached the server")

    # ---- policy ----

    def test_proxy_mode_transparent_decides_at_checkpoint_1(self):
        proc = harness.curl(f"http://{HOST}:{self.denied.port}/mode")
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        entry = self.log_for(lambda e: e.get("target") == f"{HOST}:{self.denied.port}")
        self.assertEqual(entry["action"], "denied", entry)
        self.assertTrue(entry["rule"].endswith(":4"), entry)
        self.assertEqual(entry["mode"], "transparent", entry)
        self.assertEqual(self.denied.requests, 0)
        # The same destination through the explicit listener is not transparent: allowed.
        tunnel = harness.connect_tunnel(self.proxy, HOST, self.denied.port)
        tunnel.close()

    # ---- refusals ----

    def test_a_connection_to_the_listener_itself_is_closed(self):
        sock = socket.create_connection((HOST, self.t4), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = read_until_closed(sock)
        self.assertTrue(closed)
        self.assertEqual(data, b"")
        entry = self.log_for(lambda e: e.get("target") == f"{HOST}:{self.t4}")
        self.assertIn("not redirected", entry["error"], entry)
        self.assertEqual(entry["action"], "error", entry)

    def test_a_redirected_connection_to_handoffs_own_listener_is_closed(self):
        host, port = self.second_listen
        sock = socket.create_connection((host, port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = read_until_closed(sock)
        self.assertTrue(closed)
        self.assertEqual(data, b"")
        entry = self.log_for(lambda e: e.get("target") == f"{host}:{port}")
        self.assertIn("loop", entry["error"], entry)
        self.assertEqual(entry["mode"], "transparent", entry)

    def test_metrics_count_transparent_connections(self):
        harness.curl("-f", f"http://{HOST}:{self.http.port}/for-metrics")
        self.log_for(lambda e: "/for-metrics" in (e.get("url") or ""))
        text = self.proxy.admin_get("/metrics").decode()
        line = next((l for l in text.splitlines()
                     if l.startswith('handoff_transparent_connections_total{result="accepted"}')),
                    "")
        self.assertTrue(line and int(line.split()[-1]) >= 1, text[-1500:])

    # ---- TPROXY ----

    def test_tproxy_connection_uses_its_local_address_as_destination(self):
        target_host = "127.0.0.2"
        server = origin.start_origin(host=target_host)
        self.addCleanup(server.stop)
        rules = nft(
            f"table inet {TABLE}_tproxy {{\n"
            "  chain pre {\n"
            "    type filter hook prerouting priority mangle; policy accept;\n"
            f"    meta mark {MARK:#x} return\n"
            f"    ip daddr {target_host} tcp dport {server.port} "
            f"tproxy ip to {HOST}:{self.ttp} meta mark set 1 accept\n"
            "  }\n"
            "}\n")
        if rules.returncode != 0:
            self.skipTest(f"TPROXY is not available in this namespace: {rules.stderr.strip()}")
        self.addCleanup(nft, f"delete table inet {TABLE}_tproxy\n")
        proc = harness.curl("-f", f"http://{target_host}:{server.port}/via-tproxy")
        self.assertEqual(proc.stdout, b"hello from origin\n",
                         proc.stderr + self.proxy.stderr_text()[-2000:].encode())
        entry = self.log_for(lambda e: "/via-tproxy" in (e.get("url") or ""))
        self.assertEqual(entry["url"], f"http://{target_host}:{server.port}/via-tproxy")
        self.assertEqual(entry["mode"], "transparent", entry)
        self.assertEqual(server.requests, 1)


class WithoutCapabilitiesTest(unittest.TestCase):
    """Without CAP_NET_ADMIN (and CAP_NET_RAW) handoff still serves REDIRECTed connections; it
    says that it cannot mark its origin connections nor take TPROXY, and the rules exempt its
    traffic by group instead."""

    GID = 4242

    def test_redirect_works_unmarked_and_the_missing_capability_is_logged(self):
        if shutil.which("setpriv") is None:
            self.skipTest("setpriv is not installed (Debian package util-linux)")
        server = origin.start_origin()
        self.addCleanup(server.stop)
        listener = harness.free_port()
        proxy = harness.Handoff(policy_text="<proxy>\n  ALLOW\n", start=False,
                                proxy={"transparent": f"{HOST}:{listener}"})
        self.addCleanup(proxy.close)
        wrapper = os.path.join(proxy.dir, "without-caps.sh")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\n"
                    f"exec setpriv --bounding-set -net_admin,-net_raw --regid {self.GID} "
                    f"--clear-groups {proxy.binary} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        proxy.binary = wrapper
        proxy.start()
        rules = nft(
            f"table inet {TABLE}_nocaps {{\n"
            "  chain output {\n"
            "    type nat hook output priority -100; policy accept;\n"
            f"    meta skgid {self.GID} return\n"
            f"    ip daddr {HOST} tcp dport {server.port} redirect to :{listener}\n"
            "  }\n"
            "}\n")
        self.assertEqual(rules.returncode, 0, rules.stderr)
        self.addCleanup(nft, f"delete table inet {TABLE}_nocaps\n")
        proc = harness.curl("-f", f"http://{HOST}:{server.port}/without-caps")
        self.assertEqual(proc.stdout, b"hello from origin\n",
                         proc.stderr + proxy.stderr_text()[-2000:].encode())
        entry = proxy.wait_log(lambda e: "/without-caps" in (e.get("url") or ""))
        self.assertEqual(entry["mode"], "transparent", entry)
        stderr = proxy.stderr_text()
        self.assertIn("cannot mark origin connections", stderr)
        self.assertIn("CAP_NET_ADMIN", stderr)
        self.assertIn(f"transparent listener {HOST}:{listener}: cannot set IP_TRANSPARENT", stderr)


if __name__ == "__main__":
    unittest.main()
