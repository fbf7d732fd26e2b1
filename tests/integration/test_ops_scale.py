"""Scale-out and zero-downtime operations (SPEC sections 3, 4.2, 10): the PROXY protocol behind a
real HAProxy, draining behind the balancer, log rotation, systemd notifications and takeover."""

import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import unittest

import certs
import core_support as cs
import harness
import origin
import servers
import wire

HOST = harness.HOST
HAPROXY = "/usr/sbin/haproxy"
DENIED_CLIENT = "127.0.0.5"  # a distinct loopback source the policy denies
ALLOWED_CLIENT = "127.0.0.6"
POLICY = f"<proxy>\n  client.address={DENIED_CLIENT} DENY\n"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(command: int, family: int, addresses: bytes) -> bytes:
    return V2_SIG + bytes([0x20 | command, family]) + struct.pack("!H", len(addresses)) + addresses


def v2_tcp4(src: str, sport: int, dst: str = HOST, dport: int = 3128) -> bytes:
    return v2_header(1, 0x11, socket.inet_aton(src) + socket.inet_aton(dst)
                     + struct.pack("!HH", sport, dport))


def v2_tcp6(src: str, sport: int, dst: str = "::1", dport: int = 3128) -> bytes:
    return v2_header(1, 0x21, socket.inet_pton(socket.AF_INET6, src)
                     + socket.inet_pton(socket.AF_INET6, dst) + struct.pack("!HH", sport, dport))


def open_from(source: str, port: int, timeout: float = 10) -> socket.socket:
    """A connection to HOST:port from the loopback address source."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect((HOST, port))
    return sock


def get(port: int, url: str, source: str = ALLOWED_CLIENT, prefix: bytes = b"") -> int:
    """Status of GET url through the proxy (or balancer) at port; one connection."""
    sock = open_from(source, port)
    try:
        host = url.split("/")[2]
        sock.sendall(prefix + f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        return cs.read_response(origin.Reader(sock)).status
    finally:
        sock.close()


def connect_status(port: int, authority: str, source: str = ALLOWED_CLIENT) -> int:
    """CONNECT authority through port; when answered 200, a GET inside the tunnel must be too."""
    sock = open_from(source, port)
    try:
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        reader = origin.Reader(sock)
        status = cs.read_head(reader)[0]
        if status != 200:
            return status
        sock.sendall(f"GET /bytes/10 HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
                     .encode())
        inner = cs.read_response(reader)
        return 200 if inner.status == 200 and len(inner.body) == 10 else 1000 + inner.status
    finally:
        sock.close()


def read_all_or_reset(sock: socket.socket) -> bytes:
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def metric(proxy: harness.Handoff, name: str, labels: str) -> int:
    text = proxy.admin_get("/metrics").decode()
    m = re.search(re.escape(f"{name}{{{labels}}}") + r" (\d+)", text)
    return int(m.group(1)) if m else 0


def behind_balancer(policy: str = POLICY, **proxy_keys) -> harness.Handoff:
    keys = {"proxy_protocol": "yes", "proxy_protocol_from": f"{HOST}/32", "workers": "2"}
    keys.update(proxy_keys)
    return harness.Handoff(policy_text=policy, proxy=keys)


class HAProxy:
    """HAProxy in TCP mode in front of handoff instances, as the README's recipe configures it."""

    def __init__(self, backends, send_proxy: str = "send-proxy-v2"):
        self.dir = harness.tempfile.mkdtemp(prefix="haproxy-")
        self.port = harness.free_port()
        self.stats_path = os.path.join(self.dir, "stats.sock")
        servers = "\n".join(
            f"    server h{i} {b.host}:{b.port} {send_proxy} check port {b.admin_port}"
            for i, b in enumerate(backends))
        self.config = f"""global
    stats socket {self.stats_path} mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch 1

frontend proxy
    bind {HOST}:{self.port}
    default_backend handoff

backend handoff
    balance leastconn
    option httpchk GET /healthz
    default-server inter 200ms fall 1 rise 1
{servers}
"""
        path = os.path.join(self.dir, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(self.config)
        check = subprocess.run([HAPROXY, "-c", "-f", path], capture_output=True, timeout=30)
        if check.returncode != 0:
            raise AssertionError(f"haproxy -c: {check.stderr.decode()}\n{self.config}")
        self.process = harness.ManagedProcess([HAPROXY, "-db", "-f", path], self.dir, "haproxy")
        harness.wait_port(HOST, self.port, 10, alive=self.process.alive)
        harness.wait_until(lambda: self.servers_up() == len(backends), 10,
                           what="every handoff instance UP in HAProxy")

    def command(self, text: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.stats_path)
            s.sendall(text.encode() + b"\n")
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out.decode()
                out += chunk

    def servers_up(self) -> int:
        rows = [line.split(",") for line in self.command("show stat").splitlines()]
        return sum(1 for r in rows if len(r) > 17 and r[0] == "handoff" and r[1].startswith("h")
                   and r[17] == "UP")

    def close(self) -> None:
        self.process.stop(5)
        harness.shutil.rmtree(self.dir, ignore_errors=True)


def client_lines(proxy: harness.Handoff, client_ip: str) -> list:
    return [e for e in proxy.log_lines() if e.get("client", "").startswith(client_ip + ":")]


class OriginTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)
        cls.authority = f"{HOST}:{cls.origin.port}"


