"""The private KDC works end to end: curl gets a ticket for the proxy and sends a SPNEGO token.

A plain Python proxy stub answers 407 with `Proxy-Authenticate: Negotiate` and records the
`Proxy-Authorization` that comes back; no handoff is involved.
"""

import base64
import http.server
import os
import subprocess
import threading
import unittest

from harness import HOST, clean_env, free_port
from kdc import Realm, skip_unless_kdc

SPNEGO_OID = bytes.fromhex("06062b0601050502")
KRB5_OID = bytes.fromhex("06092a864886f712010202")


class _Stub(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):
        value = self.headers.get("Proxy-Authorization")
        _Stub.seen.append(value)
        if value is None:
            self.send_response(407)
            self.send_header("Proxy-Authenticate", "Negotiate")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@skip_unless_kdc
class KdcHarness(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.realm = Realm().__enter__()
        cls.port = free_port()
        cls.server = http.server.ThreadingHTTPServer((HOST, cls.port), _Stub)
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        cls.realm.stop()

    def curl_negotiate(self, env: dict) -> subprocess.CompletedProcess:
        _Stub.seen = []
        cmd = ["curl", "-sS", "-4", "--max-time", "20", "--proxy-negotiate", "-U", ":",
               "--proxy", f"http://localhost:{self.port}", "-o", "/dev/null",
               "-w", "%{http_code}", "http://origin.invalid/"]
        return subprocess.run(cmd, capture_output=True, text=True, env=clean_env(env), timeout=40)

    def test_curl_sends_a_spnego_token_for_http_at_localhost(self):
        env = self.realm.kinit("alice")
        p = self.curl_negotiate(env)
        self.assertEqual(p.stdout, "200", p.stderr + self.realm.describe())
        values = [v for v in _Stub.seen if v]
        self.assertEqual(len(values), 1, _Stub.seen)
        scheme, _, b64 = values[0].partition(" ")
        self.assertEqual(scheme, "Negotiate")
        token = base64.b64decode(b64, validate=True)
        self.assertEqual(token[0], 0x60)  # GSS-API initial context token
        self.assertIn(SPNEGO_OID, token[:16])
        self.assertIn(KRB5_OID, token)
        # the KDC issued the service ticket the token carries
        full = dict(os.environ)
        full.update(env)
        klist = subprocess.run(["klist"], capture_output=True, text=True, env=full, timeout=20)
        self.assertIn(f"HTTP/localhost@{self.realm.realm}", klist.stdout)

    def test_without_a_ticket_no_token_is_sent(self):
        p = self.curl_negotiate(self.realm.env())
        self.assertEqual(p.stdout, "407", p.stderr)
        self.assertTrue(all(v is None for v in _Stub.seen), _Stub.seen)

    def test_a_wrong_password_gets_no_ticket(self):
        with self.assertRaises(RuntimeError):
            self.realm.kinit("bob", password="not-bobs")


if __name__ == "__main__":
    unittest.main()
