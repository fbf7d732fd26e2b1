"""TLS interception with proxy handoff (SPEC §2 `ca init`, §5, §6, the ssl.* parts of §7).

Real clients (curl, openssl s_client, Python ssl) go through the proxy to TLS origins on
loopback: the test origin, a TLS echo server and Kamailio's TLS listener. The proxy's CA comes
from `handoff ca init`; the origins' certificates from the test root CA, which is the proxy's
upstream_ca_file.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import socketserver
import ssl
import stat
import subprocess
import tempfile
import time
import unittest

import certs
import harness
from background_server import BackgroundServer
import origin
import servers
import wire

HOST = harness.HOST

INTERCEPT_WITH_HANDOFF = "<ssl-intercept>\n  ssl.forward_proxy(yes)\n<proxy>\n  ALLOW\n"
SNI_BYPASS_SEED = (
    "<ssl-intercept>\n"
    "  url.host.substring=lync.com ssl.forward_proxy(no)\n"
    "  ssl.forward_proxy(https)\n"
    "<proxy>\n"
    "  ALLOW\n"
)
STEP3_DENY_LAYER = "<proxy>\n  DENY client.protocol=!ssl tunneled=yes\n"

# What a refusal must name for each broken origin certificate (OpenSSL's wording or plain English).
CERT_PROBLEMS = {
    "self-signed": re.compile(r"self[- ]signed", re.I),
    "expired": re.compile(r"expired", re.I),
    "wrong-name": re.compile(r"hostname mismatch|name mismatch|does not match|wrong name|"
                             r"not valid for|host ?name", re.I),
}


# ---- small helpers --------------------------------------------------------------------------



def close_tls(tls) -> None:
    """Ends TLS as RFC 8446 asks: close_notify first, so the proxy sees a clean end."""
    try:
        tls.settimeout(5)
        tls.unwrap().close()
    except (OSError, ValueError):
        tls.close()


def temp_dir(test: unittest.TestCase) -> str:
    path = tempfile.mkdtemp(prefix="handoff-tls-test-")
    test.addCleanup(shutil.rmtree, path, True)
    return path


def start_proxy(test: unittest.TestCase, policy: str, **sections) -> harness.Handoff:
    proxy = harness.Handoff(policy_text=policy, **sections)
    test.addCleanup(proxy.close)
    return proxy


def start_tls_origin(test, cert: str = None, key: str = None, alpn=None) -> origin.Origin:
    c = certs.test_certs()
    server = origin.start_origin(tls_cert=cert or c.server_cert, tls_key=key or c.server_key,
                                 alpn=alpn)
    test.addCleanup(server.stop)
    return server


def openssl(*args, input: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *[str(a) for a in args]], input=input,
                          capture_output=True, timeout=30)


open_tunnel = harness.connect_tunnel


def trusting(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def not_verifying() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def served_cert(proxy: harness.Handoff, port: int, sni: str, host: str = HOST) -> bytes:
    """DER of the certificate a client sending SNI `sni` is shown through CONNECT host:port."""
    sock = open_tunnel(proxy, host, port)
    with not_verifying().wrap_socket(sock, server_hostname=sni) as tls:
        return tls.getpeercert(binary_form=True)


def write_pem(test, der: bytes) -> str:
    path = os.path.join(temp_dir(test), "cert.pem")
    with open(path, "w") as f:
        f.write(ssl.DER_cert_to_PEM_cert(der))
    return path


def x509_text(path: str) -> str:
    proc = openssl("x509", "-in", path, "-noout", "-text")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode()


def x509_name(path: str, which: str) -> str:
    """The subject or issuer of a PEM certificate, one RFC 2253 string."""
    proc = openssl("x509", "-in", path, "-noout", f"-{which}", "-nameopt", "RFC2253")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().strip().split("=", 1)[1]


def extension(text: str, title: str) -> str:
    """The value lines of one extension in `openssl x509 -text` output; '' when absent."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(title):
            indent = len(line) - len(line.lstrip())
            values = []
            for following in lines[i + 1:]:
                if len(following) - len(following.lstrip()) <= indent:
                    break
                values.append(following.strip())
            return "\n".join(values)
    return ""


def extension_line(text: str, title: str) -> str:
    """The heading line of an extension (it carries 'critical')."""
    for line in text.splitlines():
        if line.strip().startswith(title):
            return line.strip()
    return ""


def http_get_over(tls, host: str, path: str) -> tuple:
    """(status, headers, body) of one GET sent on an established TLS socket."""
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        try:
            chunk = tls.recv(65536)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            chunk = b""
        if not chunk:
            break
        data += chunk
    return parse_response(data)


