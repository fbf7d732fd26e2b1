"""HTTP/2 on intercepted connections (SPEC §6.1).

nginx (Debian, `listen ... ssl http2`) is the origin on loopback; curl --http2 and nghttp go
through the proxy with interception (CONNECT, the proxy's CA trusted). Hostile clients are
Python sockets speaking raw HTTP/2 frames inside TLS with ALPN h2 through a CONNECT.
"""

import concurrent.futures
import hashlib
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import certs
import harness

HOST = harness.HOST
INTERCEPT = "<ssl-intercept>\n  ssl.forward_proxy(yes)\n<proxy>\n  ALLOW\n"
DENY_SECRET = ("<ssl-intercept>\n  ssl.forward_proxy(yes)\n<proxy>\n"
               "  DENY url.host=localhost\n  ALLOW\n")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

SIZES = {"small": 1000, "large": 5 * 1024 * 1024}
PAGE_IMAGES = 24
CHROMIUM = "/usr/bin/chromium"

NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    default_type application/octet-stream;
    client_max_body_size 64m;
    root {dir}/www;
    server {{
        listen {host}:{h2_port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location /put/ {{ dav_methods PUT; create_full_put_path on; }}
        location = /trailer {{ add_trailer x-check done always; return 200 "with trailer\\n"; }}
        location = /via {{ return 200 "via=$http_via\\n"; }}
    }}
    server {{
        listen {host}:{short_port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        keepalive_requests 3;
    }}
    log_format conn "$connection $request";
    server {{
        listen {host}:{h1_port} ssl;
        access_log {dir}/h1.log conn;
        location = /via {{ return 200 "via=$http_via\\n"; }}
        location = /trailer {{ add_trailer x-check done always; return 200 "with trailer\\n"; }}
        location /put/ {{ dav_methods PUT; create_full_put_path on; }}
        ssl_certificate {cert};
        ssl_certificate_key {key};
    }}
}}
"""


class Nginx:
    """nginx in a temp prefix on two ports: h2_port (h2 and http/1.1), h1_port (http/1.1)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="handoff-h2-nginx-")
        os.makedirs(os.path.join(self.dir, "tmp"))
        www = os.path.join(self.dir, "www")
        os.makedirs(os.path.join(www, "put"))
        self.digests = {}
        os.makedirs(os.path.join(www, "img"))
        for i in range(PAGE_IMAGES):
            with open(os.path.join(www, "img", f"{i}.png"), "wb") as f:
                f.write(os.urandom(2000))
        with open(os.path.join(www, "page.html"), "w") as f:
            f.write("<html><body><p id=loaded>page</p>" + "".join(
                f'<img src="/img/{i}.png">' for i in range(PAGE_IMAGES)) + "</body></html>")
        for name, size in SIZES.items():
            data = os.urandom(size)
            with open(os.path.join(www, name), "wb") as f:
                f.write(data)
            self.digests[name] = hashlib.sha256(data).hexdigest()
        c = certs.test_certs()
        self.h2_port = harness.free_port()
        self.h1_port = harness.free_port()
        self.short_port = harness.free_port()  # h2, GOAWAY after 3 requests
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            # As root, nginx's workers would drop to nobody and not read the temp folder.
            user = "user root;" if os.geteuid() == 0 else ""
            f.write(NGINX_CONF.format(user=user, dir=self.dir, host=HOST, h2_port=self.h2_port,
                                      h1_port=self.h1_port, short_port=self.short_port,
                                      cert=c.server_cert,
                                      key=c.server_key))
        self.process = subprocess.Popen(["nginx", "-p", self.dir, "-c", conf],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            harness.wait_port(HOST, self.h2_port, 10, alive=lambda: self.process.poll() is None)
            harness.wait_port(HOST, self.h1_port, 10, alive=lambda: self.process.poll() is None)
        except Exception:
            self.stop()
            raise

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()  # by PID: only the nginx this test started
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def setUpModule():
    for tool in ("nginx", "nghttp", "curl"):
        if not shutil.which(tool):
            raise unittest.SkipTest(f"{tool} is not installed")
    global ORIGIN
    ORIGIN = Nginx()


def tearDownModule():
    ORIGIN.stop()


def curl_h2(proxy, url, *args, timeout=60):
    return harness.curl("--http2", "--cacert", proxy.ca_cert, "-o", "-", *args, url,
                        proxy=proxy.url, timeout=timeout)


def stream_lines(proxy, path_part):
    return [e for e in proxy.log_lines() if path_part in (e.get("url") or "")]


class ConnectForwarder:
    """A loopback port whose every connection is a CONNECT through the proxy to port."""

    def __init__(self, proxy, port):
        self.listener = socket.socket()
        self.listener.bind((HOST, 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.proxy, self.target = proxy, port
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            upstream = harness.connect_tunnel(self.proxy, "localhost", self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            src.settimeout(60)
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self.listener.close()


# ---- raw frames --------------------------------------------------------------------------

def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing (RFC 7541 6.2.2), names and values short."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def request_block(path=b"/small", authority=None) -> bytes:
    authority = authority or f"localhost:{ORIGIN.h2_port}".encode()
    # :method GET (index 2), :scheme https (index 7), then :authority and :path as literals.
    return b"\x82\x87" + literal(b":authority", authority) + literal(b":path", path)


def h2_socket(proxy, port=None):
    """TLS with ALPN h2 to the proxy's minted leaf through CONNECT localhost:port."""
    sock = harness.connect_tunnel(proxy, "localhost", port or ORIGIN.h2_port)
    ctx = ssl.create_default_context(cafile=proxy.ca_cert)
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(sock, server_hostname="localhost")
    tls.settimeout(10)
    return tls


def read_frames(tls, until_goaway=True, limit=20.0):
    """Frames (type, flags, stream, payload) until GOAWAY (or EOF / limit seconds)."""
    frames, buf = [], b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            tls.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = tls.recv(65536)
        except (socket.timeout, ssl.SSLError, ConnectionError, OSError):
            break
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            frames.append((ftype, flags, stream, buf[9:9 + length]))
            buf = buf[9 + length:]
            if until_goaway and ftype == 7:
                return frames
    return frames


def goaway_code(frames):
    for ftype, _, _, payload in frames:
        if ftype == 7:
            return int.from_bytes(payload[4:8], "big")
    return None


ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1


class Http2Through(unittest.TestCase):
    """Well-behaved clients: h2 on both legs, bodies intact, one log line per stream."""

    @classmethod
    def setUpClass(cls):
        cls.proxy = harness.Handoff(policy_text=DENY_SECRET.replace("localhost", "denied.test"))
        cls.base = f"https://localhost:{ORIGIN.h2_port}"

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()

    def test_small_and_large_bodies_over_h2_on_both_legs(self):
        for name in SIZES:
            with self.subTest(name=name):
                proc = curl_h2(self.proxy, f"{self.base}/{name}", "-w", "%{http_version}",
                               "-D", "/dev/stderr")
                self.assertEqual(proc.returncode, 0, proc.stderr)
                body, version = proc.stdout[:-1], proc.stdout[-1:]
                self.assertEqual(version, b"2", "the client leg did not speak h2")
                self.assertEqual(hashlib.sha256(body).hexdigest(), ORIGIN.digests[name])
                entry = self.proxy.wait_log(lambda e: e.get("url") == f"{self.base}/{name}")
                self.assertEqual(entry["http_version"], "2")
                self.assertEqual(entry["status"], 200)
                self.assertEqual(entry["bytes_from_server"], SIZES[name])
                self.assertTrue(entry["intercepted"])

    def test_concurrent_streams_with_curl(self):
        urls = [f"{self.base}/small?n={i}" for i in range(20)] + [f"{self.base}/large?n=big"]
        args = []
        for url in urls:
            args += ["-o", "/dev/null", "-w", "%{http_code} %{http_version} %{size_download}\\n",
                     url]
        proc = harness.curl("--http2", "--parallel", "--parallel-max", "30", "--cacert",
                            self.proxy.ca_cert, *args, proxy=self.proxy.url, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        results = [line.split() for line in proc.stdout.decode().split("\n") if line]
        self.assertEqual(len(results), len(urls))
        for code, version, size in results:
            self.assertEqual((code, version), ("200", "2"))
            self.assertIn(int(size), SIZES.values())
        for i in range(20):
            self.proxy.wait_log(lambda e, i=i: e.get("url", "").endswith(f"/small?n={i}")
                                and e.get("http_version") == "2")
        # /metrics counts streams, not connections.
        text = self.proxy.admin_get("/metrics").decode()
        allowed = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('handoff_http2_streams_total{action="allowed"}')]
        self.assertTrue(allowed and allowed[0] >= len(urls), allowed)

    def test_concurrent_streams_with_nghttp(self):
        # nghttp speaks to a local port that forwards through CONNECT (it has no proxy option).
        forward = ConnectForwarder(self.proxy, ORIGIN.h2_port)
        self.addCleanup(forward.close)
        base = f"https://localhost:{forward.port}"
        urls = [f"{base}/small?nghttp={i}" for i in range(30)] + [f"{base}/large?nghttp=big"]
        proc = subprocess.run(["nghttp", "-n", "-s", "-m", "1", *urls], capture_output=True,
                              timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        for i in range(30):
            entry = self.proxy.wait_log(
                lambda e, i=i: e.get("url", "").endswith(f"/small?nghttp={i}"))
            self.assertEqual((entry["status"], entry["http_version"]), (200, "2"))
            self.assertEqual(entry["bytes_from_server"], SIZES["small"])
        big = self.proxy.wait_log(lambda e: e.get("url", "").endswith("/large?nghttp=big"))
        self.assertEqual(big["bytes_from_server"], SIZES["large"])
        # All of them were streams of one client connection.
        self.assertEqual(forward.accepted, 1)

    def test_pseudo_headers_in_any_order_and_h2load(self):
        # :path and :authority before :method, as some clients send them.
        tls = h2_socket(self.proxy)
        try:
            block = (literal(b":path", b"/small?order=1") + literal(
                b":authority", f"localhost:{ORIGIN.h2_port}".encode()) + b"\x87\x82")
            tls.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x5, 1, block))
            frames = read_frames(tls, until_goaway=False, limit=3)
        finally:
            tls.close()
        data = b"".join(p for t, _, s, p in frames if t == 0 and s == 1)
        self.assertEqual(hashlib.sha256(data).hexdigest(), ORIGIN.digests["small"])
        # h2load (nghttp2's load generator) through a CONNECT forwarder: every request served.
        forward = ConnectForwarder(self.proxy, ORIGIN.h2_port)
        self.addCleanup(forward.close)
        proc = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "10",
                               f"https://localhost:{forward.port}/small"],
                              capture_output=True, timeout=60)
        self.assertIn(b"400 succeeded, 0 failed", proc.stdout, proc.stdout[-800:])

    def test_via_names_the_proxy_on_both_origin_kinds(self):
        for port in (ORIGIN.h2_port, ORIGIN.h1_port):
            with self.subTest(port=port):
                proc = curl_h2(self.proxy, f"https://localhost:{port}/via", "-D", "-")
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertIn(b"via=2 handoff", proc.stdout)
                self.assertRegex(proc.stdout.decode(), r"(?i)\nvia: (2|1\.1) handoff")

    def test_chromium_loads_a_page_over_h2(self):
        if not os.access(CHROMIUM, os.X_OK):
            self.skipTest("chromium is not installed")
        profile = tempfile.mkdtemp(prefix="handoff-h2-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        spki = subprocess.run(
            f"openssl x509 -in {self.proxy.ca_cert} -noout -pubkey | "
            "openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64",
            shell=True, capture_output=True, timeout=20).stdout.decode().strip()
        url = f"{self.base}/page.html"
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             "--virtual-time-budget=5000", f"--proxy-server={self.proxy.url}",
             "--proxy-bypass-list=<-loopback>", f"--ignore-certificate-errors-spki-list={spki}",
             "--dump-dom", url],
            capture_output=True, text=True, timeout=90, env=harness.clean_env(), cwd=profile)
        self.assertIn('id="loaded"', proc.stdout, proc.stderr[-2000:])
        page = self.proxy.wait_log(lambda e: e.get("url") == url)
        self.assertEqual((page["status"], page["http_version"]), (200, "2"))
        for i in range(PAGE_IMAGES):
            entry = self.proxy.wait_log(lambda e, i=i: e.get("url") == f"{self.base}/img/{i}.png")
            self.assertEqual((entry["status"], entry["http_version"]), (200, "2"), entry)

    def test_request_body_round_trip(self):
        data = os.urandom(3 * 1024 * 1024)
        path = os.path.join(tempfile.mkdtemp(prefix="handoff-h2-body-"), "upload")
        self.addCleanup(shutil.rmtree, os.path.dirname(path), True)
        with open(path, "wb") as f:
            f.write(data)
        put = curl_h2(self.proxy, f"{self.base}/put/up.bin", "-T", path, "-w", "%{http_code}")
        self.assertEqual(put.returncode, 0, put.stderr)
        self.assertIn(put.stdout[-3:], (b"201", b"204"))
        got = curl_h2(self.proxy, f"{self.base}/put/up.bin")
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertEqual(hashlib.sha256(got.stdout).hexdigest(), hashlib.sha256(data).hexdigest())
        entry = self.proxy.wait_log(lambda e: e.get("method") == "PUT"
                                    and e.get("url", "").endswith("/put/up.bin"))
        self.assertEqual(entry["bytes_from_client"], len(data))
        self.assertEqual(entry["http_version"], "2")

    def test_response_trailers_pass(self):
        proc = subprocess.run(["nghttp", "-v", f"{self.base}/trailer"], capture_output=True,
                              timeout=30)
        self.assertIn(b"x-check: done", proc.stdout, "nginx did not send the trailer directly")
        # Through the proxy: a raw client reads the trailer HEADERS frame after the DATA, from
        # an h2 origin and from an HTTP/1.1 one (a chunked body's trailer section).
        for port in (ORIGIN.h2_port, ORIGIN.h1_port):
            with self.subTest(port=port):
                tls = h2_socket(self.proxy, port)
                try:
                    tls.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x5, 1, request_block(
                        b"/trailer", f"localhost:{port}".encode())))
                    frames = read_frames(tls, until_goaway=False, limit=3)
                finally:
                    tls.close()
                headers = [f for f in frames if f[0] == 1 and f[2] == 1]
                self.assertEqual(len(headers), 2, f"expected response head and trailers: {frames}")
                self.assertTrue(headers[1][1] & 0x1, "the trailers must end the stream")
                body = b"".join(p for t, _, s, p in frames if t == 0 and s == 1)
                self.assertEqual(body, b"with trailer\n")

    def test_denied_stream_leaves_others_working(self):
        # Two streams on one connection: one to a denied name, one allowed.
        tls = h2_socket(self.proxy)
        try:
            tls.sendall(PREFACE + frame(4, 0, 0) +
                        frame(1, 0x5, 1, request_block(b"/small", b"denied.test")) +
                        frame(1, 0x5, 3, request_block(b"/small")))
            frames = read_frames(tls, until_goaway=False, limit=3)
        finally:
            tls.close()
        statuses = {}
        for ftype, flags, stream, payload in frames:
            if ftype == 1 and stream in (1, 3) and stream not in statuses:
                statuses[stream] = payload
        self.assertIn(1, statuses)
        self.assertIn(3, statuses)
        # :status 403 is not in the static table (literal), 200 is index 8 (0x88).
        self.assertIn(b"403", statuses[1])
        self.assertEqual(statuses[3][:1], b"\x88")
        data = b"".join(p for t, _, s, p in frames if t == 0 and s == 3)
        self.assertEqual(hashlib.sha256(data).hexdigest(), ORIGIN.digests["small"])
        denied = self.proxy.wait_log(lambda e: "denied.test" in (e.get("url") or ""))
        self.assertEqual(denied["action"], "denied")
        self.assertEqual(denied["status"], 403)
        self.assertEqual(denied["http_version"], "2")

    def h1_origin_connections(self, marker):
        with open(os.path.join(ORIGIN.dir, "h1.log")) as f:
            return {line.split()[0] for line in f if marker in line}

    def test_origin_goaway_moves_the_client_to_a_new_connection(self):
        base = f"https://localhost:{ORIGIN.short_port}"
        args = []
        for i in range(7):
            args += ["-o", "/dev/null", "-w", "%{http_code} %{http_version}\\n",
                     f"{base}/small?goaway={i}"]
        proc = harness.curl("--http2", "--cacert", self.proxy.ca_cert, *args,
                            proxy=self.proxy.url, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.decode().split("\n")[:7], ["200 2"] * 7)
        # The origin ends its connection after 3 requests; so does the proxy, gracefully,
        # and the client came back through new CONNECTs.
        harness.wait_until(lambda: len([e for e in self.proxy.log_lines()
                                         if e.get("target") == f"localhost:{ORIGIN.short_port}"])
                           >= 3, 10)

    def test_http11_origin_behind_h2_client(self):
        base = f"https://localhost:{ORIGIN.h1_port}"
        # Sequential requests on one h2 connection reuse one kept-alive origin connection.
        args = []
        for i in range(5):
            args += ["-o", "/dev/null", "-w", "%{http_code} %{http_version} %{size_download}\\n",
                     f"{base}/large?seq={i}"]
        proc = harness.curl("--http2", "--cacert", self.proxy.ca_cert, *args,
                            proxy=self.proxy.url, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.decode().split("\n")[:5],
                         [f"200 2 {SIZES['large']}"] * 5)
        for i in range(5):
            entry = self.proxy.wait_log(lambda e, i=i: e.get("url", "").endswith(f"?seq={i}"))
            self.assertEqual((entry["status"], entry["http_version"]), (200, "2"))
            self.assertEqual(entry["bytes_from_server"], SIZES["large"])
        harness.wait_until(lambda: len(self.h1_origin_connections("seq=")) >= 1, 5)
        self.assertEqual(len(self.h1_origin_connections("seq=")), 1)
        # Concurrent streams get connections of their own; bodies arrive intact.
        proc = curl_h2(self.proxy, f"{base}/small")
        self.assertEqual(hashlib.sha256(proc.stdout).hexdigest(), ORIGIN.digests["small"])
        args = []
        for i in range(8):
            args += ["-o", "/dev/null", "-w", "%{http_code} %{http_version} %{size_download}\\n",
                     f"{base}/large?par={i}"]
        proc = harness.curl("--http2", "--parallel", "--parallel-max", "8", "--cacert",
                            self.proxy.ca_cert, *args, proxy=self.proxy.url, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(sorted(proc.stdout.decode().split("\n")[:8]),
                         [f"200 2 {SIZES['large']}"] * 8)
        harness.wait_until(lambda: len(self.h1_origin_connections("par=")) >= 1, 5)
        self.assertGreater(len(self.h1_origin_connections("par=")), 1)

    def test_http11_origin_request_body_round_trip(self):
        base = f"https://localhost:{ORIGIN.h1_port}"
        data = os.urandom(2 * 1024 * 1024 + 17)
        path = os.path.join(tempfile.mkdtemp(prefix="handoff-h2-body-"), "upload")
        self.addCleanup(shutil.rmtree, os.path.dirname(path), True)
        with open(path, "wb") as f:
            f.write(data)
        put = curl_h2(self.proxy, f"{base}/put/h1.bin", "-T", path, "-w", "%{http_code}")
        self.assertEqual(put.returncode, 0, put.stderr)
        self.assertIn(put.stdout[-3:], (b"201", b"204"))
        got = curl_h2(self.proxy, f"{base}/put/h1.bin", "-w", "%{http_version}")
        self.assertEqual(got.stdout[-1:], b"2")
        self.assertEqual(hashlib.sha256(got.stdout[:-1]).hexdigest(),
                         hashlib.sha256(data).hexdigest())

    def test_http2_off_in_config_means_http11(self):
        proxy = harness.Handoff(policy_text=INTERCEPT, tls={"http2": "no"})
        self.addCleanup(proxy.close)
        proc = curl_h2(proxy, f"{self.base}/small", "-w", "%{http_version}")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout[-3:], b"1.1")

    def test_policy_http2_no_means_http11(self):
        proxy = harness.Handoff(policy_text="<ssl-intercept>\n  ssl.forward_proxy(yes) "
                                            "ssl.http2(no)\n<proxy>\n  ALLOW\n")
        self.addCleanup(proxy.close)
        proc = curl_h2(proxy, f"{self.base}/small", "-w", "%{http_version}")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout[-3:], b"1.1")


