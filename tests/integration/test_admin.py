"""The operator's view (SPEC §2 `handoff sessions`, §3 [admin] and [pac], §8): the admin
listener's sessions, metrics, health, CA, CRL and PAC; the admin page in a real browser; PAC
deployment with Chromium; the PAC logic evaluated with node; and the files in examples/."""

import base64
import hashlib
import json
import math
import os
import re
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import unittest

import certs
import harness
import origin
import servers
import wire

HOST = harness.HOST
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
EXAMPLES = os.path.join(REPO, "examples")
PAC_EVAL = os.path.join(HERE, "pac_eval.js")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_TIMEOUT_S = 90
SESSION_FIELDS = ("id", "client", "target", "sni", "protocol", "intercepted", "tunneled", "state",
                  "bytes_from_client", "bytes_from_server", "age_s", "messages", "compressed")
PAC_TYPE = "application/x-ns-proxy-autoconfig"
# Neither TLS (0x16), STUN (magic cookie at offset 4), MS-TURN (02 00 ...), SIP nor HTTP.
OPAQUE_PREFIX = b"\x00\xff\xfe\xfdopaque"


def temp_dir(test: unittest.TestCase) -> str:
    path = tempfile.mkdtemp(prefix="handoff-admin-")
    test.addCleanup(shutil.rmtree, path, True)
    return path


def artifacts_dir() -> str:
    path = os.environ.get("HANDOFF_ARTIFACTS") or os.path.join(REPO, "artifacts")
    os.makedirs(path, exist_ok=True)
    return path


# ---- raw HTTP on a socket ------------------------------------------------------------------