def parse_response(data: bytes) -> tuple:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"no whole HTTP response head: {data[:300]!r}")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return status, headers, body


def curl_status_and_body(*args, proxy: str, timeout: float = 30) -> tuple:
    """(curl exit code, HTTP status, body, stderr) of one curl run."""
    marker = b"\n@@handoff-status@@"
    proc = harness.curl(*args, "-w", marker.decode() + "%{http_code}", proxy=proxy, timeout=timeout)
    body, _, status = proc.stdout.rpartition(marker)
    return proc.returncode, int(status or b"0"), body, proc.stderr.decode(errors="replace")


def names_port(entry: dict, port: int) -> bool:
    where = entry.get("url") or entry.get("target") or ""
    return f":{port}" in where


def sip_exchange(tls, request: bytes):
    tls.sendall(request)
    return wire.recv_sip_message(tls)


def read_until_closed(tls, limit_s: float = 10.0) -> tuple:
    """(everything received, whether the peer closed) within limit_s."""
    data = b""
    deadline = time.monotonic() + limit_s
    tls.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            chunk = tls.recv(65536)
        except socket.timeout:
            continue
        except (ssl.SSLError, ConnectionError, OSError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


class BioClient:
    """A TLS client over a socket through memory BIOs, so the test chooses how the bytes of the
    handshake are written (split, fragmented into records, in small segments)."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, sni: str):
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=sni)

    def client_hello(self) -> bytes:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def finish_handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                if not self._feed():
                    raise ConnectionError("proxy closed during the TLS handshake")

    def sendall(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def recv(self, size: int) -> bytes:
        while True:
            try:
                return self.tls.read(size)
            except ssl.SSLWantReadError:
                self._flush()
                if not self._feed():
                    return b""

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _feed(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True


def split_into_records(hello: bytes, at: int) -> bytes:
    """The same ClientHello carried in two TLS records, cut after `at` bytes of handshake data."""
    assert hello[0] == 0x16 and len(hello) == 5 + int.from_bytes(hello[3:5], "big")
    body = hello[5:]
    first, second = body[:at], body[at:]
    return (hello[:3] + len(first).to_bytes(2, "big") + first
            + hello[:3] + len(second).to_bytes(2, "big") + second)


class TlsEchoServer(BackgroundServer):
    """A TLS server that echoes application bytes and counts what it received."""

    def __init__(self):
        c = certs.test_certs()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(c.server_cert, c.server_key)
        self.received = 0
        self.handshakes = 0
        super().__init__((HOST, 0), _TlsEchoHandler)
        self.start()


class _TlsEchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        server, conn, tls = self.server, self.request, None
        server.track(conn)
        try:
            conn.settimeout(30)
            tls = server.context.wrap_socket(conn, server_side=True)
            with server.lock:
                server.handshakes += 1
            while True:
                data = tls.recv(65536)
                if not data:
                    return
                with server.lock:
                    server.received += len(data)
                tls.sendall(data)
        except (OSError, ssl.SSLError):
            return
        finally:
            server.untrack(conn)
            (tls or conn).close()


# ---- interception of HTTPS ----------------------------------------------------------------


class InterceptHttpsTest(unittest.TestCase):
    """ssl.forward_proxy(yes) in front of the TLS test origin."""

    @classmethod
    def setUpClass(cls):
        c = certs.test_certs()
        cls.origin = origin.start_origin(tls_cert=c.server_cert, tls_key=c.server_key)
        cls.addClassCleanup(cls.origin.stop)
        cls.proxy = harness.Handoff(policy_text=INTERCEPT_WITH_HANDOFF)
        cls.addClassCleanup(cls.proxy.close)

    def url(self, path: str) -> str:
        return f"https://localhost:{self.origin.port}{path}"

    def test_download_through_interception_is_byte_exact_and_logged_per_request(self):
        target = self.url("/bytes/1000000")
        code, status, body, err = curl_status_and_body(
            "--cacert", self.proxy.ca_cert, target, proxy=self.proxy.url, timeout=60)
        self.assertEqual(code, 0, err)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), 1_000_000)
        self.assertEqual(hashlib.sha256(body).hexdigest(),
                         hashlib.sha256(origin.deterministic_bytes(1_000_000)).hexdigest())
        entry = self.proxy.wait_log(lambda e: e.get("url") == target)
        self.assertEqual(entry["protocol"], "https", entry)
        self.assertIs(entry["intercepted"], True, entry)
        self.assertEqual(entry["status"], 200, entry)
        self.assertEqual(entry["method"], "GET", entry)
        self.assertEqual(entry["action"], "allowed", entry)

    def test_each_request_on_a_kept_alive_connection_has_its_own_log_line(self):
        first, second = self.url("/conn-id?n=1"), self.url("/conn-id?n=2")
        proc = harness.curl("--cacert", self.proxy.ca_cert, first, second, proxy=self.proxy.url)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        ids = proc.stdout.split()
        self.assertEqual(len(ids), 2, proc.stdout)
        self.assertEqual(ids[0], ids[1], "the intercepted connection did not stay alive")
        for target in (first, second):
            entry = self.proxy.wait_log(lambda e, t=target: e.get("url") == t)
            self.assertEqual(entry["protocol"], "https", entry)
            self.assertIs(entry["intercepted"], True, entry)

    def test_served_certificate_is_minted_by_the_handoff_ca(self):
        leaf = write_pem(self, served_cert(self.proxy, self.origin.port, "localhost"))
        ca = self.proxy.ca_cert
        self.assertEqual(x509_name(leaf, "issuer"), x509_name(ca, "subject"))
        verify = openssl("verify", "-CAfile", ca, leaf)
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
        self.assertIn(b": OK", verify.stdout)

        text = x509_text(leaf)
        san = extension(text, "X509v3 Subject Alternative Name")
        for name in ("DNS:localhost", "DNS:origin.test", "IP Address:127.0.0.1"):
            self.assertIn(name, san, text)
        self.assertTrue(extension(text, "X509v3 CRL Distribution Points"),
                        f"no CRL Distribution Point in the minted leaf:\n{text}")
        leaf_ski = extension(text, "X509v3 Subject Key Identifier")
        ca_ski = extension(x509_text(ca), "X509v3 Subject Key Identifier")
        self.assertTrue(leaf_ski, text)
        self.assertTrue(ca_ski)
        self.assertNotEqual(leaf_ski, ca_ski)
        self.assertIn(ca_ski, extension(text, "X509v3 Authority Key Identifier"), text)

    def test_openssl_s_client_through_the_proxy_verifies_against_the_handoff_ca(self):
        proc = openssl("s_client", "-proxy", f"{self.proxy.host}:{self.proxy.port}",
                       "-connect", f"localhost:{self.origin.port}", "-servername", "localhost",
                       "-CAfile", self.proxy.ca_cert, "-verify_return_error", "-showcerts",
                       "-verify_hostname", "localhost")
        out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        self.assertEqual(proc.returncode, 0, out)
        self.assertIn("Verify return code: 0 (ok)", out)
        ca_subject = x509_name(self.proxy.ca_cert, "subject")
        issuer = re.search(r"^\s*i:(.*)$", out, re.M)
        self.assertIsNotNone(issuer, out)
        # s_client prints names as "CN = x, O = y"; compare the attribute values only.
        values = lambda name: sorted(v.strip() for v in re.findall(r"=\s*([^,/]+)", name))
        self.assertEqual(values(issuer.group(1)), values(ca_subject), out)

    def test_a_client_offering_h2_gets_h2_in_front_of_an_http_1_1_origin(self):
        # SPEC 6.1: the client leg speaks h2, the origin leg the HTTP/1.1 its origin chose.
        proc = harness.curl("--http2", "--cacert", self.proxy.ca_cert, "-o", "/dev/null",
                            "-w", "%{http_version}", self.url("/"), proxy=self.proxy.url)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, b"2")

    def test_tls_1_2_and_tls_1_3_clients_both_work(self):
        for label, flags in (("TLSv1.2", ("--tlsv1.2", "--tls-max", "1.2")),
                             ("TLSv1.3", ("--tlsv1.3",))):
            with self.subTest(label):
                proc = harness.curl("-v", *flags, "--cacert", self.proxy.ca_cert,
                                    self.url(f"/bytes/5000?v={label}"), proxy=self.proxy.url)
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertIn(f"SSL connection using {label}".encode(), proc.stderr)
                self.assertEqual(proc.stdout, origin.deterministic_bytes(5000))

    def test_client_hello_written_in_two_pieces_is_intercepted(self):
        for label, cut in (("inside the record header", 3), ("inside the hello", 60)):
            with self.subTest(label):
                client = BioClient(open_tunnel(self.proxy, HOST, self.origin.port),
                                   trusting(self.proxy.ca_cert), "localhost")
                hello = client.client_hello()
                client.sock.sendall(hello[:cut])
                time.sleep(0.05)
                client.sock.sendall(hello[cut:])
                self.check_intercepted(client, f"/bytes/3000?split={cut}")

    def test_client_hello_spanning_two_records_is_intercepted(self):
        client = BioClient(open_tunnel(self.proxy, HOST, self.origin.port),
                           trusting(self.proxy.ca_cert), "localhost")
        records = split_into_records(client.client_hello(), 100)
        first_len = 5 + 100
        client.sock.sendall(records[:first_len])
        time.sleep(0.05)
        client.sock.sendall(records[first_len:])
        self.check_intercepted(client, "/bytes/3000?records=2")

    def test_client_hello_over_1500_bytes_is_intercepted(self):
        context = trusting(self.proxy.ca_cert)
        padding = [f"x-handoff-test-protocol-{i:03d}-with-a-long-name" for i in range(60)]
        context.set_alpn_protocols(padding + ["http/1.1"])
        client = BioClient(open_tunnel(self.proxy, HOST, self.origin.port), context, "localhost")
        hello = client.client_hello()
        self.assertGreater(len(hello), 1500)
        # The way an Ethernet path delivers it: in segments below the MTU.
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for offset in range(0, len(hello), 1400):
            client.sock.sendall(hello[offset:offset + 1400])
            time.sleep(0.01)
        self.check_intercepted(client, "/bytes/3000?large-hello=1")
        self.assertIn(client.tls.selected_alpn_protocol(), (None, "http/1.1"))

    def check_intercepted(self, client: BioClient, path: str) -> None:
        try:
            client.finish_handshake()  # verifies the minted leaf for "localhost" with the CA
            leaf = write_pem(self, client.tls.getpeercert(binary_form=True))
            self.assertEqual(x509_name(leaf, "issuer"), x509_name(self.proxy.ca_cert, "subject"))
            status, _, body = http_get_over(client, f"localhost:{self.origin.port}", path)
        finally:
            client.sock.close()
        self.assertEqual(status, 200)
        self.assertEqual(body, origin.deterministic_bytes(3000))
        entry = self.proxy.wait_log(lambda e: e.get("url", "").endswith(path))
        self.assertIs(entry["intercepted"], True, entry)
        self.assertEqual(entry["protocol"], "https", entry)


class AlpnTowardsOriginTest(unittest.TestCase):
    def test_origin_offering_h2_still_speaks_http_1_1_with_the_client(self):
        # The origin prefers h2; with [tls] http2 = no the proxy must not offer it h2, nor the
        # client (with HTTP/2 on, test_http2 covers h2 on both legs).
        server = start_tls_origin(self, alpn=("h2", "http/1.1"))
        proxy = start_proxy(self, INTERCEPT_WITH_HANDOFF, tls={"http2": "no"})
        proc = harness.curl("--http2", "--cacert", proxy.ca_cert, "-w", "\n%{http_version}",
                            f"https://localhost:{server.port}/", proxy=proxy.url)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, b"hello from origin\n\n1.1")

    def test_origin_limited_to_tls_1_2_is_reached_by_a_tls_1_3_client(self):
        server = start_tls_origin(self)
        server.tls.maximum_version = ssl.TLSVersion.TLSv1_2
        proxy = start_proxy(self, INTERCEPT_WITH_HANDOFF)
        proc = harness.curl("-v", "--tlsv1.3", "--cacert", proxy.ca_cert,
                            f"https://localhost:{server.port}/", proxy=proxy.url)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(b"SSL connection using TLSv1.3", proc.stderr)
        self.assertEqual(proc.stdout, b"hello from origin\n")


# ---- the SNI bypass of the seed policy ---------------------------------------------------------


class SniBypassTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        c = certs.test_certs()
        cls.origin = origin.start_origin(tls_cert=c.server_cert, tls_key=c.server_key)
        cls.addClassCleanup(cls.origin.stop)
        cls.proxy = harness.Handoff(policy_text=SNI_BYPASS_SEED)
        cls.addClassCleanup(cls.proxy.close)

    def test_lync_sni_gets_the_origins_own_certificate(self):
        leaf = write_pem(self, served_cert(self.proxy, self.origin.port, "edge.lync.com"))
        test_root = certs.test_certs().ca_cert
        self.assertEqual(x509_name(leaf, "issuer"), x509_name(test_root, "subject"))
        with open(certs.test_certs().server_cert) as f:
            origin_der = ssl.PEM_cert_to_DER_cert(f.read())
        with open(leaf) as f:
            self.assertEqual(ssl.PEM_cert_to_DER_cert(f.read()), origin_der)
        entry = self.proxy.wait_log(lambda e: e.get("sni") == "edge.lync.com")
        self.assertEqual(entry["protocol"], "ssl", entry)
        self.assertIs(entry["tunneled"], True, entry)
        self.assertIs(entry["intercepted"], False, entry)

    def test_other_sni_gets_a_minted_certificate(self):
        leaf = write_pem(self, served_cert(self.proxy, self.origin.port, "origin.test"))
        self.assertEqual(x509_name(leaf, "issuer"), x509_name(self.proxy.ca_cert, "subject"))
        self.assertIn("DNS:origin.test",
                      extension(x509_text(leaf), "X509v3 Subject Alternative Name"))

    def test_bypassed_lync_connection_carries_the_origins_answer(self):
        context = trusting(certs.test_certs().ca_cert)
        context.check_hostname = False  # the origin's certificate does not name edge.lync.com
        sock = open_tunnel(self.proxy, HOST, self.origin.port)
        with context.wrap_socket(sock, server_hostname="edge.lync.com") as tls:
            status, _, body = http_get_over(tls, "edge.lync.com", "/bytes/2000")
        self.assertEqual(status, 200)
        self.assertEqual(body, origin.deterministic_bytes(2000))


# ---- SIP over TLS with proxy handoff --------------------------------------------------------


class SipOverTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Kamailio's TLS certificate is the test server certificate, signed by the test root
        # that the harness gives the proxy as upstream_ca_file: verification stays on.
        cls.sip = servers.start_kamailio(tls=True)
        cls.addClassCleanup(cls.sip.stop)

    def sip_client(self, proxy: harness.Handoff, port: int = None):
        sock = open_tunnel(proxy, HOST, port or self.sip.tls_port)
        tls = trusting(proxy.ca_cert).wrap_socket(sock, server_hostname="localhost")
        self.addCleanup(tls.close)
        return tls

    def test_options_and_register_are_answered_by_kamailio_through_interception(self):
        proxy = start_proxy(self, INTERCEPT_WITH_HANDOFF)
        tls = self.sip_client(proxy)
        leaf = write_pem(self, tls.getpeercert(binary_form=True))
        self.assertEqual(x509_name(leaf, "issuer"), x509_name(proxy.ca_cert, "subject"))
        line, headers, _ = sip_exchange(tls, wire.sip_request("OPTIONS", "TLS"))
        self.assertEqual(wire.sip_status(line), 200, line)
        self.assertEqual(headers["cseq"], "1 OPTIONS")
        line, headers, _ = sip_exchange(tls, wire.sip_request("REGISTER", "TLS", cseq=2))
        self.assertEqual(wire.sip_status(line), 200, line)
        self.assertIn("expires=", headers.get("contact", ""))

        sessions = harness.wait_until(
            lambda: [s for s in proxy.sessions() if s.get("protocol") == "sip"], 5,
            what="a sip session")
        self.assertIs(sessions[0]["intercepted"], True, sessions)
        self.assertIs(sessions[0]["tunneled"], False, sessions)
        self.assertIn("OPTIONS", json.dumps(sessions[0].get("messages")), sessions)
        self.assertIn("REGISTER", json.dumps(sessions[0].get("messages")), sessions)
        close_tls(tls)
        entry = proxy.wait_log(lambda e: names_port(e, self.sip.tls_port))
        self.assertEqual(entry["protocol"], "sip", entry)
        self.assertIs(entry["intercepted"], True, entry)
        self.assertEqual(entry["action"], "allowed", entry)

    def test_step3_deny_lets_sip_through(self):
        proxy = start_proxy(self, INTERCEPT_WITH_HANDOFF + STEP3_DENY_LAYER)
        tls = self.sip_client(proxy)
        line, _, _ = sip_exchange(tls, wire.sip_request("OPTIONS", "TLS"))
        self.assertEqual(wire.sip_status(line), 200, line)
        line, _, _ = sip_exchange(tls, wire.sip_request("REGISTER", "TLS", cseq=2))
        self.assertEqual(wire.sip_status(line), 200, line)
        close_tls(tls)
        entry = proxy.wait_log(lambda e: names_port(e, self.sip.tls_port))
        self.assertEqual(entry["protocol"], "sip", entry)
        self.assertEqual(entry["action"], "allowed", entry)

    def test_step3_deny_closes_an_unknown_protocol_inside_tls(self):
        echo = TlsEchoServer()
        self.addCleanup(echo.stop)
        proxy = start_proxy(self, INTERCEPT_WITH_HANDOFF + STEP3_DENY_LAYER)
        tls = self.sip_client(proxy, echo.port)
        tls.sendall(b"\xfe\xed\xfa\xce" + os.urandom(60))
        data, closed = read_until_closed(tls)
        self.assertTrue(closed, "the proxy kept an unknown protocol open under the Step 3 DENY")
        self.assertEqual(data, b"")
        entry = proxy.wait_log(lambda e: names_port(e, echo.port))
        self.assertEqual(entry["action"], "denied", entry)
        self.assertEqual(entry["protocol"], "tcp", entry)
        self.assertIs(entry["intercepted"], True, entry)
        self.assertEqual(echo.received, 0, "denied bytes reached the server")

    def test_unknown_protocol_inside_tls_is_tunnelled_without_the_deny(self):
        echo = TlsEchoServer()
        self.addCleanup(echo.stop)
        proxy = start_proxy(self, INTERCEPT_WITH_HANDOFF)
        tls = self.sip_client(proxy, echo.port)
        payload = b"\xfe\xed\xfa\xce" + os.urandom(60)
        tls.sendall(payload)
        self.assertEqual(wire.recv_exact(tls, len(payload)), payload)
        close_tls(tls)
        entry = proxy.wait_log(lambda e: names_port(e, echo.port))
        self.assertEqual(entry["protocol"], "tcp", entry)
        self.assertIs(entry["tunneled"], True, entry)
        self.assertIs(entry["intercepted"], True, entry)
        self.assertEqual(entry["action"], "allowed", entry)

    def test_https_mode_with_sip_inside_fails_without_tunnel_on_protocol_error(self):
        proxy = start_proxy(self, "<ssl-intercept>\n  ssl.forward_proxy(https)\n"
                                  "<proxy>\n  ALLOW tunnel_on_protocol_error(no)\n")
        tls = self.sip_client(proxy)
        tls.sendall(wire.sip_request("OPTIONS", "TLS"))
        data, closed = read_until_closed(tls)
        self.assertTrue(closed, f"connection left open; received {data!r}")
        self.assertNotIn(b"SIP/2.0", data)
        entry = proxy.wait_log(lambda e: names_port(e, self.sip.tls_port))
        self.assertEqual(entry["action"], "error", entry)

    def test_https_mode_with_sip_inside_is_tunnelled_with_tunnel_on_protocol_error(self):
        proxy = start_proxy(self, "<ssl-intercept>\n  ssl.forward_proxy(https)\n"
                                  "<proxy>\n  ALLOW tunnel_on_protocol_error(yes)\n")
        tls = self.sip_client(proxy)
        line, _, _ = sip_exchange(tls, wire.sip_request("OPTIONS", "TLS"))
        self.assertEqual(wire.sip_status(line), 200, line)
        line, _, _ = sip_exchange(tls, wire.sip_request("REGISTER", "TLS", cseq=2))
        self.assertEqual(wire.sip_status(line), 200, line)
        close_tls(tls)
        entry = proxy.wait_log(lambda e: names_port(e, self.sip.tls_port))
        self.assertEqual(entry["protocol"], "tcp", entry)
        self.assertIs(entry["tunneled"], True, entry)
        self.assertEqual(entry["action"], "allowed", entry)


# ---- origins whose certificate fails verification ---------------------------------------------


class BadOriginCertificateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        c = certs.test_certs()
        cls.origins = {}
        for label, cert, key in (("self-signed", c.self_signed_cert, c.self_signed_key),
                                 ("expired", c.expired_cert, c.expired_key),
                                 ("wrong-name", c.wrong_name_cert, c.wrong_name_key)):
            server = origin.start_origin(tls_cert=cert, tls_key=key)
            cls.addClassCleanup(server.stop)
            cls.origins[label] = server

    def test_intercepted_origin_with_a_bad_certificate_is_refused_with_502(self):
        proxy = start_proxy(self, INTERCEPT_WITH_HANDOFF)
        for label, server in self.origins.items():
            with self.subTest(label):
                before = server.stats()["requests"]
                url = f"https://localhost:{server.port}/bytes/100"
                code, status, body, err = curl_status_and_body(
                    "--cacert", proxy.ca_cert, url, proxy=proxy.url)
                self.assertEqual(code, 0, err)  # the handshake with our minted leaf succeeds
                self.assertEqual(status, 502, f"body {body[:120]!r}; last log line: "
                                              f"{(proxy.log_lines() or [None])[-1]}")
                self.assertRegex(body.decode(errors="replace"), CERT_PROBLEMS[label])
                self.assertEqual(server.stats()["requests"], before,
                                 "a request reached an origin whose certificate failed")
                entry = proxy.wait_log(lambda e, p=server.port: names_port(e, p)
                                       and e.get("action") == "error")
                self.assertRegex(entry.get("error", ""), CERT_PROBLEMS[label])

    def test_each_works_with_verify_server_no(self):
        proxy = start_proxy(self, "<ssl-intercept>\n  ssl.forward_proxy(yes) ssl.verify_server(no)\n"
                                  "<proxy>\n  ALLOW\n")
        for label, server in self.origins.items():
            with self.subTest(label):
                url = f"https://localhost:{server.port}/bytes/100"
                code, status, body, err = curl_status_and_body(
                    "--cacert", proxy.ca_cert, url, proxy=proxy.url)
                self.assertEqual(code, 0, err)
                self.assertEqual(status, 200, body)
                self.assertEqual(body, origin.deterministic_bytes(100))
                entry = proxy.wait_log(lambda e, u=url: e.get("url") == u)
                self.assertEqual(entry["action"], "allowed", entry)
                self.assertIs(entry["intercepted"], True, entry)


# ---- a client that rejects our certificate ----------------------------------------------------


class ClientRejectsCertificateTest(unittest.TestCase):
    def test_untrusted_ca_is_logged_with_the_clients_alert_and_warned_about(self):
        server = start_tls_origin(self)
        proxy = start_proxy(self, INTERCEPT_WITH_HANDOFF)
        # The system CA store does not hold the handoff CA: curl refuses the minted leaf.
        # --connect-to keeps the CONNECT on 127.0.0.1 while the SNI names origin.test.
        proc = harness.curl("--connect-to", f"origin.test:{server.port}:{HOST}:{server.port}",
                            f"https://origin.test:{server.port}/", proxy=proxy.url)
        self.assertEqual(proc.returncode, 60, proc.stderr)
        entry = proxy.wait_log(lambda e: e.get("sni") == "origin.test")
        self.assertEqual(entry["action"], "error", entry)
        self.assertRegex(entry.get("error", ""), re.compile(r"unknown[ _]ca", re.I))
        warned = [line for line in proxy.stderr_text().splitlines()
                  if re.search(r"\bwarn", line, re.I) and "origin.test" in line]
        self.assertTrue(warned, proxy.stderr_text()[-3000:])
        self.assertEqual(server.stats()["requests"], 0)


# ---- the CRL handoff serves ---------------------------------------------------------------------


class CrlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proxy = harness.Handoff(policy_text=INTERCEPT_WITH_HANDOFF)
        cls.addClassCleanup(cls.proxy.close)

    def fetch_and_verify(self, url: str) -> None:
        path = os.path.join(temp_dir(self), "handoff-ca.crl")
        proc = harness.curl("-f", "-D", "-", "-o", path, url)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout.decode(), re.compile(
            r"^content-type:\s*application/pkix-crl\s*$", re.I | re.M))
        check = openssl("crl", "-inform", "DER", "-in", path, "-CAfile", self.proxy.ca_cert,
                        "-noout")
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn(b"verify OK", check.stdout + check.stderr)
        next_update = openssl("crl", "-inform", "DER", "-in", path, "-noout", "-nextupdate")
        when = next_update.stdout.decode().strip().split("=", 1)[1]
        expires = time.mktime(time.strptime(when.replace(" GMT", ""), "%b %d %H:%M:%S %Y"))
        self.assertGreater(expires, time.mktime(time.gmtime()), "the CRL served is out of date")

    def test_crl_on_the_proxy_port_verifies_against_the_ca(self):
        self.fetch_and_verify(f"{self.proxy.url}/handoff-ca.crl")

    def test_crl_on_the_admin_port_verifies_against_the_ca(self):
        self.fetch_and_verify(f"{self.proxy.admin_url}/handoff-ca.crl")

    def test_minted_leaf_points_at_the_crl_the_proxy_serves(self):
        server = start_tls_origin(self)
        leaf = write_pem(self, served_cert(self.proxy, server.port, "localhost"))
        cdp = extension(x509_text(leaf), "X509v3 CRL Distribution Points")
        url = re.search(r"URI:(\S+)", cdp)
        self.assertIsNotNone(url, cdp)
        self.assertEqual(url.group(1), f"{self.proxy.url}/handoff-ca.crl")
        self.fetch_and_verify(url.group(1))


# ---- handoff ca init and the CA key at start ---------------------------------------------------


class CaInitTest(unittest.TestCase):
    def init(self, *extra) -> tuple:
        directory = os.path.join(temp_dir(self), "ca")
        proc = harness.run_handoff("ca", "init", directory, *extra)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        return directory, proc

    def check_ca(self, directory: str, proc) -> str:
        key = os.path.join(directory, "ca.key")
        cert = os.path.join(directory, "ca.crt")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        text = x509_text(cert)
        self.assertIn("critical", extension_line(text, "X509v3 Basic Constraints"), text)
        self.assertIn("CA:TRUE", extension(text, "X509v3 Basic Constraints"), text)
        usage = extension(text, "X509v3 Key Usage")
        self.assertIn("Certificate Sign", usage, text)
        self.assertIn("CRL Sign", usage, text)
        self.assertTrue(extension(text, "X509v3 Subject Key Identifier"), text)
        fingerprint = openssl("x509", "-in", cert, "-noout", "-fingerprint", "-sha256")
        hex_digits = fingerprint.stdout.decode().strip().split("=", 1)[1].replace(":", "").lower()
        printed = (proc.stdout + proc.stderr).replace(":", "").lower()
        self.assertIn(hex_digits, printed, proc.stdout)
        self.assertIn(directory, proc.stdout + proc.stderr)
        key_check = openssl("pkey", "-in", key, "-pubout")
        cert_key = openssl("x509", "-in", cert, "-noout", "-pubkey")
        self.assertEqual(key_check.stdout, cert_key.stdout, "ca.key does not match ca.crt")
        return text

    def test_default_ca_is_ecdsa_p256(self):
        directory, proc = self.init()
        text = self.check_ca(directory, proc)
        self.assertIn("id-ecPublicKey", text)
        self.assertRegex(text, r"prime256v1|P-256")

    def test_rsa_option_gives_rsa_3072(self):
        directory, proc = self.init("--rsa")
        text = self.check_ca(directory, proc)
        self.assertIn("rsaEncryption", text)
        self.assertIn("(3072 bit)", text)

    def run_to_exit(self, proxy: harness.Handoff) -> tuple:
        """Start the configured proxy expecting it to refuse; (exit code, stderr)."""
        process = harness.ManagedProcess([proxy.binary, "-c", proxy.conf_path], proxy.dir,
                                         "handoff-start")
        try:
            process.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        still_running = process.alive()
        stderr = process.stderr_text()  # stop() closes the capture files
        code = process.stop(grace=5)
        self.assertFalse(still_running, f"the proxy started anyway:\n{stderr[-2000:]}")
        return code, stderr

    def test_start_refuses_a_group_or_world_readable_ca_key(self):
        directory, _ = self.init()
        key = os.path.join(directory, "ca.key")
        os.chmod(key, 0o644)
        proxy = harness.Handoff(policy_text=INTERCEPT_WITH_HANDOFF, start=False,
                                tls={"ca_cert": os.path.join(directory, "ca.crt"), "ca_key": key})
        self.addCleanup(proxy.close)
        code, stderr = self.run_to_exit(proxy)
        self.assertEqual(code, 1, stderr)
        self.assertIn(key, stderr)
        self.assertRegex(stderr, re.compile(r"readable|permission|mode|chmod", re.I))

    def test_start_without_ca_files_says_to_run_ca_init(self):
        missing = os.path.join(temp_dir(self), "nothing-here")
        proxy = harness.Handoff(policy_text=INTERCEPT_WITH_HANDOFF, start=False,
                                tls={"ca_cert": os.path.join(missing, "ca.crt"),
                                     "ca_key": os.path.join(missing, "ca.key")})
        self.addCleanup(proxy.close)
        code, stderr = self.run_to_exit(proxy)
        self.assertEqual(code, 1, stderr)
        self.assertIn("handoff ca init", stderr)


if __name__ == "__main__":
    unittest.main()


class TlsResumptionTest(unittest.TestCase):
    """Session tickets on the client leg; a per-origin session cache on the origin leg."""

    def metric(self, proxy: harness.Handoff, leg: str, resumed: str) -> int:
        text = proxy.admin_get("/metrics").decode()
        pattern = rf'^handoff_tls_handshakes_total{{leg="{leg}",resumed="{resumed}"}} (\d+)$'
        found = re.search(pattern, text, re.M)
        self.assertIsNotNone(found, text)
        return int(found.group(1))

    def test_a_returning_client_and_the_origin_connection_both_resume(self):
        server = start_tls_origin(self)
        proxy = start_proxy(self, INTERCEPT_WITH_HANDOFF)
        context = trusting(proxy.ca_cert)
        session = None
        reused = []
        for _ in range(2):
            sock = open_tunnel(proxy, HOST, server.port)
            with context.wrap_socket(sock, server_hostname="localhost", session=session) as tls:
                status, _, body = http_get_over(tls, "localhost", "/headers")
                self.assertEqual(status, 200)
                reused.append(tls.session_reused)
                session = tls.session
        self.assertEqual(reused, [False, True], "the client's session was not resumed")
        self.assertEqual(self.metric(proxy, "client", "yes"), 1)
        # The second origin handshake used the session the first one was given.
        wait_until = harness.wait_until
        wait_until(lambda: self.metric(proxy, "origin", "yes") == 1, 5,
                   what="origin leg resumption")
        self.assertEqual(self.metric(proxy, "origin", "no"), 1)
