"""Revocation, both sides (SPEC §6.2, §8 metrics, §9 `revocation`).

Origin side: a test CA on loopback whose leaves name an `openssl ocsp` responder (AIA) and a CRL
served by a small Python HTTP server (CDP). Origins are Python TLS servers, and `openssl
s_server -status_file` for stapling. The proxy intercepts with proxy handoff and checks each
origin certificate: good, revoked, responder down (soft and hard), status only in the CRL,
stapled good and revoked, the second check of one certificate from the cache, and a policy that
turns the check off.

Client side: `openssl ocsp` asks the proxy's own responder (proxy and admin ports, POST and GET)
about a leaf the proxy minted and about a foreign serial; `openssl s_client -status` through a
CONNECT shows the stapled answer.
"""

import base64
import datetime
import http.server
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest
import urllib.parse
import urllib.request

import harness
import origin

HOST = harness.HOST

_CA_CONFIG = """\
[ca]
default_ca = test_ca

[test_ca]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
certificate = $dir/ca.crt
private_key = $dir/ca.key
crlnumber = $dir/crlnumber
default_md = sha256
default_crl_days = 1
policy = accept_any
unique_subject = no
copy_extensions = none

[accept_any]
commonName = supplied
"""

_LEAF = """\
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost, IP:127.0.0.1
{extra}
"""