def read_head(sock: socket.socket, limit: int = 65536) -> bytes:
    """Bytes up to and including the blank line ending an HTTP head (bounded)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise AssertionError(f"no end of head within {limit} bytes: {data[:200]!r}")
    return data


def status_of(head: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    if not match:
        raise AssertionError(f"not an HTTP status line: {head[:200]!r}")
    return int(match.group(1))


def http_get(url_host: str, port: int, path: str, timeout: float = 10.0) -> tuple:
    """(status, {lower header: value}, body) of one GET with Connection: close."""
    with socket.create_connection((url_host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {url_host}:{port}\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None:
        body = body[:int(length)]
    return status_of(head), headers, body


def open_tunnel(h: harness.Handoff, host: str, port: int) -> socket.socket:
    """A client socket through the proxy, after CONNECT host:port was answered 200."""
    sock = socket.create_connection((h.host, h.port), timeout=10)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = read_head(sock)
    if status_of(head) != 200:
        sock.close()
        raise AssertionError(f"CONNECT {host}:{port} answered {head!r}")
    return sock


def recv_exact(sock: socket.socket, n: int) -> bytes:
    return wire.recv_exact(sock, n)


def recv_sip_raw(sock: socket.socket) -> bytes:
    """The exact bytes of the next SIP message (head and Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before a whole SIP head: {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    match = re.search(rb"\r\n(?:content-length|l)\s*:\s*(\d+)", head, re.IGNORECASE)
    length = int(match.group(1)) if match else 0
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside a SIP body")
        rest += chunk
    if len(rest) != length:
        raise AssertionError(f"more bytes than one SIP message: {rest[length:]!r}")
    return head + b"\r\n\r\n" + rest


def client_text(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


# ---- a loopback echo server ---------------------------------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(60)
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    break
                self.request.sendall(data)
        except OSError:
            pass


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__((HOST, 0), _Echo)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


# ---- Prometheus text exposition format 0.0.4 ----------------------------------------------

_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_SAMPLE = re.compile(rf"^({_METRIC_NAME})(\{{(.*)\}})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?$")
_LABEL = re.compile(rf'\s*({_LABEL_NAME})="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def _family_of(name: str, types: dict) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    return name


def _parse_value(text: str, line: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise ValueError(f"bad sample value {text!r} in {line!r}")
    return float(text)


def _parse_labels(text: str, line: str) -> dict:
    labels = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if not match:
            raise ValueError(f"bad label set in {line!r}")
        name, value = match.group(1), match.group(2)
        if name in labels:
            raise ValueError(f"label {name} twice in {line!r}")
        labels[name] = value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        pos = match.end()
    return labels


def parse_prometheus(text: str) -> dict:
    """{(metric name, frozenset of label pairs): value}, refusing anything the format forbids:
    malformed lines, a TYPE after its samples or given twice, a family split in two runs, a
    series given twice, negative counters, histogram buckets that are not cumulative."""
    if text and not text.endswith("\n"):
        raise ValueError("the exposition does not end with a newline")
    types, helps, samples = {}, {}, {}
    seen_families, current = set(), None
    for line in text.split("\n")[:-1]:
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not re.fullmatch(_METRIC_NAME, name):
                    raise ValueError(f"bad metric name in {line!r}")
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in _TYPES:
                        raise ValueError(f"bad TYPE line {line!r}")
                    if name in types or name in seen_families:
                        raise ValueError(f"TYPE for {name} repeated or after its samples")
                    types[name] = parts[3]
                else:
                    if name in helps:
                        raise ValueError(f"HELP for {name} repeated")
                    helps[name] = parts[3] if len(parts) == 4 else ""
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise ValueError(f"malformed sample line {line!r}")
        name, label_text, value_text = match.group(1), match.group(3), match.group(4)
        labels = _parse_labels(label_text or "", line)
        value = _parse_value(value_text, line)
        family = _family_of(name, types)
        if family != current:
            if family in seen_families:
                raise ValueError(f"samples of {family} are not contiguous (again at {line!r})")
            seen_families.add(family)
            current = family
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise ValueError(f"series given twice: {line!r}")
        kind = types.get(family, "untyped")
        if kind == "counter" and not value >= 0:
            raise ValueError(f"counter below zero: {line!r}")
        if kind == "histogram" and name == family + "_bucket" and "le" not in labels:
            raise ValueError(f"histogram bucket without le: {line!r}")
        samples[key] = value
    for family, kind in types.items():
        if kind != "histogram":
            continue
        buckets = sorted(
            ((_parse_value(dict(k[1])["le"], family), v) for k, v in samples.items()
             if k[0] == family + "_bucket"), key=lambda b: b[0])
        if not buckets or buckets[-1][0] != math.inf:
            raise ValueError(f"histogram {family} has no +Inf bucket")
        counts = [v for _, v in buckets]
        if counts != sorted(counts):
            raise ValueError(f"histogram {family} buckets are not cumulative: {buckets}")
        count = samples.get((family + "_count", frozenset()))
        if count != counts[-1]:
            raise ValueError(f"histogram {family}: _count {count} != +Inf bucket {counts[-1]}")
    return samples


def metric(samples: dict, name: str, **labels) -> float:
    """A series' value; 0 when it is not (yet) there, as for a counter never incremented."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def metric_sum(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def metrics_of(h: harness.Handoff) -> dict:
    return parse_prometheus(h.admin_get("/metrics").decode())


# ---- node and chromium ---------------------------------------------------------------------


def require_node() -> str:
    path = shutil.which("node") or shutil.which("nodejs")
    if not path:
        raise unittest.SkipTest("node is not installed (Debian package nodejs)")
    return path


def eval_pac(pac_text: str, queries, resolve: dict = None, my_ip: str = "10.1.2.3") -> list:
    """FindProxyForURL(url, host) for each (url, host), evaluated by node with PAC helpers."""
    doc = {"pac": pac_text, "resolve": resolve or {}, "my_ip": my_ip,
           "queries": [{"url": u, "host": h} for u, h in queries]}
    proc = subprocess.run([require_node(), PAC_EVAL], input=json.dumps(doc), capture_output=True,
                          text=True, timeout=30)
    if proc.returncode != 0:
        raise AssertionError(f"node could not evaluate the PAC: {proc.stderr}\n{pac_text}")
    return json.loads(proc.stdout)


def require_chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        raise unittest.SkipTest("chromium is not installed (apt-get install -y chromium)")
    return CHROMIUM


def chromium(test: unittest.TestCase, url: str, *flags, screenshot: str = None) -> str:
    """The DOM Chromium ends with after loading url (or the screenshot it wrote)."""
    profile = temp_dir(test)
    cmd = [require_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
           "--virtual-time-budget=5000", *flags]
    if screenshot:
        cmd += [f"--screenshot={screenshot}", "--window-size=1280,720"]
    else:
        cmd.append("--dump-dom")
    cmd.append(url)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S,
                              env=harness.clean_env(), cwd=profile)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"chromium did not finish within {CHROMIUM_TIMEOUT_S}s: {url}")
    test.chromium_stderr = proc.stderr
    return proc.stdout


def spki_sha256_b64(cert_path: str) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo DER)): Chromium's certificate-pin format."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_path, "-noout", "-pubkey"],
                         capture_output=True, check=True, timeout=20).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         capture_output=True, check=True, timeout=20).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def der_of_pem(pem: bytes) -> bytes:
    return subprocess.run(["openssl", "x509", "-outform", "DER"], input=pem, capture_output=True,
                          check=True, timeout=20).stdout


# ---- sessions -----------------------------------------------------------------------------


def find_session(h: harness.Handoff, client: str, predicate=lambda s: True):
    return next((s for s in h.sessions() if s.get("client") == client and predicate(s)), None)


def wait_session(h: harness.Handoff, client: str, predicate=lambda s: True, timeout=10.0) -> dict:
    try:
        return harness.wait_until(lambda: find_session(h, client, predicate), timeout,
                                  what=f"session of {client}")
    except TimeoutError:
        raise AssertionError(f"no matching session for client {client} within {timeout}s; "
                             f"/sessions: {json.dumps(h.sessions())}") from None


def wait_session_gone(h: harness.Handoff, client: str, timeout=10.0) -> None:
    try:
        harness.wait_until(lambda: find_session(h, client) is None, timeout,
                           what=f"session of {client} gone")
    except TimeoutError:
        raise AssertionError(f"session of {client} still listed {timeout}s after it closed: "
                             f"{json.dumps(h.sessions())}") from None


class LiveSessionsTest(unittest.TestCase):
    """Two workers; a SIP session to Kamailio and blind tunnels to an echo server."""

    @classmethod
    def setUpClass(cls):
        cls.kamailio = servers.start_kamailio()
        cls.addClassCleanup(cls.kamailio.stop)
        cls.echo = EchoServer()
        cls.addClassCleanup(cls.echo.stop)
        cls.proxy = harness.Handoff(policy_text="<proxy>\n    ALLOW\n", proxy={"workers": "2"})
        cls.addClassCleanup(cls.proxy.close)

    def open_sip(self) -> tuple:
        """A SIP session kept open: (socket, OPTIONS bytes sent, answer bytes received)."""
        sock = open_tunnel(self.proxy, HOST, self.kamailio.port)
        self.addCleanup(sock.close)
        options = wire.sip_request("OPTIONS", local=client_text(sock))
        sock.sendall(options)
        answer = recv_sip_raw(sock)
        self.assertEqual(wire.sip_status(answer.split(b"\r\n", 1)[0].decode()), 200, answer)
        return sock, options, answer

    def open_blind(self, size: int = 5000) -> tuple:
        sock = open_tunnel(self.proxy, HOST, self.echo.port)
        self.addCleanup(sock.close)
        data = OPAQUE_PREFIX + os.urandom(size - len(OPAQUE_PREFIX))
        sock.sendall(data)
        self.assertEqual(recv_exact(sock, len(data)), data)
        return sock, data

    def assert_fields(self, session: dict) -> None:
        missing = [f for f in SESSION_FIELDS if f not in session]
        self.assertEqual(missing, [], f"session lacks SPEC §8 fields: {session}")
        self.assertIsInstance(session["id"], int)
        self.assertIsInstance(session["intercepted"], bool)
        self.assertIsInstance(session["tunneled"], bool)
        self.assertIsInstance(session["compressed"], bool)
        self.assertIsInstance(session["state"], str)
        self.assertTrue(session["state"])
        self.assertIsInstance(session["age_s"], int)
        self.assertGreaterEqual(session["age_s"], 0)
        self.assertIsInstance(session["messages"], dict)

    def test_live_sip_session_is_listed_with_its_counts_and_dropped_after_close(self):
        sock, options, answer = self.open_sip()
        me = client_text(sock)
        s = wait_session(self.proxy, me, lambda s: s.get("messages", {}).get("2xx"))
        self.assert_fields(s)
        self.assertEqual(s["target"], f"{HOST}:{self.kamailio.port}")
        self.assertIsNone(s["sni"])
        self.assertEqual(s["protocol"], "sip")
        self.assertFalse(s["intercepted"])
        self.assertFalse(s["tunneled"], "SIP passthrough understands what it relays")
        self.assertEqual(s["messages"], {"OPTIONS": 1, "2xx": 1})
        self.assertFalse(s["compressed"])
        self.assertEqual(s["bytes_from_server"], len(answer))
        # The CONNECT head may or may not be counted; the OPTIONS request must be.
        self.assertGreaterEqual(s["bytes_from_client"], len(options))
        self.assertLessEqual(s["bytes_from_client"], len(options) + 200)
        sock.close()
        wait_session_gone(self.proxy, me)

    def test_live_blind_tunnel_is_listed_and_dropped_after_close(self):
        sock, data = self.open_blind(5000)
        me = client_text(sock)
        s = wait_session(self.proxy, me, lambda s: s.get("bytes_from_server") == len(data))
        self.assert_fields(s)
        self.assertEqual(s["target"], f"{HOST}:{self.echo.port}")
        self.assertIsNone(s["sni"])
        self.assertEqual(s["protocol"], "tcp")
        self.assertFalse(s["intercepted"])
        self.assertTrue(s["tunneled"])
        self.assertFalse(s["compressed"])
        self.assertEqual(s["messages"], {})
        self.assertGreaterEqual(s["bytes_from_client"], len(data))
        self.assertLessEqual(s["bytes_from_client"], len(data) + 200)
        sock.close()
        wait_session_gone(self.proxy, me)

    def test_sessions_of_every_worker_are_listed_together(self):
        # SO_REUSEPORT spreads 16 connections over both workers (all on one: p = 2^-15); each
        # must be in the one merged answer.
        socks = [self.open_blind(1000)[0] for _ in range(8)]
        socks += [self.open_sip()[0] for _ in range(8)]
        mine = {client_text(s) for s in socks}

        def all_listed():
            listed = {s["client"]: s for s in self.proxy.sessions()}
            return listed if mine <= set(listed) else None

        try:
            listed = harness.wait_until(all_listed, 10, what="every session listed")
        except TimeoutError:
            raise AssertionError(
                f"not every open connection is in /sessions: missing "
                f"{sorted(mine - {s['client'] for s in self.proxy.sessions()})}") from None
        protocols = sorted(listed[c]["protocol"] for c in mine)
        self.assertEqual(protocols, ["sip"] * 8 + ["tcp"] * 8)
        ids = [listed[c]["id"] for c in mine]
        self.assertEqual(len(set(ids)), len(ids), "session ids must be unique across workers")
        for s in socks:
            s.close()
        for c in mine:
            wait_session_gone(self.proxy, c)

    def test_sessions_command_prints_a_table_and_json(self):
        sock, _, _ = self.open_sip()
        me = client_text(sock)
        wait_session(self.proxy, me, lambda s: s.get("messages", {}).get("2xx"))
        admin = f"{self.proxy.admin_host}:{self.proxy.admin_port}"
        table = harness.run_handoff("sessions", "--admin", admin)
        self.assertEqual(table.returncode, 0, table.stderr)
        lines = table.stdout.splitlines()
        self.assertGreaterEqual(len(lines), 2, table.stdout)
        header = lines[0].upper()
        for column in ("ID", "CLIENT", "TARGET", "SNI", "PROTOCOL"):
            self.assertIn(column, header, f"header line lacks {column}: {lines[0]!r}")
        rows = [line for line in lines[1:] if me in line.split()]
        self.assertEqual(len(rows), 1, f"no single row for {me}:\n{table.stdout}")
        row = rows[0].split()
        self.assertIn(f"{HOST}:{self.kamailio.port}", row)
        self.assertIn("sip", row)
        self.assertIn("OPTIONS", rows[0])

        as_json = harness.run_handoff("sessions", "--admin", admin, "--json")
        self.assertEqual(as_json.returncode, 0, as_json.stderr)
        listed = json.loads(as_json.stdout)["sessions"]
        entry = next((s for s in listed if s["client"] == me), None)
        self.assertIsNotNone(entry, as_json.stdout)
        self.assertEqual(entry["protocol"], "sip")
        self.assertEqual(entry["target"], f"{HOST}:{self.kamailio.port}")

    def test_sessions_command_without_an_admin_listener_fails_clearly(self):
        closed = harness.free_port()
        proc = harness.run_handoff("sessions", "--admin", f"{HOST}:{closed}")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(str(closed), proc.stderr)

    def test_admin_page_in_chromium_shows_the_live_session(self):
        sock, _, _ = self.open_sip()
        wait_session(self.proxy, client_text(sock), lambda s: s.get("messages", {}).get("2xx"))
        target = f"{HOST}:{self.kamailio.port}"
        dom = chromium(self, f"{self.proxy.admin_url}/")
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", dom, re.S)
        cells = [re.findall(r"<td[^>]*>(.*?)</td>", r, re.S) for r in rows]
        self.assertTrue(any(target in c and "sip" in c for c in cells),
                        f"no table row with {target} and sip in the page DOM:\n{dom[:3000]}\n"
                        f"chromium stderr:\n{self.chromium_stderr[-2000:]}")
        shot = os.path.join(artifacts_dir(), "admin-sessions.png")
        if os.path.exists(shot):
            os.unlink(shot)
        chromium(self, f"{self.proxy.admin_url}/", screenshot=shot)
        self.assertTrue(os.path.exists(shot), f"no screenshot: {self.chromium_stderr[-2000:]}")
        with open(shot, "rb") as f:
            png = f.read()
        self.assertTrue(png.startswith(b"\x89PNG\r\n\x1a\n"), "the screenshot is not a PNG")
        self.assertGreater(len(png), 1000)


# ---- metrics ------------------------------------------------------------------------------


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        test_certs = certs.test_certs()
        cls.tls_origin = origin.start_origin(tls_cert=test_certs.server_cert,
                                             tls_key=test_certs.server_key)
        cls.addClassCleanup(cls.tls_origin.stop)
        cls.echo = EchoServer()
        cls.addClassCleanup(cls.echo.stop)
        cls.proxy = harness.Handoff(policy_text=(
            "<proxy>\n"
            "    url.host=denied.test DENY\n"
            "    ALLOW\n"
            "<ssl-intercept>\n"
            "    ssl.forward_proxy(yes)\n"))
        cls.addClassCleanup(cls.proxy.close)

    def test_metrics_is_prometheus_text_with_the_promised_families(self):
        status, headers, body = http_get(self.proxy.admin_host, self.proxy.admin_port, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("content-type", "").startswith("text/plain"), headers)
        samples = parse_prometheus(body.decode())
        names = {name for name, _ in samples}
        text = body.decode()
        for family in ("connections", "active_sessions", "bytes", "detection", "denial",
                       "leaf_cache", "handshake"):
            self.assertRegex(text, rf"# TYPE \S*{family}\S* ",
                             f"no metric family about {family}:\n{text}")
        self.assertTrue(names, text)

    def test_parser_refuses_what_prometheus_refuses(self):
        good = "# TYPE a counter\na{x=\"1\"} 2\n"
        self.assertEqual(metric(parse_prometheus(good), "a", x="1"), 2)
        for bad in ("a{x=1} 2\n", "a 1 2 3\n", "a{x=\"1\"} two\n", "# TYPE a counter\na -1\n",
                    "a 1\nb 1\na 2\n", "a 1\na 1\n", "a 1", "a 1\n# TYPE a counter\n"):
            with self.assertRaises(ValueError, msg=bad):
                parse_prometheus(bad)

    def test_counters_move_with_traffic(self):
        before = metrics_of(self.proxy)

        # A blind tunnel: one tcp detection, bytes each way, one ended connection.
        sock = open_tunnel(self.proxy, HOST, self.echo.port)
        data = OPAQUE_PREFIX + os.urandom(20000)
        sock.sendall(data)
        self.assertEqual(recv_exact(sock, len(data)), data)
        sock.close()
        self.proxy.wait_log(lambda e: e.get("target") == f"{HOST}:{self.echo.port}")

        def moved():
            now = metrics_of(self.proxy)
            ended = metric_sum(now, "handoff_connections_total")
            return now if ended > metric_sum(before, "handoff_connections_total") else None

        after = harness.wait_until(moved, 10, what="handoff_connections_total to move")
        self.assertGreaterEqual(
            metric(after, "handoff_detections_total", protocol="tcp")
            - metric(before, "handoff_detections_total", protocol="tcp"), 1)
        self.assertGreaterEqual(
            metric(after, "handoff_connections_total", protocol="tcp", outcome="allowed")
            - metric(before, "handoff_connections_total", protocol="tcp", outcome="allowed"), 1)
        for direction in ("from_client", "from_server"):
            self.assertGreaterEqual(
                metric(after, "handoff_bytes_total", direction=direction)
                - metric(before, "handoff_bytes_total", direction=direction), len(data),
                direction)

        # A request denied by the rule on line 2 of the policy.
        with socket.create_connection((self.proxy.host, self.proxy.port), timeout=10) as s:
            s.sendall(b"CONNECT denied.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n")
            self.assertEqual(status_of(read_head(s)), 403)
        rule = f"{self.proxy.policy_path}:2"

        def denied():
            now = metrics_of(self.proxy)
            return now if metric(now, "handoff_denials_total", rule=rule) >= 1 else None

        try:
            harness.wait_until(denied, 10, what="a denial counted")
        except TimeoutError:
            raise AssertionError(f"no handoff_denials_total{{rule=\"{rule}\"}} after a 403:\n"
                                 + self.proxy.admin_get("/metrics").decode()) from None

        # Two intercepted requests to one host: the first mints (miss), the second reuses (hit).
        url = f"https://localhost:{self.tls_origin.port}/hello"
        start = metrics_of(self.proxy)
        first = harness.curl("--cacert", self.proxy.ca_cert, url, proxy=self.proxy.url)
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertEqual(first.stdout, b"hello from origin\n")
        mid = metrics_of(self.proxy)
        second = harness.curl("--cacert", self.proxy.ca_cert, url, proxy=self.proxy.url)
        self.assertEqual(second.returncode, 0, second.stderr)
        end = metrics_of(self.proxy)
        misses, hits = "handoff_leaf_cache_misses_total", "handoff_leaf_cache_hits_total"
        self.assertEqual(metric(mid, misses) - metric(start, misses), 1, "first: one leaf minted")
        self.assertEqual(metric(mid, hits) - metric(start, hits), 0)
        self.assertEqual(metric(end, misses) - metric(mid, misses), 0, "second: nothing minted")
        self.assertEqual(metric(end, hits) - metric(mid, hits), 1, "second: one cache hit")


# ---- health, CA, CRL, PAC; the admin port never proxies -----------------------------------


class LocalPagesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)
        cls.proxy = harness.Handoff(policy_text="<proxy>\n    ALLOW\n")
        cls.addClassCleanup(cls.proxy.close)

    def admin(self, path: str) -> tuple:
        return http_get(self.proxy.admin_host, self.proxy.admin_port, path)

    def test_healthz_is_ok(self):
        status, _, body = self.admin("/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body.strip(), b"ok")

    def test_ca_crt_is_the_configured_ca(self):
        status, _, body = self.admin("/ca.crt")
        self.assertEqual(status, 200)
        self.assertIn(b"-----BEGIN CERTIFICATE-----", body)
        with open(self.proxy.ca_cert, "rb") as f:
            self.assertEqual(der_of_pem(body), der_of_pem(f.read()))

    def test_pac_is_served_on_both_ports_as_proxy_autoconfig(self):
        for port in (self.proxy.admin_port, self.proxy.port):
            for path in ("/proxy.pac", "/wpad.dat"):
                status, headers, body = http_get(HOST, port, path)
                self.assertEqual(status, 200, (port, path))
                self.assertEqual(headers.get("content-type", "").split(";")[0].strip(), PAC_TYPE,
                                 (port, path, headers))
                self.assertIn(b"FindProxyForURL", body)
                self.assertIn(f"PROXY {HOST}:{self.proxy.port}".encode(), body)

    def test_crl_is_signed_by_the_ca_on_both_ports(self):
        directory = temp_dir(self)
        for port in (self.proxy.admin_port, self.proxy.port):
            status, headers, body = http_get(HOST, port, "/handoff-ca.crl")
            self.assertEqual(status, 200, port)
            self.assertEqual(headers.get("content-type"), "application/pkix-crl")
            path = os.path.join(directory, f"{port}.crl")
            with open(path, "wb") as f:
                f.write(body)
            proc = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", path, "-noout",
                                   "-CAfile", self.proxy.ca_cert], capture_output=True, text=True,
                                  timeout=20)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn("verify OK", proc.stdout + proc.stderr)

    def test_admin_port_refuses_to_proxy(self):
        target = f"{HOST}:{self.origin.port}"
        before = self.origin.stats()["connections"]
        for request in (f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n",
                        f"GET http://{target}/hello HTTP/1.1\r\nHost: {target}\r\n\r\n",
                        f"POST http://{target}/echo HTTP/1.1\r\nHost: {target}\r\n"
                        f"Content-Length: 0\r\n\r\n"):
            with socket.create_connection((self.proxy.admin_host, self.proxy.admin_port),
                                          timeout=10) as s:
                s.sendall(request.encode())
                head = read_head(s)
                self.assertIn(status_of(head), (403, 405), f"{request!r} -> {head!r}")
        time.sleep(0.3)
        self.assertEqual(self.origin.stats()["connections"], before,
                         "the admin port relayed something to the origin")


class AdminWithoutProxyAuthTest(unittest.TestCase):
    """Proxy authentication guards the proxy port only; the admin endpoints never ask for it."""

    def test_admin_endpoints_need_no_proxy_credentials(self):
        hashed = subprocess.run(["openssl", "passwd", "-6", "s3cret"], capture_output=True,
                                text=True, check=True, timeout=20).stdout.strip()
        with harness.Handoff(policy_text="<proxy>\n    ALLOW\n",
                             files={"users.htpasswd": f"alice:{hashed}\n"},
                             auth={"htpasswd": "users.htpasswd"}) as h:
            with socket.create_connection((h.host, h.port), timeout=10) as s:
                s.sendall(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
                self.assertEqual(status_of(read_head(s)), 407)
            for path in ("/healthz", "/sessions", "/metrics", "/proxy.pac", "/ca.crt"):
                status, _, _ = http_get(h.admin_host, h.admin_port, path)
                self.assertEqual(status, 200, path)
            # Browsers fetch the PAC and the CRL before they could authenticate.
            for path in ("/proxy.pac", "/wpad.dat", "/handoff-ca.crl"):
                status, _, _ = http_get(h.host, h.port, path)
                self.assertEqual(status, 200, f"proxy port {path}")


# ---- PAC logic with node -------------------------------------------------------------------


class GeneratedPacTest(unittest.TestCase):
    FAILOVER = "PROXY a.example.net:3128; PROXY b.example.net:3128"

    def test_generated_pac_answers_as_configured(self):
        direct = ("localhost, 127.0.0.0/8, *.local, intranet.example.com, .corp.example, "
                  "10.0.0.0/8, 192.168.1.0/24")
        with harness.Handoff(policy_text="<proxy>\n    ALLOW\n",
                             pac={"proxy": self.FAILOVER, "direct": direct}) as h:
            status, headers, pac = http_get(h.admin_host, h.admin_port, "/proxy.pac")
        self.assertEqual(status, 200)
        expected = {
            "www.example.org": self.FAILOVER,
            "wiki": "DIRECT",  # a plain host name
            "localhost": "DIRECT",
            "127.0.0.5": "DIRECT",
            "10.200.3.4": "DIRECT",
            "192.168.1.77": "DIRECT",
            "192.168.2.1": self.FAILOVER,
            "11.0.0.1": self.FAILOVER,
            "printer.local": "DIRECT",
            "printer.local.evil.com": self.FAILOVER,
            "intranet.example.com": "DIRECT",
            "wiki.intranet.example.com": "DIRECT",
            "notintranet.example.com": self.FAILOVER,
            "corp.example": "DIRECT",
            "mail.corp.example": "DIRECT",
            "corp.example.org": self.FAILOVER,
        }
        hosts = list(expected)
        answers = eval_pac(pac.decode(), [(f"https://{host}/", host) for host in hosts])
        got = dict(zip(hosts, answers))
        self.assertEqual(got, expected, pac.decode())

    def test_pac_file_is_served_as_given(self):
        text = ("// site PAC\nfunction FindProxyForURL(url, host) {\n"
                "    return \"PROXY site-proxy.example:8080; DIRECT\";\n}\n")
        with harness.Handoff(policy_text="<proxy>\n    ALLOW\n", files={"site.pac": text},
                             pac={"file": "site.pac"}) as h:
            for port in (h.admin_port, h.port):
                status, headers, body = http_get(HOST, port, "/proxy.pac")
                self.assertEqual(status, 200)
                self.assertEqual(headers.get("content-type", "").split(";")[0].strip(), PAC_TYPE)
                self.assertEqual(body, text.encode())
        self.assertEqual(eval_pac(text, [("http://x.org/", "x.org")]),
                         ["PROXY site-proxy.example:8080; DIRECT"])


# ---- Chromium through the PAC ------------------------------------------------------------


def handoff_with_hosts(test: unittest.TestCase, hosts_text: str, **kwargs) -> harness.Handoff:
    """A proxy that resolves names with its own /etc/hosts, in a private mount namespace.

    Chromium never sends loopback names or addresses to a PAC proxy (its implicit bypass), so
    the proxied origin needs a name; the proxy must resolve that name without DNS.
    """
    if not shutil.which("unshare"):
        raise unittest.SkipTest("unshare is not installed")
    # Root needs only a mount namespace; anyone else also a user namespace to mount in.
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    probe = subprocess.run([*unshare, "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        raise unittest.SkipTest(f"no private mount namespace here: {probe.stderr!r}")
    h = harness.Handoff(start=False, **kwargs)
    hosts = os.path.join(h.dir, "hosts")
    with open(hosts, "w") as f:
        f.write(hosts_text)
    wrapper = os.path.join(h.dir, "handoff-own-hosts")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nmount --bind '{hosts}' /etc/hosts || exit 2\n"
                f"exec '{h.binary}' \"$@\"\n")
    os.chmod(wrapper, 0o755)
    # unshare execs the wrapper, which execs the proxy: the PID the harness signals is the proxy's.
    h.process = harness.ManagedProcess([*unshare, wrapper, "-c", h.conf_path], h.dir, "handoff",
                                       h.env)
    try:
        harness.wait_port(h.host, h.port, 15, alive=h.process.alive)
        harness.wait_port(h.admin_host, h.admin_port, 15, alive=h.process.alive)
    except (RuntimeError, TimeoutError) as e:
        detail = h.process.describe()
        h.close()
        raise RuntimeError(f"handoff did not start: {e}\n{detail}") from None
    test.addCleanup(h.close)
    return h


class ChromiumPacTest(unittest.TestCase):
    def test_https_through_the_pac_is_intercepted_and_direct_hosts_bypass(self):
        require_chromium()
        test_certs = certs.test_certs()
        tls_origin = origin.start_origin(tls_cert=test_certs.server_cert,
                                         tls_key=test_certs.server_key)
        self.addCleanup(tls_origin.stop)
        direct_origin = origin.start_origin()
        self.addCleanup(direct_origin.stop)
        h = handoff_with_hosts(
            self, "127.0.0.1 localhost\n127.0.0.1 origin.test\n",
            policy_text="<proxy>\n    ALLOW\n<ssl-intercept>\n    ssl.forward_proxy(yes)\n",
            pac={"direct": "direct.test, *.local"})
        flags = [f"--proxy-pac-url={h.admin_url}/proxy.pac",
                 "--proxy-bypass-list=<-loopback>",
                 "--host-resolver-rules=MAP origin.test 127.0.0.1, MAP direct.test 127.0.0.1",
                 f"--ignore-certificate-errors-spki-list={spki_sha256_b64(h.ca_cert)}"]

        proxied_url = f"https://origin.test:{tls_origin.port}/headers"
        dom = chromium(self, proxied_url, *flags)
        self.assertIn("origin.test:", dom, f"page not loaded through the proxy:\n{dom[:2000]}\n"
                      f"chromium: {self.chromium_stderr[-2000:]}\n{h.stderr_text()[-2000:]}")
        seen = self.page_json(dom)
        self.assertEqual(seen["headers"].get("host"), f"origin.test:{tls_origin.port}")
        self.assertIn("via", seen["headers"], "an intercepted request carries the proxy's Via")
        entry = h.wait_log(lambda e: e.get("url") == proxied_url)
        self.assertEqual(entry.get("status"), 200, entry)
        self.assertTrue(entry.get("intercepted"), entry)
        self.assertEqual(entry.get("protocol"), "https", entry)

        direct_url = f"http://direct.test:{direct_origin.port}/headers"
        dom = chromium(self, direct_url, *flags)
        seen = self.page_json(dom)
        self.assertEqual(seen["headers"].get("host"), f"direct.test:{direct_origin.port}")
        self.assertNotIn("via", seen["headers"], "a direct host must not pass the proxy")
        time.sleep(0.5)
        through = [e for e in h.log_lines() if "direct.test" in json.dumps(e)]
        self.assertEqual(through, [], "a host listed as direct went through the proxy")

    @staticmethod
    def page_json(dom: str) -> dict:
        match = re.search(r"<pre[^>]*>(.*?)</pre>", dom, re.S)
        if not match:
            raise AssertionError(f"no JSON body in the page:\n{dom[:2000]}")
        text = (match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                .replace("&amp;", "&"))
        return json.loads(text)


# ---- examples/ ----------------------------------------------------------------------------


class ExamplesTest(unittest.TestCase):
    HANDOFF_PROXIES = "PROXY handoff1.example.net:3128; PROXY handoff2.example.net:3128"

    def test_example_config_and_policies_pass_check(self):
        conf = os.path.join(EXAMPLES, "handoff.conf")
        self.assertTrue(os.path.isfile(conf))
        proc = harness.run_handoff("-c", conf, "--check", cwd=REPO)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        directory = temp_dir(self)
        policies = sorted(os.listdir(os.path.join(EXAMPLES, "policies")))
        self.assertTrue(policies)
        for name in policies:
            shutil.copy(os.path.join(EXAMPLES, "policies", name), os.path.join(directory, name))
            config = harness.render_ini({"policy": {"file": name, "default": "deny"},
                                         "admin": {"listen": ""}})
            path = os.path.join(directory, f"{name}.conf")
            with open(path, "w") as f:
                f.write(config)
            proc = harness.run_handoff("-c", path, "--check", cwd=directory)
            self.assertEqual(proc.returncode, 0, f"{name}: {proc.stdout}{proc.stderr}")

    def test_example_pac_sends_internal_hosts_direct_and_the_rest_to_two_proxies(self):
        with open(os.path.join(EXAMPLES, "proxy.pac")) as f:
            pac = f.read()
        resolve = {"intranet.contoso.local": "10.1.2.3", "sharepoint.contoso.com": "10.20.0.5",
                   "sip.contoso.com": "10.10.1.20", "www.example.org": "93.184.216.34",
                   "teams.microsoft.com": "52.113.194.132",
                   "lyncdiscover.contoso.com": "10.10.1.21",
                   "webmail.partner.net": "172.20.4.4", "remote.contoso.com": "203.0.113.9"}
        expected = {
            "fileserver": "DIRECT",                 # plain name
            "intranet.contoso.local": "DIRECT",     # *.local
            "sharepoint.contoso.com": "DIRECT",     # internal domain
            "sip.contoso.com": "DIRECT",
            "lyncdiscover.contoso.com": "DIRECT",
            "10.9.8.7": "DIRECT",                   # internal net, by address
            "192.168.5.6": "DIRECT",
            "172.20.4.4": "DIRECT",
            "127.0.0.1": "DIRECT",
            "webmail.partner.net": "DIRECT",        # resolves into an internal net
            "www.example.org": self.HANDOFF_PROXIES,
            "teams.microsoft.com": self.HANDOFF_PROXIES,
            "remote.contoso.com": self.HANDOFF_PROXIES,  # published outside, on a public address
            "8.8.8.8": self.HANDOFF_PROXIES,
        }
        hosts = list(expected)
        answers = eval_pac(pac, [(f"https://{h}/", h) for h in hosts], resolve=resolve)
        normalise = lambda a: re.sub(r"\s*;\s*", "; ", a.strip())  # noqa: E731
        self.assertEqual({h: normalise(a) for h, a in zip(hosts, answers)}, expected)

    def test_example_systemd_unit_runs_unprivileged_with_reload(self):
        path = os.path.join(EXAMPLES, "handoff.service")
        with open(path) as f:
            text = f.read()
        sections, current = {}, None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            self.assertIsNotNone(current, f"key outside a section: {raw!r}")
            key, sep, value = line.partition("=")
            self.assertEqual(sep, "=", f"not KEY=VALUE: {raw!r}")
            current.setdefault(key.strip(), []).append(value.strip())
        self.assertEqual(set(sections), {"Unit", "Service", "Install"})
        service = sections["Service"]
        self.assertEqual(service.get("User"), ["handoff"])
        exec_start = service["ExecStart"][0]
        self.assertRegex(exec_start, r"^/\S*/handoff -c /\S+\.conf$")
        self.assertEqual(service.get("ExecReload"), ["/bin/kill -HUP $MAINPID"])
        for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                           ("ProtectHome", "yes"), ("PrivateTmp", "yes")):
            self.assertEqual(service.get(key), [value], key)
        self.assertIn("multi-user.target", " ".join(sections["Install"].get("WantedBy", [])))
        self.assertRegex(text, r"(?m)^#", "the unit explains itself in comments")

        analyze = shutil.which("systemd-analyze")
        if not analyze:
            return
        # verify wants the ExecStart binary to exist: check a copy pointing at the built one.
        directory = temp_dir(self)
        copy = os.path.join(directory, "handoff.service")
        with open(copy, "w") as f:
            f.write(text.replace(exec_start.split()[0], harness.handoff_bin()))
        proc = subprocess.run([analyze, "verify", copy], capture_output=True, text=True,
                              timeout=60)
        output = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 0, output)
        self.assertNotIn("handoff.service", output, "systemd-analyze has remarks on the unit")


if __name__ == "__main__":
    unittest.main()