class ForgetfulOrigin:
    """An HTTP/1.1 TLS origin that answers one request per connection with keep-alive, then
    closes the connection without answering when the next request arrives (as a server does
    whose keep-alive timeout ran out at that moment)."""

    def __init__(self):
        c = certs.test_certs()
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(c.server_cert, c.server_key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.listener = socket.socket()
        self.listener.bind((HOST, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(sock,), daemon=True).start()

    def _one(self, sock):
        tls = None
        try:
            tls = self.ctx.wrap_socket(sock, server_side=True)
            tls.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                data += chunk
            self._answer(tls)
        except (OSError, ssl.SSLError):
            pass
        finally:
            (tls or sock).close()

    def _answer(self, tls):
        tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nhello\n")
        tls.recv(4096)  # the next request: dropped with the connection

    def close(self):
        self.listener.close()


class EndlessHeadOrigin(ForgetfulOrigin):
    """Answers with a response head that never ends (1 MiB of one header, then silence)."""

    def _answer(self, tls):
        tls.sendall(b"HTTP/1.1 200 OK\r\nx-pad: ")
        for _ in range(64):
            tls.sendall(b"a" * 16384)
        tls.recv(4096)


class SilentOrigin(ForgetfulOrigin):
    """Reads the request and never answers, keeping the connection open."""

    def _answer(self, tls):
        tls.settimeout(30)
        tls.recv(4096)


class ConnectionLifetime(unittest.TestCase):
    """GOAWAY on a graceful stop and after the idle timeout."""

    def test_stop_sends_goaway_and_lets_the_open_stream_finish(self):
        proxy = harness.Handoff(policy_text=INTERCEPT, proxy={"drain_timeout_s": "10"})
        self.addCleanup(proxy.close)
        tls = h2_socket(proxy)
        self.addCleanup(tls.close)
        # The response is held by flow control (64 KiB windows) when the stop begins.
        tls.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x5, 1, request_block(b"/large")))
        first = read_frames(tls, until_goaway=False, limit=1)
        proxy.signal(signal.SIGTERM)
        frames = first + read_frames(tls, limit=5)
        self.assertEqual(goaway_code(frames), 0, f"no graceful GOAWAY: {frames[-3:]}")
        increment = struct.pack(">I", 0x7FFF0000)
        tls.sendall(frame(8, 0, 0, increment) + frame(8, 0, 1, increment))
        frames += read_frames(tls, until_goaway=False, limit=5)
        data = b"".join(p for t, _, sid, p in frames if t == 0 and sid == 1)
        self.assertEqual(hashlib.sha256(data).hexdigest(), ORIGIN.digests["large"])
        self.assertTrue(any(t == 0 and sid == 1 and f & 1 for t, f, sid, _ in frames))
        self.assertEqual(proxy.process.proc.wait(15), 0)

    def test_request_on_a_connection_the_origin_just_closed_is_sent_again(self):
        server = ForgetfulOrigin()
        self.addCleanup(server.close)
        proxy = harness.Handoff(policy_text=INTERCEPT)
        self.addCleanup(proxy.close)
        base = f"https://localhost:{server.port}"
        proc = harness.curl("--http2", "--cacert", proxy.ca_cert, "-w", "%{http_version}\\n",
                            f"{base}/one", f"{base}/two", f"{base}/three", proxy=proxy.url)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, b"hello\n2\nhello\n2\nhello\n2\n")
        for name in ("one", "two", "three"):
            entry = proxy.wait_log(lambda e, n=name: e.get("url") == f"{base}/{n}")
            self.assertEqual(entry["status"], 200, entry)
        # The first leg's connection, then one per request: the reused ones failed and the
        # requests went again on new connections.
        self.assertGreaterEqual(server.connections, 4)

    def test_endless_response_head_from_an_http1_origin_is_a_502(self):
        server = EndlessHeadOrigin()
        self.addCleanup(server.close)
        proxy = harness.Handoff(policy_text=INTERCEPT)
        self.addCleanup(proxy.close)
        url = f"https://localhost:{server.port}/endless"
        proc = harness.curl("--http2", "--cacert", proxy.ca_cert, "--max-time", "20",
                            "-o", "/dev/null", "-w", "%{http_code} %{http_version}", url,
                            proxy=proxy.url)
        self.assertEqual(proc.stdout, b"502 2", proc.stderr)
        entry = proxy.wait_log(lambda e: e.get("url") == url)
        self.assertEqual(entry["status"], 502, entry)
        proc = curl_h2(proxy, f"https://localhost:{ORIGIN.h1_port}/small")
        self.assertEqual(hashlib.sha256(proc.stdout).hexdigest(), ORIGIN.digests["small"])

    def test_http1_origin_silent_mid_exchange_is_a_502_after_the_idle_timeout(self):
        server = SilentOrigin()
        self.addCleanup(server.close)
        proxy = harness.Handoff(policy_text=INTERCEPT, proxy={"idle_timeout_s": "2"})
        self.addCleanup(proxy.close)
        url = f"https://localhost:{server.port}/silent"
        started = time.monotonic()
        proc = harness.curl("--http2", "--cacert", proxy.ca_cert, "--max-time", "20",
                            "-o", "/dev/null", "-w", "%{http_code}", url, proxy=proxy.url)
        self.assertEqual(proc.stdout, b"502", proc.stderr)
        self.assertLess(time.monotonic() - started, 15)

    def test_idle_connection_gets_goaway(self):
        proxy = harness.Handoff(policy_text=INTERCEPT, proxy={"idle_timeout_s": "1"})
        self.addCleanup(proxy.close)
        tls = h2_socket(proxy)
        self.addCleanup(tls.close)
        tls.sendall(PREFACE + frame(4, 0, 0))
        started = time.monotonic()
        frames = read_frames(tls, limit=10)
        self.assertEqual(goaway_code(frames), 0)
        self.assertLess(time.monotonic() - started, 5)


    def test_client_that_never_opens_its_windows_is_ended_when_idle(self):
        proxy = harness.Handoff(policy_text=INTERCEPT, proxy={"idle_timeout_s": "2"})
        self.addCleanup(proxy.close)
        for port in (ORIGIN.h2_port, ORIGIN.h1_port):
            with self.subTest(port=port):
                tls = h2_socket(proxy, port)
                self.addCleanup(tls.close)
                # Ten large responses, and windows that never reopen after the first 64 KiB.
                tls.sendall(PREFACE + frame(4, 0, 0) + b"".join(
                    frame(1, 0x5, 1 + 2 * i, request_block(b"/large", f"localhost:{port}".encode()))
                    for i in range(10)))
                started = time.monotonic()
                frames = read_frames(tls, limit=10)
                self.assertEqual(goaway_code(frames), 0)
                self.assertLess(time.monotonic() - started, 8)
                received = sum(len(p) for t, _, _, p in frames if t == 0)
                self.assertLessEqual(received, 65535)
                proc = curl_h2(proxy, f"https://localhost:{port}/small")
                self.assertEqual(hashlib.sha256(proc.stdout).hexdigest(), ORIGIN.digests["small"])