def free_dual_port() -> int:
    """A TCP port free on both 127.0.0.1 and [::] (`openssl ocsp -port` binds [::])."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        return s.getsockname()[1]


_INTERMEDIATE = """\
[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:{crl}
"""


def openssl(*args, cwd=None, input: bytes = b"", timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *[str(a) for a in args]], cwd=cwd, input=input,
                          capture_output=True, timeout=timeout)


def must(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(proc.args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc


class RevocationCA:
    """A root CA with `openssl ca` bookkeeping (index.txt), leaves with AIA and CDP, a CRL."""

    def __init__(self, directory: str, parent: "RevocationCA" = None, crl: str = None):
        """A root CA, or with parent an intermediate CA it signs, naming crl as its CDP."""
        self.dir = directory
        os.makedirs(os.path.join(directory, "issued"))
        open(os.path.join(directory, "index.txt"), "w").close()
        with open(os.path.join(directory, "serial"), "w") as f:
            f.write("2000\n")
        with open(os.path.join(directory, "crlnumber"), "w") as f:
            f.write("01\n")
        with open(os.path.join(directory, "ca.cnf"), "w") as f:
            f.write(_CA_CONFIG.format(dir=directory))
        self.key = os.path.join(directory, "ca.key")
        self.cert = os.path.join(directory, "ca.crt")
        must(openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", self.key, cwd=directory))
        if parent:
            self.cert = parent.sign(self.key, "handoff revocation test intermediate CA",
                                    _INTERMEDIATE.format(crl=crl), "intermediate")
            return
        must(openssl("req", "-x509", "-new", "-key", self.key, "-out", self.cert, "-days", "30",
                     "-sha256", "-subj", "/CN=handoff revocation test CA",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                     "-addext", "subjectKeyIdentifier=hash", cwd=directory))

    def sign(self, key: str, common_name: str, extensions: str, section: str) -> str:
        """Issues a certificate for key with the extensions of [section]; returns its path."""
        stem = os.path.splitext(key)[0]
        csr, cert, ext = f"{stem}.csr", f"{stem}.crt", f"{stem}.ext"
        must(openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={common_name}",
                     cwd=self.dir))
        with open(ext, "w") as f:
            f.write(extensions)
        now = datetime.datetime.now(datetime.timezone.utc)
        start = (now - datetime.timedelta(days=1)).strftime("%Y%m%d%H%M%SZ")
        end = (now + datetime.timedelta(days=20)).strftime("%Y%m%d%H%M%SZ")
        must(openssl("ca", "-batch", "-config", "ca.cnf", "-in", csr, "-out", cert, "-notext",
                     "-startdate", start, "-enddate", end, "-extfile", ext, "-extensions", section,
                     cwd=self.dir))
        return cert

    def leaf(self, stem: str, ocsp: str = None, crl: str = None) -> tuple:
        """(cert, key) for DNS:localhost and IP:127.0.0.1, naming the given OCSP and CRL URLs."""
        key = os.path.join(self.dir, f"{stem}.key")
        must(openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", key, cwd=self.dir))
        extra = []
        if ocsp:
            extra.append(f"authorityInfoAccess = OCSP;URI:{ocsp}")
        if crl:
            extra.append(f"crlDistributionPoints = URI:{crl}")
        return self.sign(key, f"{stem}.test", _LEAF.format(extra="\n".join(extra)), "leaf"), key

    def revoke(self, cert: str) -> None:
        must(openssl("ca", "-config", "ca.cnf", "-revoke", cert, "-crl_reason", "keyCompromise",
                     cwd=self.dir))

    def crl_der(self) -> bytes:
        pem = os.path.join(self.dir, "ca.crl")
        must(openssl("ca", "-config", "ca.cnf", "-gencrl", "-out", pem, cwd=self.dir))
        return must(openssl("crl", "-in", pem, "-outform", "DER")).stdout

    def ocsp_response(self, cert: str) -> str:
        """A signed OCSP response for cert (as the responder would answer), for -status_file."""
        stem = os.path.splitext(cert)[0]
        must(openssl("ocsp", "-issuer", self.cert, "-cert", cert, "-no_nonce",
                     "-reqout", f"{stem}.req", cwd=self.dir))
        must(openssl("ocsp", "-index", "index.txt", "-rsigner", self.cert, "-rkey", self.key,
                     "-CA", self.cert, "-reqin", f"{stem}.req", "-respout", f"{stem}.resp",
                     "-ndays", "1", cwd=self.dir))
        return f"{stem}.resp"


class CrlServer(http.server.ThreadingHTTPServer):
    """Serves one CRL (DER) on every GET and counts the requests."""

    daemon_threads = True

    def __init__(self, body: bytes):
        self.body = body
        self.requests = 0
        super().__init__((HOST, 0), CrlHandler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class CrlHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args):
        pass


def metric(proxy: harness.Handoff, name: str, **labels) -> float:
    """The value of one sample in /metrics (0 when absent)."""
    text = proxy.admin_get("/metrics").decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    line_re = re.compile(rf"^{re.escape(name)}(\{{{re.escape(want)}\}})? (\S+)$" if want
                         else rf"^{re.escape(name)} (\S+)$")
    for line in text.splitlines():
        m = line_re.match(line)
        if m:
            return float(m.group(m.lastindex))
    return 0.0


def get_through(proxy: harness.Handoff, port: int, path: str = "/headers") -> tuple:
    """(status, body) of one GET to 127.0.0.1:port through CONNECT, intercepted (no SNI)."""
    sock = harness.connect_tunnel(proxy, HOST, port, timeout=20)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with context.wrap_socket(sock) as tls:
        tls.settimeout(20)
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
                    .encode())
        data = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
                chunk = b""
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        raise AssertionError("no response through the proxy")
    return int(head.split(b" ")[1]), body


def minted_leaf(proxy: harness.Handoff, port: int, directory: str) -> str:
    """PEM path of the leaf the proxy shows for CONNECT 127.0.0.1:port."""
    sock = harness.connect_tunnel(proxy, HOST, port, timeout=20)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with context.wrap_socket(sock) as tls:
        der = tls.getpeercert(binary_form=True)
    path = os.path.join(directory, f"minted-{port}.pem")
    with open(path, "w") as f:
        f.write(ssl.DER_cert_to_PEM_cert(der))
    return path


class Fixture:
    """Everything the origin-side tests share: CA, responder, CRL server, origins."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="handoff-revocation-")
        self.cleanups = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        ca = self.ca = RevocationCA(self.dir)
        self.ocsp_port = free_dual_port()
        self.dead_port = harness.free_port()  # nothing listens there
        self.crl_server = CrlServer(b"")
        self.cleanups.append(self.crl_server.stop)
        ocsp_url = f"http://{HOST}:{self.ocsp_port}/"
        crl_url = f"http://{HOST}:{self.crl_server.port}/ca.crl"
        dead_ocsp = f"http://{HOST}:{self.dead_port}/"
        dead_crl = f"http://{HOST}:{self.dead_port}/ca.crl"
        leaves = {
            "good": ca.leaf("good", ocsp=ocsp_url, crl=crl_url),
            "cached": ca.leaf("cached", ocsp=ocsp_url, crl=crl_url),
            "revoked": ca.leaf("revoked", ocsp=ocsp_url, crl=crl_url),
            "down": ca.leaf("down", ocsp=dead_ocsp, crl=dead_crl),
            "crl_good": ca.leaf("crl_good", crl=crl_url),
            "crl_revoked": ca.leaf("crl_revoked", crl=crl_url),
            "staple_good": ca.leaf("staple_good", ocsp=dead_ocsp),
            "staple_revoked": ca.leaf("staple_revoked", ocsp=dead_ocsp),
        }
        # An intermediate CA whose status is in the root's CRL, revoked; its leaf names nothing.
        intermediate = RevocationCA(os.path.join(self.dir, "intermediate"), parent=ca,
                                    crl=crl_url)
        cert, key = intermediate.leaf("under_revoked_ca")
        chain = os.path.join(self.dir, "under_revoked_ca.chain")
        with open(chain, "w") as out, open(cert) as a, open(intermediate.cert) as b:
            out.write(a.read() + b.read())
        leaves["under_revoked_ca"] = (chain, key)
        ca.revoke(intermediate.cert)
        for name in ("revoked", "crl_revoked", "staple_revoked"):
            ca.revoke(leaves[name][0])
        self.crl_server.body = ca.crl_der()
        self.responder = harness.ManagedProcess(
            ["openssl", "ocsp", "-index", "index.txt", "-port", self.ocsp_port,
             "-rsigner", ca.cert, "-rkey", ca.key, "-CA", ca.cert, "-ndays", "1"],
            self.dir, "ocsp-responder")
        self.cleanups.append(self.responder.stop)
        # Not probed with a bare connection: `openssl ocsp` stalls on one that sends nothing.
        harness.wait_until(lambda: "ACCEPT" in self.responder.stdout_text()
                           or not self.responder.alive(), 10, what="OCSP responder")
        if not self.responder.alive():
            raise RuntimeError(self.responder.describe())
        self.ports = {}
        for name in ("good", "cached", "revoked", "down", "crl_good", "crl_revoked",
                     "under_revoked_ca"):
            server = origin.start_origin(tls_cert=leaves[name][0], tls_key=leaves[name][1])
            self.cleanups.append(server.stop)
            self.ports[name] = server.port
        # The revoked certificate once more, on a port the policy exempts from checking.
        server = origin.start_origin(tls_cert=leaves["revoked"][0], tls_key=leaves["revoked"][1])
        self.cleanups.append(server.stop)
        self.ports["exempt"] = server.port
        for name in ("staple_good", "staple_revoked"):
            port = harness.free_port()
            proc = harness.ManagedProcess(
                ["openssl", "s_server", "-accept", f"{HOST}:{port}", "-cert", leaves[name][0],
                 "-key", leaves[name][1], "-status_file", ca.ocsp_response(leaves[name][0]),
                 "-www", "-quiet"],
                self.dir, name)
            self.cleanups.append(proc.stop)
            harness.wait_port(HOST, port, alive=proc.alive)
            self.ports[name] = port

    def policy(self) -> str:
        return ("<ssl-intercept>\n"
                f"  url.port={self.ports['exempt']} ssl.check_revocation(no) ssl.forward_proxy(yes)\n"
                "  ssl.forward_proxy(yes)\n"
                "<proxy>\n  ALLOW\n")

    def close(self):
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def tls_settings(fixture: Fixture, **extra) -> dict:
    settings = {"upstream_ca_file": fixture.ca.cert, "check_revocation": "auto",
                "revocation_failure": "soft"}
    settings.update(extra)
    return settings


class OriginRevocationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fixture = Fixture()
        try:
            cls.proxy = harness.Handoff(policy_text=cls.fixture.policy(),
                                        proxy={"connect_timeout_s": "3"},
                                        tls=tls_settings(cls.fixture))
        except BaseException:
            cls.fixture.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()
        cls.fixture.close()

    def entry_for(self, port: int) -> dict:
        return self.proxy.wait_log(
            lambda e: e.get("intercepted") and f":{port}" in (e.get("url") or ""), timeout=15)

    def assert_allowed(self, name: str, revocation: str) -> dict:
        port = self.fixture.ports[name]
        status, _ = get_through(self.proxy, port)
        self.assertEqual(status, 200, self.proxy.stderr_text()[-2000:])
        entry = self.entry_for(port)
        self.assertEqual(entry.get("revocation"), revocation, entry)
        return entry

    def assert_refused(self, name: str, says: str) -> dict:
        port = self.fixture.ports[name]
        status, body = get_through(self.proxy, port)
        self.assertEqual(status, 502, body)
        self.assertIn(says, body.decode(errors="replace"))
        entry = self.entry_for(port)
        self.assertEqual(entry.get("revocation"), "revoked", entry)
        self.assertIn(says, entry.get("error") or "", entry)
        return entry

    def test_good_certificate_is_checked_with_the_ocsp_responder(self):
        before = metric(self.proxy, "handoff_revocation_checks_total", source="ocsp", result="good")
        self.assert_allowed("good", "good")
        after = metric(self.proxy, "handoff_revocation_checks_total", source="ocsp", result="good")
        self.assertGreaterEqual(after, before + 1)

    def test_revoked_certificate_is_answered_502_and_nothing_reaches_the_origin(self):
        self.assert_refused("revoked", "certificate revoked")
        self.assertGreaterEqual(
            metric(self.proxy, "handoff_revocation_checks_total", source="ocsp", result="revoked")
            + metric(self.proxy, "handoff_revocation_checks_total", source="cache",
                     result="revoked"), 1)

    def test_responder_down_is_unknown_and_soft_lets_it_through(self):
        entry = self.assert_allowed("down", "unknown")
        self.assertIn("revocation: unknown", self.proxy.stderr_text())
        self.assertEqual(entry.get("status"), 200)

    def test_status_only_in_the_crl(self):
        before = self.fixture.crl_server.requests
        self.assert_allowed("crl_good", "good")
        self.assert_refused("crl_revoked", "certificate revoked (CRL")
        self.assertGreaterEqual(self.fixture.crl_server.requests, before + 1)
        self.assertGreaterEqual(
            metric(self.proxy, "handoff_revocation_checks_total", source="crl", result="good"), 1)

    def test_revoked_intermediate_is_found_in_its_issuers_crl(self):
        self.assert_refused("under_revoked_ca", "intermediate CA certificate revoked (CRL")

    def test_stapled_good_response_needs_no_fetch(self):
        before = metric(self.proxy, "handoff_revocation_checks_total", source="staple",
                        result="good")
        self.assert_allowed("staple_good", "good")
        self.assertEqual(metric(self.proxy, "handoff_revocation_checks_total", source="staple",
                                result="good"), before + 1)

    def test_stapled_revoked_response_is_refused(self):
        self.assert_refused("staple_revoked", "certificate revoked (OCSP")
        self.assertGreaterEqual(metric(self.proxy, "handoff_revocation_checks_total",
                                       source="staple", result="revoked"), 1)

    def test_second_check_of_one_certificate_comes_from_the_cache(self):
        ocsp = ("handoff_revocation_checks_total", {"source": "ocsp", "result": "good"})
        cache = ("handoff_revocation_checks_total", {"source": "cache", "result": "good"})
        hits = metric(self.proxy, "handoff_revocation_cache_hits_total")
        self.assert_allowed("cached", "good")
        ocsp_after_first = metric(self.proxy, ocsp[0], **ocsp[1])
        cache_after_first = metric(self.proxy, cache[0], **cache[1])
        port = self.fixture.ports["cached"]
        status, _ = get_through(self.proxy, port)
        self.assertEqual(status, 200)
        self.assertEqual(metric(self.proxy, ocsp[0], **ocsp[1]), ocsp_after_first,
                         "the responder was asked again")
        self.assertEqual(metric(self.proxy, cache[0], **cache[1]), cache_after_first + 1)
        self.assertGreaterEqual(metric(self.proxy, "handoff_revocation_cache_hits_total"),
                                hits + 1)
        self.assertGreaterEqual(metric(self.proxy, "handoff_revocation_cache_entries"), 1)

    def test_policy_can_turn_the_check_off(self):
        self.assert_allowed("exempt", "not-checked")

    def test_explain_shows_the_revocation_mode(self):
        proc = harness.run_handoff("-c", self.proxy.conf_path, "explain", "--connect",
                                   f"{HOST}:{self.fixture.ports['exempt']}", "--sni", "localhost")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout, r"ssl\.check_revocation no")
        proc = harness.run_handoff("-c", self.proxy.conf_path, "explain", "--connect",
                                   f"{HOST}:{self.fixture.ports['good']}", "--sni", "localhost")
        self.assertRegex(proc.stdout, r"ssl\.check_revocation auto \(\[tls\] check_revocation\)")


class HardFailureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fixture = Fixture()
        try:
            cls.proxy = harness.Handoff(policy_text=cls.fixture.policy(),
                                        proxy={"connect_timeout_s": "3"},
                                        tls=tls_settings(cls.fixture, revocation_failure="hard"))
        except BaseException:
            cls.fixture.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()
        cls.fixture.close()

    def test_responder_down_is_502_with_hard_failure(self):
        port = self.fixture.ports["down"]
        status, body = get_through(self.proxy, port)
        self.assertEqual(status, 502, body)
        self.assertIn("revocation status unknown", body.decode(errors="replace"))
        entry = self.proxy.wait_log(lambda e: f":{port}" in (e.get("url") or ""), timeout=15)
        self.assertEqual(entry.get("revocation"), "unknown", entry)

    def test_good_certificate_still_passes_with_hard_failure(self):
        status, _ = get_through(self.proxy, self.fixture.ports["good"])
        self.assertEqual(status, 200)


class OwnResponderTest(unittest.TestCase):
    """handoff's OCSP responder for the leaves it mints, and stapling towards the client."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="handoff-own-ocsp-")
        cls.origin = origin.start_origin(tls_cert=None)
        cls.proxy = None
        try:
            import certs
            test_certs = certs.test_certs()
            cls.tls_origin = origin.start_origin(tls_cert=test_certs.server_cert,
                                                 tls_key=test_certs.server_key)
            cls.proxy = harness.Handoff(
                policy_text="<ssl-intercept>\n  ssl.forward_proxy(yes)\n<proxy>\n  ALLOW\n")
            cls.leaf = minted_leaf(cls.proxy, cls.tls_origin.port, cls.dir)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.proxy:
            cls.proxy.close()
        cls.origin.stop()
        if getattr(cls, "tls_origin", None):
            cls.tls_origin.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def ask(self, port: int, *what) -> str:
        proc = openssl("ocsp", "-issuer", self.proxy.ca_cert, *what,
                       "-url", f"http://{HOST}:{port}/ocsp", "-VAfile", self.proxy.ca_cert)
        out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        self.assertEqual(proc.returncode, 0, out)
        self.assertIn("Response verify OK", out)
        return out

    def test_minted_leaf_is_good_on_the_proxy_and_admin_ports(self):
        before = metric(self.proxy, "handoff_ocsp_responses_total", status="good")
        for port in (self.proxy.port, self.proxy.admin_port):
            out = self.ask(port, "-cert", self.leaf)
            self.assertRegex(out, r"minted-\d+\.pem: good")
            self.assertIn("This Update", out)
            self.assertIn("Next Update", out)
        self.assertEqual(metric(self.proxy, "handoff_ocsp_responses_total", status="good"),
                         before + 2)

    def test_foreign_serial_is_unknown(self):
        for port in (self.proxy.port, self.proxy.admin_port):
            out = self.ask(port, "-serial", "0x5eed1234abcd")
            self.assertRegex(out, r"0x5[Ee][Ee][Dd]1234[Aa][Bb][Cc][Dd]: unknown")
        self.assertGreaterEqual(
            metric(self.proxy, "handoff_ocsp_responses_total", status="unknown"), 2)

    def test_get_with_the_request_in_the_path(self):
        req = os.path.join(self.dir, "get.req")
        must(openssl("ocsp", "-issuer", self.proxy.ca_cert, "-cert", self.leaf, "-no_nonce",
                     "-reqout", req))
        with open(req, "rb") as f:
            encoded = urllib.parse.quote(base64.b64encode(f.read()).decode(), safe="")
        for port in (self.proxy.port, self.proxy.admin_port):
            with urllib.request.urlopen(f"http://{HOST}:{port}/ocsp/{encoded}", timeout=10) as r:
                self.assertEqual(r.headers["Content-Type"], "application/ocsp-response")
                resp = os.path.join(self.dir, f"get-{port}.resp")
                with open(resp, "wb") as f:
                    f.write(r.read())
            proc = openssl("ocsp", "-respin", resp, "-issuer", self.proxy.ca_cert, "-cert",
                           self.leaf, "-VAfile", self.proxy.ca_cert)
            out = proc.stdout.decode() + proc.stderr.decode()
            self.assertRegex(out, r"minted-\d+\.pem: good", out)

    def test_post_is_answered_without_proxy_authentication(self):
        # A garbage body is still an OCSP answer (malformedRequest), never a 407.
        request = urllib.request.Request(f"http://{HOST}:{self.proxy.port}/ocsp", data=b"junk",
                                         headers={"Content-Type": "application/ocsp-request"})
        with urllib.request.urlopen(request, timeout=10) as r:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.read(), bytes.fromhex("30030a0101"))

    def test_oversized_post_is_refused(self):
        request = urllib.request.Request(f"http://{HOST}:{self.proxy.port}/ocsp",
                                         data=b"x" * 9000,
                                         headers={"Content-Type": "application/ocsp-request"})
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        self.assertEqual(caught.exception.code, 413)

    def test_s_client_through_connect_sees_the_stapled_response(self):
        proc = openssl("s_client", "-proxy", f"{HOST}:{self.proxy.port}", "-connect",
                       f"{HOST}:{self.tls_origin.port}", "-status", "-CAfile",
                       self.proxy.ca_cert, timeout=30)
        out = proc.stdout.decode(errors="replace")
        self.assertIn("OCSP Response Status: successful", out, proc.stderr.decode()[-2000:])
        self.assertIn("Cert Status: good", out)


class AuthenticatedProxyResponderTest(unittest.TestCase):
    def test_ocsp_is_answered_when_the_proxy_asks_for_credentials(self):
        users = must(openssl("passwd", "-5", "secret")).stdout.decode().strip()
        proxy = harness.Handoff(policy_text="<proxy>\n  ALLOW\n",
                                files={"users.htpasswd": f"alice:{users}\n"},
                                auth={"htpasswd": "users.htpasswd", "realm": "handoff"})
        self.addCleanup(proxy.close)
        # The proxy does ask: an absolute-form request gets 407.
        status = harness.curl("-s", "-o", "/dev/null", "-w", "%{http_code}",
                              "http://127.0.0.1:9/", proxy=proxy.url).stdout
        self.assertEqual(status, b"407")
        proc = openssl("ocsp", "-issuer", proxy.ca_cert, "-serial", "0x77",
                       "-url", f"http://{HOST}:{proxy.port}/ocsp", "-VAfile", proxy.ca_cert)
        out = proc.stdout.decode() + proc.stderr.decode()
        self.assertIn("0x77: unknown", out)


if __name__ == "__main__":
    unittest.main()