class BalancerTest(OriginTest):
    def start_pair(self, send_proxy="send-proxy-v2", **keys):
        pair = [behind_balancer(**keys), behind_balancer(**keys)]
        for p in pair:
            self.addCleanup(p.close)
        balancer = HAProxy(pair, send_proxy)
        self.addCleanup(balancer.close)
        return pair, balancer

    def test_requests_and_connects_spread_and_client_address_rules_see_the_real_client(self):
        (a, b), lb = self.start_pair()
        url = f"http://{self.authority}/bytes/100"
        # leastconn alternates between idle servers: all the GETs, then all the CONNECTs.
        for _ in range(8):
            self.assertEqual(get(lb.port, url), 200)
        for _ in range(8):
            self.assertEqual(connect_status(lb.port, self.authority), 200)
        for proxy in (a, b):
            lines = harness.wait_until(
                lambda p=proxy: len(client_lines(p, ALLOWED_CLIENT)) >= 4 and client_lines(
                    p, ALLOWED_CLIENT), 10, what="lines of the real client on both instances")
            # A CONNECT's inner request has its own line (the tunnel none).
            self.assertTrue(any(e.get("url", "").endswith("/bytes/10") for e in lines), lines)
            self.assertTrue(any(e.get("url") == url for e in lines), lines)
            # The balancer's own address never stands for a relayed client.
            self.assertFalse(any(e.get("client", "").startswith(HOST + ":") for e in
                                 p_lines(proxy)), p_lines(proxy))
        # The rule on the real client's address, behind the balancer.
        self.assertEqual(get(lb.port, url, source=DENIED_CLIENT), 403)
        self.assertEqual(connect_status(lb.port, self.authority, source=DENIED_CLIENT), 403)
        harness.wait_until(lambda: len([e for p in (a, b) for e in client_lines(p, DENIED_CLIENT)])
                           >= 2, 10, what="both denials logged")
        denied = [e for p in (a, b) for e in client_lines(p, DENIED_CLIENT)]
        self.assertTrue(all(e["action"] == "denied" for e in denied), denied)
        accepted = metric(a, "handoff_proxy_protocol_total", 'outcome="accepted"') + metric(
            b, "handoff_proxy_protocol_total", 'outcome="accepted"')
        self.assertGreaterEqual(accepted, 18)

    def test_leaves_minted_by_both_instances_verify_against_the_one_ca(self):
        test_certs = certs.test_certs()
        tls_origin = origin.start_origin(tls_cert=test_certs.server_cert,
                                         tls_key=test_certs.server_key)
        self.addCleanup(tls_origin.stop)
        (a, b), lb = self.start_pair(policy=POLICY + "<proxy>\n  ALLOW\n<ssl-intercept>\n"
                                                    "  ssl.forward_proxy(yes)\n")
        client_ctx = ssl.create_default_context(cafile=harness.proxy_ca()[0])
        ca_subject = ssl._ssl._test_decode_cert(harness.proxy_ca()[0])["subject"]
        for _ in range(4):
            sock = open_from(ALLOWED_CLIENT, lb.port)
            sock.sendall(f"CONNECT localhost:{tls_origin.port} HTTP/1.1\r\n"
                         f"Host: localhost:{tls_origin.port}\r\n\r\n".encode())
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += sock.recv(1)
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            with client_ctx.wrap_socket(sock, server_hostname="localhost") as tls:  # verifies
                self.assertEqual(tls.getpeercert()["issuer"], ca_subject)
                tls.sendall(b"GET /bytes/5 HTTP/1.1\r\nHost: localhost\r\n"
                            b"Connection: close\r\n\r\n")
                response = cs.read_response(origin.Reader(tls))
                self.assertEqual((response.status, len(response.body)), (200, 5))
        for proxy in (a, b):
            proxy.wait_log(lambda e: e.get("intercepted") and e["client"].startswith(
                ALLOWED_CLIENT + ":"))

    def test_send_proxy_v1(self):
        (a, b), lb = self.start_pair(send_proxy="send-proxy")
        url = f"http://{self.authority}/bytes/5"
        for _ in range(4):
            self.assertEqual(get(lb.port, url), 200)
        for _ in range(4):
            self.assertEqual(get(lb.port, url, source=DENIED_CLIENT), 403)
        harness.wait_until(lambda: len(client_lines(a, ALLOWED_CLIENT))
                           + len(client_lines(b, ALLOWED_CLIENT)) == 4, 10, what="4 allowed lines")
        harness.wait_until(lambda: len(client_lines(a, DENIED_CLIENT))
                           + len(client_lines(b, DENIED_CLIENT)) == 4, 10, what="4 denied lines")
        self.assertTrue(client_lines(a, ALLOWED_CLIENT) and client_lines(b, ALLOWED_CLIENT))

    def test_sigterm_behind_the_balancer_fails_no_request(self):
        (a, b), lb = self.start_pair(drain_timeout_s="5")
        url = f"http://{self.authority}/bytes/1000"
        counts = {"ok": 0, "failed": 0, "failed_after_term": 0, "ok_after_term": 0}
        failures = []
        stop = threading.Event()
        term_sent = threading.Event()

        def loop():
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                after = term_sent.is_set()
                try:
                    status = get(lb.port, url)
                    ok = status == 200
                except OSError as e:
                    ok, status = False, repr(e)
                key = "ok" if ok else "failed"
                counts[key] += 1
                if after:
                    counts[key + "_after_term"] += 1
                if not ok:
                    failures.append(status)

        clients = [threading.Thread(target=loop) for _ in range(3)]
        for t in clients:
            t.start()
        try:
            time.sleep(1.5)
            a.signal(signal.SIGTERM)
            term_sent.set()
            harness.wait_until(lambda: lb.servers_up() == 1, 10, what="HAProxy takes it out")
            time.sleep(2)
        finally:
            stop.set()
            for t in clients:
                t.join(30)
        self.assertEqual(a.process.proc.wait(15), 0)
        self.assertEqual(counts["failed"], 0, failures[:5])
        self.assertGreater(counts["ok_after_term"], 20, counts)
        self.assertGreater(len(client_lines(b, ALLOWED_CLIENT)), 10)