class HostileClients(unittest.TestCase):
    """Each attack ends its connection with GOAWAY; a good client meanwhile is served."""

    @classmethod
    def setUpClass(cls):
        cls.proxy = harness.Handoff(policy_text=INTERCEPT)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()

    def attack(self, payload_fn):
        """Runs the attack and, in parallel, a good client; returns the attack's frames."""
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            def good():
                results = []
                for _ in range(5):
                    proc = curl_h2(self.proxy, f"https://localhost:{ORIGIN.h2_port}/small")
                    results.append(proc.returncode == 0 and hashlib.sha256(
                        proc.stdout).hexdigest() == ORIGIN.digests["small"])
                return results

            def bad():
                tls = h2_socket(self.proxy)
                try:
                    try:
                        payload_fn(tls)
                    except (OSError, ssl.SSLError):
                        pass  # the proxy may close while the attack is still being sent
                    return read_frames(tls)
                finally:
                    tls.close()

            g, b = pool.submit(good), pool.submit(bad)
            frames = b.result(60)
            self.assertEqual(g.result(120), [True] * 5, "the good client was not served")
        return frames

    def test_rapid_reset(self):
        def send(tls):
            out = [PREFACE, frame(4, 0, 0)]
            for i in range(2000):
                sid = 1 + 2 * i
                out.append(frame(1, 0x5, sid, request_block()))
                out.append(frame(3, 0, sid, struct.pack(">I", 8)))  # RST_STREAM CANCEL
            tls.sendall(b"".join(out))
        self.assertEqual(goaway_code(self.attack(send)), ENHANCE_YOUR_CALM)
        # Far fewer than 2000 streams reached the origin (or the log), and the connection's
        # line says which limit ended it.
        self.assertLess(len(stream_lines(self.proxy, "/small")), 600)
        line = self.proxy.wait_log(lambda e: "rapid reset" in (e.get("error") or ""))
        self.assertEqual(line["method"], "CONNECT")

    def test_continuation_flood(self):
        def send(tls):
            tls.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x1, 1, b"\x82\x87"))
            for _ in range(5000):
                tls.sendall(frame(9, 0, 1, literal(b"x-a", b"b")))
        self.assertEqual(goaway_code(self.attack(send)), ENHANCE_YOUR_CALM)

    def test_oversized_header_block(self):
        def send(tls):
            block = request_block() + b"".join(
                literal(b"x-big-%d" % i, b"v" * 100) for i in range(700))
            # HEADERS then CONTINUATION frames within the default 16384-byte frame size.
            parts = [block[i:i + 16000] for i in range(0, len(block), 16000)]
            frames = [frame(1, 0x1, 1, parts[0])]
            frames += [frame(9, 0x4 if i == len(parts) - 1 else 0, 1, p)
                       for i, p in enumerate(parts[1:], 1)]
            tls.sendall(PREFACE + frame(4, 0, 0) + b"".join(frames))
        self.assertIn(goaway_code(self.attack(send)), (ENHANCE_YOUR_CALM,))

    def test_ping_flood(self):
        def send(tls):
            tls.sendall(PREFACE + frame(4, 0, 0) +
                        b"".join(frame(6, 0, 0, struct.pack(">Q", i)) for i in range(5000)))
        self.assertEqual(goaway_code(self.attack(send)), ENHANCE_YOUR_CALM)

    def test_settings_flood(self):
        def send(tls):
            tls.sendall(PREFACE + b"".join(frame(4, 0, 0) for _ in range(5000)))
        self.assertEqual(goaway_code(self.attack(send)), ENHANCE_YOUR_CALM)

    def test_priority_flood(self):
        def send(tls):
            priority = struct.pack(">IB", 0, 16)
            tls.sendall(PREFACE + frame(4, 0, 0) +
                        b"".join(frame(2, 0, 1 + 2 * i, priority) for i in range(5000)))
        self.assertEqual(goaway_code(self.attack(send)), ENHANCE_YOUR_CALM)

    def test_empty_data_flood(self):
        def send(tls):
            tls.sendall(PREFACE + frame(4, 0, 0) +
                        frame(1, 0x4, 1, request_block(b"/put/empty.bin")) +
                        b"".join(frame(0, 0, 1) for _ in range(5000)))
        self.assertEqual(goaway_code(self.attack(send)), ENHANCE_YOUR_CALM)

    def test_connect_inside_h2_is_refused_on_its_stream(self):
        tls = h2_socket(self.proxy)
        try:
            block = literal(b":method", b"CONNECT") + literal(b":authority", b"example.test:443")
            tls.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x4, 1, block) +
                        frame(1, 0x5, 3, request_block(b"/small")))
            frames = read_frames(tls, until_goaway=False, limit=3)
        finally:
            tls.close()
        heads = {s: p for t, _, s, p in frames if t == 1}
        body = b"".join(p for t, _, s, p in frames if t == 0 and s == 1)
        self.assertIn(1, heads)
        self.assertIn(b"CONNECT inside HTTP/2 is not supported", body)
        self.assertEqual(heads.get(3, b"")[:1], b"\x88", "the other stream was not served")
        entry = self.proxy.wait_log(
            lambda e: e.get("method") == "CONNECT" and e.get("status") == 501)
        self.assertIn("not supported", entry["error"])

    def test_invalid_preface(self):
        def send(tls):
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(4, 0, 0))
        self.assertEqual(goaway_code(self.attack(send)), PROTOCOL_ERROR)


if __name__ == "__main__":
    unittest.main()
