"""Bulk blind tunnels: byte-exact both ways, half-close passed on, counters in the log.

Large tunnels leave the user-space relay for the zero-copy path after their first bytes, so
these transfers cross both paths and the switch between them.
"""

import hashlib
import os
import socket
import threading
import unittest

import harness

HOST = harness.HOST
SIZE = 24 * 1024 * 1024
TIMEOUT_S = 60


class HalfCloseEcho:
    """Echoes everything; on the client's FIN it finishes echoing, then sends its own FIN."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(TIMEOUT_S)
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                self.received += len(data)
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def close(self):
        self.sock.close()


class BulkTunnelTest(unittest.TestCase):
    def run_transfer(self, proxy_options: dict, policy: str):
        echo = HalfCloseEcho()
        self.addCleanup(echo.close)
        with harness.Handoff(policy_text=policy, proxy=proxy_options) as proxy:
            payload = os.urandom(SIZE)
            sock = harness.connect_tunnel(proxy, HOST, echo.port, timeout=TIMEOUT_S)
            received = bytearray()

            def reader():
                while True:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    received.extend(data)

            t = threading.Thread(target=reader)
            t.start()
            view = memoryview(payload)
            for off in range(0, SIZE, 1 << 20):
                sock.sendall(view[off:off + (1 << 20)])
            sock.shutdown(socket.SHUT_WR)
            t.join(TIMEOUT_S)
            self.assertFalse(t.is_alive(), "the echo's FIN never came back through the tunnel")
            sock.close()
            self.assertEqual(len(received), SIZE)
            self.assertEqual(hashlib.sha256(received).hexdigest(), hashlib.sha256(payload).hexdigest())
            line = proxy.wait_log(lambda e: e.get("target") == f"{HOST}:{echo.port}")
            self.assertEqual(line["protocol"], "tcp")
            self.assertTrue(line["tunneled"])
            self.assertEqual(line["action"], "allowed", line)
            self.assertEqual(line["bytes_from_client"], SIZE)
            self.assertEqual(line["bytes_from_server"], SIZE)
            self.assertNotIn("error", line)

    def test_blind_tunnel_without_detection(self):
        self.run_transfer({"protocol_detection": "no"}, "<proxy>\n  ALLOW\n")

    def test_unknown_protocol_after_detection(self):
        # Random bytes are detected as tcp and tunnelled; the first flight is held and replayed.
        self.run_transfer({}, "<proxy>\n  ALLOW\n")


if __name__ == "__main__":
    unittest.main()