def p_lines(proxy):
    return proxy.log_lines()


class ProxyHeaderTest(OriginTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.proxy = behind_balancer(header_timeout_s="1", workers="1")
        cls.addClassCleanup(cls.proxy.close)

    def request(self, header: bytes, split: bool = False) -> int:
        url = f"http://{self.authority}/bytes/3"
        req = f"GET {url} HTTP/1.1\r\nHost: {self.authority}\r\nConnection: close\r\n\r\n".encode()
        sock = open_from(HOST, self.proxy.port)
        try:
            if split:  # the header a byte at a time, the request with its last byte
                for i in range(len(header) - 1):
                    sock.send(header[i:i + 1])
                    time.sleep(0.002)
                sock.sendall(header[-1:] + req)
            else:
                sock.sendall(header + req)
            return cs.read_response(origin.Reader(sock)).status
        finally:
            sock.close()

    def last_client(self) -> str:
        return self.proxy.wait_log(lambda e: e.get("url", "").endswith("/bytes/3")
                                   and e not in self.seen)["client"]

    def setUp(self):
        self.seen = self.proxy.log_lines()

    def test_v1_tcp4_names_the_client(self):
        self.assertEqual(self.request(b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 3128\r\n"), 200)
        self.assertEqual(self.last_client(), "192.0.2.7:40001")

    def test_v2_tcp6_split_names_the_client(self):
        self.assertEqual(self.request(v2_tcp6("2001:db8::9", 40002), split=True), 200)
        self.assertEqual(self.last_client(), "[2001:db8::9]:40002")

    def test_v2_with_tlvs_and_v4_mapped_source(self):
        tlvs = b"\x04\x00\x03abc" + b"\x01\x00\x08http/1.1"  # NOOP and ALPN, skipped
        addr = (socket.inet_pton(socket.AF_INET6, "::ffff:198.51.100.4")
                + socket.inet_pton(socket.AF_INET6, "::1") + struct.pack("!HH", 40003, 3128))
        self.assertEqual(self.request(v2_header(1, 0x21, addr + tlvs)), 200)
        self.assertEqual(self.last_client(), "198.51.100.4:40003")

    def test_local_and_unknown_keep_the_balancer(self):
        self.assertEqual(self.request(v2_header(0, 0x00, b"")), 200)
        self.assertTrue(self.last_client().startswith(HOST + ":"))
        self.seen = self.proxy.log_lines()
        self.assertEqual(self.request(b"PROXY UNKNOWN\r\n"), 200)
        self.assertTrue(self.last_client().startswith(HOST + ":"))

    def test_every_bad_header_is_refused_with_a_reason(self):
        cases = [
            ("missing", b"GET http://x/ HTTP/1.1\r\n\r\n", "not a PROXY protocol header"),
            ("malformed", b"PROXY TCP4 300.1.1.1 127.0.0.1 1 2\r\n", "bad source address"),
            ("malformed", b"PROXY TCP4 192.0.2.1 127.0.0.1 99999 2\r\n", "out of range"),
            ("malformed", b"PROXY TCP5 1 2 3 4\r\n", "unknown protocol"),
            ("malformed", b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\n", "bad destination port"),
            ("malformed", V2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12, "bad PROXY v2 version"),
            ("malformed", V2_SIG + b"\x2f\x11\x00\x0c" + b"\x00" * 12, "unknown PROXY v2 command"),
            ("malformed", v2_header(1, 0x11, b"\x00" * 8), "truncated address block"),
            ("malformed", v2_tcp4("192.0.2.1", 1) + b"", None),  # placeholder replaced below
            ("too_long", b"PROXY UNKNOWN " + b"x" * 120, "longer than 107"),
            ("too_long", V2_SIG + b"\x21\x11\x10\x00" + b"\x00" * 64, "longer than 4096"),
        ]
        # A TLV that runs past the header's end.
        cases[8] = ("malformed", v2_header(1, 0x11, socket.inet_aton("192.0.2.1") * 2
                                           + b"\x00\x01\x00\x02" + b"\x04\x00\x09ab"),
                    "TLV runs past")
        before = {k: metric(self.proxy, "handoff_proxy_protocol_total", f'outcome="{k}"')
                  for k in ("missing", "malformed", "too_long", "truncated", "timeout")}
        for outcome, data, reason in cases:
            with self.subTest(outcome=outcome, data=data[:40]):
                sock = open_from(HOST, self.proxy.port)
                sock.sendall(data)
                self.assertEqual(read_all_or_reset(sock), b"")
                sock.close()
                harness.wait_until(lambda r=reason: r in self.proxy.stderr_text(), 5,
                                   what=f"reason {reason!r} in the diagnostics")
        # Truncated: the peer ends inside a header; timeout: it stops sending.
        sock = open_from(HOST, self.proxy.port)
        sock.sendall(b"PROXY TCP4 192.0.2.1")
        sock.shutdown(socket.SHUT_WR)
        self.assertEqual(read_all_or_reset(sock), b"")
        sock.close()
        sock = open_from(HOST, self.proxy.port)
        sock.sendall(V2_SIG[:5])
        started = time.monotonic()
        self.assertEqual(read_all_or_reset(sock), b"")
        self.assertGreater(time.monotonic() - started, 0.8)
        sock.close()
        stderr = self.proxy.stderr_text()
        self.assertIn("the connection ended inside its PROXY header", stderr)
        self.assertIn("no complete PROXY header within 1 s", stderr)
        after = {k: metric(self.proxy, "handoff_proxy_protocol_total", f'outcome="{k}"')
                 for k in before}
        want = {"missing": 1, "malformed": 8, "too_long": 2, "truncated": 1, "timeout": 1}
        self.assertEqual({k: after[k] - before[k] for k in before}, want)
        # No access-log line for refused connections: no transaction happened.
        self.assertFalse([e for e in self.proxy.log_lines() if e not in self.seen
                          and not e.get("url", "").endswith("/bytes/3")])


class UntrustedSourceTest(OriginTest):
    def test_a_header_from_a_source_not_in_the_list_is_refused(self):
        proxy = behind_balancer(proxy_protocol_from="127.0.0.2/32, ::1", workers="1")
        self.addCleanup(proxy.close)
        sock = open_from(HOST, proxy.port)
        sock.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 3128\r\n"
                     + f"GET http://{self.authority}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.assertEqual(read_all_or_reset(sock), b"")
        sock.close()
        harness.wait_until(lambda: "proxy_protocol_from" in proxy.stderr_text(), 5,
                           what="refusal logged")
        self.assertIn(f"connection from {HOST}:", proxy.stderr_text())
        # The harness's own readiness probe came from 127.0.0.1 too.
        self.assertGreaterEqual(metric(proxy, "handoff_proxy_protocol_total", 'outcome="source"'),
                                1)
        # From the allowed balancer address the same header is accepted.
        self.assertEqual(get(proxy.port, f"http://{self.authority}/bytes/1", source="127.0.0.2",
                             prefix=b"PROXY TCP4 192.0.2.8 127.0.0.1 40001 3128\r\n"), 200)
        proxy.wait_log(lambda e: e.get("client") == "192.0.2.8:40001")

    def test_on_without_a_list_is_a_config_error(self):
        proxy = harness.Handoff(proxy={"proxy_protocol": "yes"}, start=False)
        self.addCleanup(proxy.close)
        proc = harness.run_handoff("-c", proxy.conf_path, "--check")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("proxy_protocol_from", proc.stderr)


class RotationTest(OriginTest):
    def test_sigusr1_under_a_request_loop_loses_and_splits_no_line(self):
        proxy = harness.Handoff(policy_text="", log={"access_log": "access.log"})
        self.addCleanup(proxy.close)
        path = os.path.join(proxy.dir, "access.log")
        rotated = path + ".1"
        sent = []
        stop = threading.Event()

        def loop():
            i = 0
            while not stop.is_set() and i < 5000:
                url = f"http://{self.authority}/bytes/1?n={threading.get_ident()}-{i}"
                self.assertEqual(get(proxy.port, url, source=HOST), 200)
                sent.append(url)
                i += 1

        clients = [threading.Thread(target=loop) for _ in range(3)]
        for t in clients:
            t.start()
        try:
            time.sleep(1)
            os.rename(path, rotated)
            # stderr is redirected to a file here: it is rotated the same way.
            stderr_path = proxy.process.stderr_path
            os.rename(stderr_path, stderr_path + ".1")
            proxy.signal(signal.SIGUSR1)
            harness.wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 10,
                               what="the new file is written")
            time.sleep(1)
        finally:
            stop.set()
            for t in clients:
                t.join(30)
        def lines_written():
            total = 0
            for f in (path, rotated):
                with open(f) as fh:
                    total += sum(1 for _ in fh)
            return total >= len(sent)

        harness.wait_until(lines_written, 10, what="every line written")
        urls = []
        for f in (rotated, path):
            with open(f) as fh:
                for line in fh:
                    urls.append(json.loads(line)["url"])  # a split line would not parse
        self.assertEqual(sorted(urls), sorted(sent))
        self.assertGreater(os.path.getsize(rotated), 0)
        harness.wait_until(lambda: os.path.exists(stderr_path), 5, what="a new stderr file")
        with open(stderr_path) as f:
            self.assertIn("SIGUSR1: log files reopened", f.read())
        with open(stderr_path + ".1") as f:
            old_stderr = f.read()
        self.assertIn("listening on", old_stderr)
        self.assertNotIn("SIGUSR1", old_stderr)


def sha_crypt(password: str) -> str:
    proc = subprocess.run(["openssl", "passwd", "-6", password], capture_output=True, text=True,
                          timeout=30, check=True)
    return proc.stdout.strip()


class ReloadTest(OriginTest):
    def test_sighup_applies_policy_users_and_pac_and_names_restart_keys(self):
        proxy = harness.Handoff(files={"users.htpasswd": f"alice:{sha_crypt('one')}\n"},
                                auth={"htpasswd": "users.htpasswd"},
                                pac={"direct": "*.before.test"})
        self.addCleanup(proxy.close)
        url = f"http://{self.authority}/bytes/2"

        def status(user, password):
            proc = harness.curl("-o", "/dev/null", "-w", "%{http_code}", "--proxy-user",
                                f"{user}:{password}", url, proxy=proxy.url)
            return int(proc.stdout)

        def pac():
            return harness.curl(f"{proxy.url}/proxy.pac").stdout.decode()

        self.assertEqual(status("alice", "one"), 200)
        self.assertEqual(status("bob", "two"), 407)
        self.assertIn("before.test", pac())
        with open(os.path.join(proxy.dir, "users.htpasswd"), "w") as f:
            f.write(f"bob:{sha_crypt('two')}\n")
        proxy.config["pac"]["direct"] = "*.after.test"
        proxy.config["proxy"]["idle_timeout_s"] = "77"
        with open(proxy.conf_path, "w") as f:
            f.write(harness.render_ini(proxy.config))
        proxy.reload(policy_text="<proxy>\n  url.host=localhost DENY\n")
        harness.wait_until(lambda: "users reloaded" in proxy.stderr_text(), 10, what="reload")
        self.assertEqual(status("bob", "two"), 200)
        self.assertEqual(status("alice", "one"), 407)  # the cached success is gone too
        self.assertIn("after.test", pac())
        self.assertNotIn("before.test", pac())
        proc = harness.curl("-o", "/dev/null", "-w", "%{http_code}", "--proxy-user", "bob:two",
                            f"http://localhost:{self.origin.port}/bytes/3", proxy=proxy.url)
        self.assertEqual(proc.stdout, b"403")
        stderr = proxy.stderr_text()
        self.assertIn("[proxy] idle_timeout_s changed: it takes effect after a restart", stderr)
        self.assertNotIn("[pac] direct changed", stderr)
        self.assertNotIn("[auth] htpasswd changed", stderr)

    def test_a_broken_config_on_sighup_keeps_everything(self):
        proxy = harness.Handoff(pac={"direct": "*.before.test"})
        self.addCleanup(proxy.close)
        with open(proxy.conf_path, "a") as f:
            f.write("[pac]\nnonsense = 1\n")
        proxy.signal(signal.SIGHUP)
        harness.wait_until(lambda: "only the policy was reloaded" in proxy.stderr_text(), 10,
                           what="the error reported")
        self.assertIn("unknown key 'nonsense'", proxy.stderr_text())
        self.assertIn("before.test", harness.curl(f"{proxy.url}/proxy.pac").stdout.decode())


class TakeoverTest(OriginTest):
    def start_old(self, **keys):
        proxy_keys = {"workers": "2", "drain_timeout_s": "20"}
        proxy_keys.update(keys)
        proxy = harness.Handoff(proxy=proxy_keys, admin={"listen": f"{HOST}:{harness.free_port()}",
                                                        "control_socket": "control.sock"})
        self.addCleanup(proxy.close)
        return proxy

    def start_new(self, proxy: harness.Handoff, name: str = "handoff-new"):
        new = harness.ManagedProcess([proxy.binary, "-c", proxy.conf_path, "--takeover"],
                                     proxy.dir, name)
        self.addCleanup(new.stop)
        return new

    def test_takeover_under_a_client_loop_refuses_and_resets_nothing(self):
        # Without detection a CONNECT is a blind relay (an idle HTTP keep-alive connection
        # would rightly be closed at a stop).
        old = self.start_old(protocol_detection="no")
        control = os.path.join(old.dir, "control.sock")
        self.assertEqual(os.stat(control).st_mode & 0o777, 0o600)
        url = f"http://{self.authority}/bytes/100"
        counts = {"ok": 0, "refused": 0, "reset": 0, "other": 0}
        other = []
        stop = threading.Event()
        lock = threading.Lock()

        def loop():
            deadline = time.monotonic() + 90
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    key = "ok" if get(old.port, url, source=HOST) == 200 else "other"
                except ConnectionRefusedError:
                    key = "refused"
                except (ConnectionResetError, BrokenPipeError):
                    key = "reset"
                except Exception as e:  # a closed connection without an answer, a timeout
                    key = "other"
                    other.append(repr(e))
                with lock:
                    counts[key] += 1

        # A tunnel opened before the takeover, used across it.
        tunnel = harness.connect_tunnel(old, HOST, self.origin.port)
        self.addCleanup(tunnel.close)
        reader = origin.Reader(tunnel)

        def through_tunnel() -> int:
            tunnel.sendall(f"GET /bytes/7 HTTP/1.1\r\nHost: {self.authority}\r\n\r\n".encode())
            r = cs.read_response(reader)
            return r.status if len(r.body) == 7 else -1

        self.assertEqual(through_tunnel(), 200)
        clients = [threading.Thread(target=loop) for _ in range(4)]
        for t in clients:
            t.start()
        try:
            time.sleep(1)
            new = self.start_new(old)
            harness.wait_until(lambda: "now accepts on our sockets" in old.stderr_text(), 15,
                               what="the old instance hands over")
            for _ in range(5):
                time.sleep(0.3)
                self.assertEqual(through_tunnel(), 200)
            self.assertTrue(old.alive())  # draining: the tunnel is still open
            tunnel.close()
            self.assertEqual(old.process.proc.wait(15), 0)
            time.sleep(1)
        finally:
            stop.set()
            for t in clients:
                t.join(30)
        self.assertEqual((counts["refused"], counts["reset"], counts["other"]), (0, 0, 0),
                         (counts, other[:5]))
        self.assertGreater(counts["ok"], 50, counts)
        self.assertTrue(new.alive(), new.describe())
        new_lines = [line for line in new.stdout_text().splitlines() if url in line]
        self.assertGreater(len(new_lines), 5)
        # The successor answers the admin port (health checks) and the control socket.
        self.assertEqual(harness.curl(f"{old.admin_url}/healthz").stdout, b"ok\n")
        self.assertEqual(os.stat(control).st_mode & 0o777, 0o600)
        # And can itself be taken over.
        newer = self.start_new(old, "handoff-newer")
        harness.wait_until(lambda: not new.alive(), 15, what="the second takeover")
        self.assertEqual(new.proc.returncode, 0)
        self.assertEqual(get(old.port, url, source=HOST), 200)
        self.assertTrue(newer.alive())

    def test_an_open_sip_session_keeps_working_across_a_takeover(self):
        sip = servers.start_kamailio()
        self.addCleanup(sip.stop)
        old = self.start_old()
        t = harness.connect_tunnel(old, HOST, sip.port)
        self.addCleanup(t.close)
        call_id = os.urandom(8).hex()

        def options(cseq: int) -> int:
            t.sendall(wire.sip_request("OPTIONS", "TCP", call_id=call_id, cseq=cseq))
            return wire.sip_status(wire.recv_sip_message(t)[0])

        self.assertEqual(options(1), 200)
        self.assertEqual(old.sessions()[0]["state"], "sip")
        new = self.start_new(old)
        harness.wait_until(lambda: "now accepts on our sockets" in old.stderr_text(), 15,
                           what="the old instance hands over")
        for cseq in range(2, 6):
            time.sleep(0.2)
            self.assertEqual(options(cseq), 200)
        self.assertTrue(old.alive())
        t.close()
        self.assertEqual(old.process.proc.wait(15), 0)
        line = next(e for e in old.log_lines() if e.get("protocol") == "sip")
        self.assertEqual(line["messages"].get("OPTIONS"), 5, line)
        self.assertTrue(new.alive())

    def test_a_bad_configuration_fails_before_touching_the_old_instance(self):
        old = self.start_old()
        with open(old.policy_path, "w") as f:
            f.write("<proxy>\n  nonsense.condition=1 DENY\n")
        new = self.start_new(old)
        self.assertNotEqual(new.proc.wait(15), 0)
        self.assertIn("policy.cpl:2", new.stderr_text())
        self.assertNotIn("takeover", old.stderr_text())
        self.assertEqual(get(old.port, f"http://{self.authority}/bytes/1", source=HOST), 200)
        self.assertTrue(old.alive())

    def test_takeover_without_a_running_instance_fails(self):
        old = self.start_old()
        old.stop()
        new = self.start_new(old)
        self.assertNotEqual(new.proc.wait(15), 0)
        self.assertIn("cannot reach the running instance", new.stderr_text())


class NotifyTest(unittest.TestCase):
    def test_ready_reloading_ready_stopping_in_order(self):
        tmp = harness.tempfile.mkdtemp(prefix="notify-")
        self.addCleanup(harness.shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "notify.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(listener.close)
        listener.bind(path)
        listener.settimeout(10)
        proxy = harness.Handoff(env={"NOTIFY_SOCKET": path})
        self.addCleanup(proxy.close)
        messages = []

        def next_state() -> str:
            while True:
                text = listener.recv(4096).decode()
                messages.append(text)
                if not text.startswith("STATUS="):
                    return text

        self.assertEqual(next_state(), "READY=1")
        proxy.signal(signal.SIGHUP)
        reloading = next_state()
        self.assertRegex(reloading, r"^RELOADING=1\nMONOTONIC_USEC=\d+$")
        usec = int(reloading.split("=")[-1])
        self.assertLess(abs(usec / 1e6 - time.monotonic()), 5)
        self.assertEqual(next_state(), "READY=1")
        held = cs.connect(proxy.host, proxy.port)  # an active session: a head not yet complete
        held.sendall(b"GET http://example.test/ HTTP/1.1\r\n")
        self.addCleanup(held.close)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = listener.recv(4096).decode()
            messages.append(text)
            if text == "STATUS=1 active session":
                break
        self.assertEqual(messages[-1], "STATUS=1 active session", messages)
        proxy.signal(signal.SIGTERM)
        self.assertEqual(next_state(), "STOPPING=1")
        held.close()


if __name__ == "__main__":
    unittest.main()
