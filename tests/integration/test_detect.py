"""Protocol detection after CONNECT and the SIP, TURN and MS-TURN passthrough handlers
(SPEC §5, the policy's checkpoint 3 of §7, the admin /sessions view of §8), against real
servers: Kamailio, coturn, an MS-TURN server exact on the wire, and small loopback servers.
"""

import json
import os
import random
import socket
import socketserver
import time
import unittest

import certs
import harness
from background_server import BackgroundServer
import origin
import servers
import wire

HOST = harness.HOST
IO_TIMEOUT_S = 10.0

ALLOW_ALL = "<proxy>\n  ALLOW\n"
# The seed's Step 3: deny what is neither TLS nor understood by a handler.
STEP3_POLICY = "<proxy>\n  ALLOW\n<proxy>\n  DENY client.protocol=!ssl tunneled=yes\n"
STEP3_DENY_LINE = 4

SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1\r\n"
SMTP_BANNER = b"220 smtp.test ESMTP\r\n"


# ---- client side of a CONNECT tunnel -----------------------------------------------------


class Tunnel:
    """A client socket through the proxy's CONNECT; bytes read past the 200 are kept, so
    wire's readers (which only call .recv) see the stream exactly as the origin sent it."""

    def __init__(self, proxy: harness.Handoff, host: str, port: int):
        self.target = f"{host}:{port}"
        self.sock = socket.create_connection((proxy.host, proxy.port), timeout=IO_TIMEOUT_S)
        self.buffer = b""
        self.sock.sendall(f"CONNECT {self.target} HTTP/1.1\r\nHost: {self.target}\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buffer.lstrip(b"\r\n"):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"proxy closed during CONNECT; got {self.buffer!r}")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if self.status_line.split(" ")[1:2] != ["200"]:
            raise AssertionError(f"CONNECT {self.target} answered {self.status_line!r}")

    def recv(self, n: int) -> bytes:
        if self.buffer:
            data, self.buffer = self.buffer[:n], self.buffer[n:]
            return data
        return self.sock.recv(n)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        return wire.recv_exact(self, n)

    def recv_sip_message(self) -> tuple:
        """Like wire.recv_sip_message, but bytes after the message stay for the next read."""
        while b"\r\n\r\n" not in self.buffer.lstrip(b"\r\n"):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"peer closed before a whole SIP head: {self.buffer!r}")
            self.buffer += chunk
        # RFC 5626 keep-alive pongs (CRLF) may come before the message.
        head, self.buffer = self.buffer.lstrip(b"\r\n").split(b"\r\n\r\n", 1)
        lines = head.decode("utf-8", "replace").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", headers.get("l", "0")))
        return lines[0], headers, self.recv_exact(length)

    def read_until_closed(self, timeout: float = IO_TIMEOUT_S) -> bytes:
        """Everything the proxy sends until it closes; fails if it stays open past timeout."""
        self.sock.settimeout(timeout)
        data = self.buffer
        self.buffer = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
        except ConnectionResetError:
            return data
        except socket.timeout:
            raise AssertionError(
                f"the proxy kept the tunnel to {self.target} open for {timeout}s") from None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ---- loopback servers --------------------------------------------------------------------


class LoopbackServer(BackgroundServer):
    """Records every byte it receives; optionally sends a banner first and echoes.

    compressed_sip: answer the first SIP message (a NEGOTIATE) with 200 echoing its
    Compression header, then send `after_negotiate` and echo whatever follows.
    """

    def __init__(self, banner: bytes = b"", echo: bool = False, compressed_sip: bool = False,
                 after_negotiate: bytes = b""):
        self.banner = banner
        self.echo = echo
        self.compressed_sip = compressed_sip
        self.after_negotiate = after_negotiate
        self.received = []
        self.connections = 0
        super().__init__((HOST, 0), _LoopbackHandler)
        self.start()

    def received_bytes(self) -> bytes:
        with self.lock:
            return b"".join(self.received)


class _LoopbackHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(30)
        server = self.server
        with server.lock:
            server.connections += 1
        server.track(sock)
        try:
            if server.banner:
                sock.sendall(server.banner)
            if server.compressed_sip:
                self.negotiate(sock)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                with server.lock:
                    server.received.append(chunk)
                if server.echo:
                    sock.sendall(chunk)
        except (OSError, ConnectionError, ValueError):
            pass
        finally:
            server.untrack(sock)

    def negotiate(self, sock) -> None:
        line, headers, _ = wire.recv_sip_message(sock)
        with self.server.lock:
            self.server.received.append(line.encode())
        answer = (
            "SIP/2.0 200 OK\r\n"
            f"Via: {headers.get('via', '')}\r\n"
            f"From: {headers.get('from', '')}\r\n"
            f"To: {headers.get('to', '')};tag=srv\r\n"
            f"Call-ID: {headers.get('call-id', '')}\r\n"
            f"CSeq: {headers.get('cseq', '')}\r\n"
            f"Compression: {headers.get('compression', '')}\r\n"
            "Content-Length: 0\r\n\r\n")
        sock.sendall(answer.encode() + self.server.after_negotiate)


def loopback_server(test: unittest.TestCase, **kwargs) -> LoopbackServer:
    server = LoopbackServer(**kwargs)
    test.addCleanup(server.stop)
    return server


# ---- shared assertions -------------------------------------------------------------------


def fixed_random_bytes(n: int) -> bytes:
    """Bytes that look like nothing: seeded, and starting with a byte no matcher accepts."""
    return b"\xa5" + random.Random(4242).randbytes(n - 1)


def opaque_binary(n: int, seed: int) -> bytes:
    """Binary bytes that could never be framed as SIP (NULs, bare LFs, high bytes)."""
    return b"\x00\x0a\xff\x10" + random.Random(seed).randbytes(n - 4)


class DetectTestCase(unittest.TestCase):
    def start_proxy(self, policy_text: str = ALLOW_ALL, **sections) -> harness.Handoff:
        proxy = harness.Handoff(policy_text=policy_text, **sections)
        self.addCleanup(proxy.close)
        return proxy

    def tunnel(self, proxy: harness.Handoff, port: int, host: str = HOST) -> Tunnel:
        t = Tunnel(proxy, host, port)
        self.addCleanup(t.close)
        return t

    def log_for(self, proxy: harness.Handoff, target: str, timeout: float = 15.0) -> dict:
        """The tunnel's access-log line (one per CONNECT, written when it ends)."""
        return proxy.wait_log(lambda e: e.get("target") == target, timeout)

    def session_for(self, proxy: harness.Handoff, target: str, predicate=lambda s: True,
                    timeout: float = 10.0) -> dict:
        """The open session to target, once predicate(session) holds."""
        last = []

        def find():
            last[:] = proxy.sessions()
            return next((s for s in last if s.get("target") == target and predicate(s)), None)

        try:
            return harness.wait_until(find, timeout, what="session entry")
        except TimeoutError:
            raise AssertionError(
                f"no session to {target} matching within {timeout}s; /sessions:\n"
                + json.dumps(last, indent=1)) from None

    def assert_passthrough_log(self, entry: dict, protocol: str) -> None:
        self.assertEqual(entry.get("protocol"), protocol, entry)
        self.assertIs(entry.get("tunneled"), False, entry)
        self.assertEqual(entry.get("action"), "allowed", entry)

    def assert_messages(self, holder: dict, expected: dict) -> None:
        """holder's message counters include expected (a log line or a session entry)."""
        messages = holder.get("messages") or {}
        for name, count in expected.items():
            self.assertEqual(messages.get(name), count, holder)

    def assert_blind_tunnel_log(self, entry: dict) -> None:
        self.assertEqual(entry.get("protocol"), "tcp", entry)
        self.assertIs(entry.get("tunneled"), True, entry)
        self.assertEqual(entry.get("action"), "allowed", entry)

    def assert_denied_at_checkpoint3(self, proxy: harness.Handoff, sink: LoopbackServer,
                                     first_bytes: bytes) -> None:
        t = self.tunnel(proxy, sink.port)
        t.sendall(first_bytes)
        self.assertEqual(t.read_until_closed(), b"", "the proxy answered a denied tunnel")
        entry = self.log_for(proxy, t.target)
        self.assertEqual(entry.get("action"), "denied", entry)
        self.assertEqual(entry.get("protocol"), "tcp", entry)
        self.assertIs(entry.get("tunneled"), True, entry)
        rule = entry.get("rule") or ""
        self.assertTrue(rule.endswith(f"policy.cpl:{STEP3_DENY_LINE}"), entry)
        self.assertEqual(sink.received_bytes(), b"", "denied bytes reached the origin")


# ---- SIP against Kamailio ----------------------------------------------------------------


class SipKamailioTest(DetectTestCase):
    @classmethod
    def setUpClass(cls):
        cls.sip = servers.start_kamailio()
        cls.addClassCleanup(cls.sip.stop)

    def sip_exchange(self, t: Tunnel, request: bytes) -> tuple:
        t.sendall(request)
        return t.recv_sip_message()

    def test_options_and_register_pass_and_are_counted(self):
        proxy = self.start_proxy()
        t = self.tunnel(proxy, self.sip.port)
        line, headers, _ = self.sip_exchange(t, wire.sip_request("OPTIONS", "TCP"))
        self.assertEqual(wire.sip_status(line), 200, line)
        self.assertEqual(headers.get("cseq"), "1 OPTIONS")
        line, headers, _ = self.sip_exchange(t, wire.sip_request("REGISTER", "TCP", cseq=2))
        self.assertEqual(wire.sip_status(line), 200, line)
        self.assertIn("expires=", headers.get("contact", ""))

        session = self.session_for(
            proxy, t.target, lambda s: (s.get("messages") or {}).get("2xx") == 2)
        self.assertEqual(session.get("protocol"), "sip", session)
        self.assertIs(session.get("tunneled"), False, session)
        self.assertIs(session.get("intercepted"), False, session)
        self.assert_messages(session, {"OPTIONS": 1, "REGISTER": 1})
        self.assertGreater(session.get("bytes_from_client", 0), 0, session)
        self.assertGreater(session.get("bytes_from_server", 0), 0, session)

        t.close()
        entry = self.log_for(proxy, t.target)
        self.assert_passthrough_log(entry, "sip")
        self.assert_messages(entry, {"OPTIONS": 1, "REGISTER": 1, "2xx": 2})

    def test_keepalives_split_writes_and_compact_length_are_framed(self):
        proxy = self.start_proxy()
        t = self.tunnel(proxy, self.sip.port)
        body = b"hello over a compact length"
        request = wire.sip_request("MESSAGE", "TCP", body=body).replace(
            f"Content-Length: {len(body)}".encode(), f"l: {len(body)}".encode())
        # A keep-alive ping first, then the request in pieces that cut the request line and
        # the body, so detection and framing both have to wait for more bytes.
        pieces = [b"\r\n\r\n" + request[:5], request[5:60], request[60:-10], request[-10:]]
        for piece in pieces:
            t.sendall(piece)
            time.sleep(0.05)
        line, headers, _ = t.recv_sip_message()
        self.assertEqual(wire.sip_status(line), 200, line)
        self.assertEqual(headers.get("cseq"), "1 MESSAGE")
        line, _, _ = self.sip_exchange(t, wire.sip_request("OPTIONS", "TCP", cseq=2))
        self.assertEqual(wire.sip_status(line), 200, line)
        t.close()
        entry = self.log_for(proxy, t.target)
        self.assert_passthrough_log(entry, "sip")
        self.assert_messages(entry, {"MESSAGE": 1, "OPTIONS": 1, "2xx": 2})

    def test_sip_passes_the_step3_deny_rule(self):
        proxy = self.start_proxy(STEP3_POLICY)
        t = self.tunnel(proxy, self.sip.port)
        line, _, _ = self.sip_exchange(t, wire.sip_request("OPTIONS", "TCP"))
        self.assertEqual(wire.sip_status(line), 200, line)
        t.close()
        self.assert_passthrough_log(self.log_for(proxy, t.target), "sip")

    def test_config_protocol_detection_off_makes_sip_a_blind_tunnel(self):
        proxy = self.start_proxy(proxy={"protocol_detection": "no"})
        t = self.tunnel(proxy, self.sip.port)
        line, _, _ = self.sip_exchange(t, wire.sip_request("OPTIONS", "TCP"))
        self.assertEqual(wire.sip_status(line), 200, line)
        t.close()
        self.assert_blind_tunnel_log(self.log_for(proxy, t.target))

    def test_policy_detect_protocol_none_makes_sip_a_blind_tunnel(self):
        proxy = self.start_proxy("<proxy>\n  ALLOW detect_protocol(none)\n")
        t = self.tunnel(proxy, self.sip.port)
        line, _, _ = self.sip_exchange(t, wire.sip_request("OPTIONS", "TCP"))
        self.assertEqual(wire.sip_status(line), 200, line)
        t.close()
        self.assert_blind_tunnel_log(self.log_for(proxy, t.target))

    def test_negotiate_lz77_answered_200_marks_the_session_compressed(self):
        proxy = self.start_proxy()
        t = self.tunnel(proxy, self.sip.port)
        line, headers, _ = self.sip_exchange(t, wire.sip_request(
            "NEGOTIATE", "TCP", extra_headers=["Compression: LZ77-8K"]))
        self.assertEqual(wire.sip_status(line), 200, line)
        self.assertEqual(headers.get("compression"), "LZ77-8K")
        session = self.session_for(proxy, t.target, lambda s: s.get("compressed") is True)
        self.assertEqual(session.get("protocol"), "sip", session)
        t.close()
        entry = self.log_for(proxy, t.target)
        self.assert_passthrough_log(entry, "sip")
        self.assertIs(entry.get("compressed"), True, entry)


# ---- SIP compression and protocol errors against loopback servers ------------------------


class SipLoopbackTest(DetectTestCase):
    def test_after_negotiate_lz77_binary_is_relayed_opaque_both_ways(self):
        from_server = opaque_binary(3000, seed=1)
        server = loopback_server(self, echo=True, compressed_sip=True,
                                 after_negotiate=from_server)
        proxy = self.start_proxy()
        t = self.tunnel(proxy, server.port)
        t.sendall(wire.sip_request("NEGOTIATE", "TLS", uri="sip:127.0.0.1:5061",
                                   extra_headers=["Compression: LZ77-8K"]))
        line, headers, _ = t.recv_sip_message()
        self.assertEqual(wire.sip_status(line), 200, line)
        self.assertEqual(headers.get("compression"), "LZ77-8K")
        self.assertEqual(t.recv_exact(len(from_server)), from_server)

        from_client = opaque_binary(5000, seed=2)
        t.sendall(from_client)
        self.assertEqual(t.recv_exact(len(from_client)), from_client)
        session = self.session_for(proxy, t.target, lambda s: s.get("compressed") is True)
        self.assertEqual(session.get("protocol"), "sip", session)
        self.assertIs(session.get("tunneled"), False, session)
        self.assertTrue(server.received_bytes().endswith(from_client))

        t.close()
        entry = self.log_for(proxy, t.target)
        self.assert_passthrough_log(entry, "sip")
        self.assertIs(entry.get("compressed"), True, entry)
        self.assertFalse(entry.get("error"), entry)

    # A request line detection accepts as SIP, then a head the SIP handler cannot frame.
    MALFORMED_SIP = (b"OPTIONS sip:test@127.0.0.1 SIP/2.0\r\n"
                     b"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKbad\r\n"
                     b"this header line has no colon\r\n"
                     b"Content-Length: twelve\r\n"
                     b"\r\n")

    def test_malformed_sip_without_tunnel_on_protocol_error_is_closed(self):
        server = loopback_server(self, echo=True)
        proxy = self.start_proxy(proxy={"tunnel_on_protocol_error": "no"})
        t = self.tunnel(proxy, server.port)
        t.sendall(self.MALFORMED_SIP)
        echoed = t.read_until_closed()
        self.assertNotEqual(echoed, self.MALFORMED_SIP, "the malformed stream was relayed")
        entry = self.log_for(proxy, t.target)
        self.assertEqual(entry.get("action"), "error", entry)
        self.assertIn("SIP", entry.get("error") or "", entry)

    def assert_malformed_sip_tunnelled(self, proxy: harness.Handoff) -> None:
        server = loopback_server(self, echo=True)
        t = self.tunnel(proxy, server.port)
        t.sendall(self.MALFORMED_SIP)
        self.assertEqual(t.recv_exact(len(self.MALFORMED_SIP)), self.MALFORMED_SIP)
        more = b"still tunnelled\n"
        t.sendall(more)
        self.assertEqual(t.recv_exact(len(more)), more)
        self.assertEqual(server.received_bytes(), self.MALFORMED_SIP + more)
        t.close()
        self.assert_blind_tunnel_log(self.log_for(proxy, t.target))

    def test_malformed_sip_with_policy_tunnel_on_protocol_error_falls_back_to_tunnel(self):
        proxy = self.start_proxy("<proxy>\n  ALLOW tunnel_on_protocol_error(yes)\n",
                                 proxy={"tunnel_on_protocol_error": "no"})
        self.assert_malformed_sip_tunnelled(proxy)

    def test_malformed_sip_with_config_tunnel_on_protocol_error_falls_back_to_tunnel(self):
        proxy = self.start_proxy(proxy={"tunnel_on_protocol_error": "yes"})
        self.assert_malformed_sip_tunnelled(proxy)


# ---- TURN against coturn -----------------------------------------------------------------


class TurnCoturnTest(DetectTestCase):
    @classmethod
    def setUpClass(cls):
        cls.turn = servers.start_coturn()
        cls.addClassCleanup(cls.turn.stop)

    def allocate_through(self, proxy: harness.Handoff) -> Tunnel:
        t = self.tunnel(proxy, self.turn.port)
        txid = os.urandom(12)
        t.sendall(wire.stun_allocate_request(txid))
        answer = wire.parse_stun(wire.recv_stun(t))
        self.assertEqual(answer["type"], wire.STUN_ALLOCATE_ERROR)
        self.assertEqual(answer["cookie"], wire.STUN_MAGIC)
        self.assertEqual(answer["txid"], txid)
        self.assertEqual(wire.stun_error_code(answer["attrs"][wire.ATTR_ERROR_CODE][0]), 401)
        self.assertEqual(answer["attrs"][wire.ATTR_REALM][0], self.turn.realm.encode())
        self.assertTrue(answer["attrs"][wire.ATTR_NONCE][0])
        return t

    def test_allocate_is_answered_401_with_realm_and_nonce(self):
        proxy = self.start_proxy()
        t = self.allocate_through(proxy)
        session = self.session_for(proxy, t.target,
                                   lambda s: (s.get("messages") or {}).get("Allocate") == 1)
        self.assertEqual(session.get("protocol"), "turn", session)
        self.assertIs(session.get("tunneled"), False, session)
        t.close()
        entry = self.log_for(proxy, t.target)
        self.assert_passthrough_log(entry, "turn")
        self.assertEqual((entry.get("messages") or {}).get("Allocate"), 1, entry)

    def test_turn_passes_the_step3_deny_rule(self):
        proxy = self.start_proxy(STEP3_POLICY)
        t = self.allocate_through(proxy)
        t.close()
        self.assert_passthrough_log(self.log_for(proxy, t.target), "turn")


# ---- MS-TURN against the MS-TURN test server ---------------------------------------------


class MsTurnTest(DetectTestCase):
    DATA_SIZES = (1, 1400, 65535)

    def setUp(self):
        self.server = servers.start_msturn_server()
        self.addCleanup(self.server.stop)
        # Keep every ServerHello the server sends, to compare with what the client receives.
        self.server_hellos = []
        make_hello = wire.pseudo_tls_server_hello

        def recording_hello(*args, **kwargs):
            hello = make_hello(*args, **kwargs)
            self.server_hellos.append(hello)
            return hello

        wire.pseudo_tls_server_hello = recording_hello
        self.addCleanup(setattr, wire, "pseudo_tls_server_hello", make_hello)

    def run_session(self, proxy: harness.Handoff) -> Tunnel:
        t = self.tunnel(proxy, self.server.port)
        t.sendall(wire.pseudo_tls_client_hello())
        answer = t.recv_exact(wire.PSEUDO_TLS_SERVER_HELLO_LEN)
        self.assertEqual(len(self.server_hellos), 1)
        self.assertEqual(answer, self.server_hellos[0])
        self.assertTrue(wire.is_pseudo_tls_server_hello(answer), answer.hex())

        txid = os.urandom(16)
        t.sendall(wire.ms_turn_allocate_frame(txid=txid))
        frame_type, payload = wire.recv_ms_turn_frame(t)
        self.assertEqual(frame_type, wire.MS_FRAME_CONTROL)
        reply = wire.parse_ms_turn(payload)
        self.assertEqual(reply["type"], wire.MS_ALLOCATE_ERROR)
        self.assertEqual(reply["txid"], txid)
        self.assertEqual(reply["first_attr"], 0x000F)
        self.assertEqual(wire.stun_error_code(reply["attrs"][wire.MS_ATTR_ERROR_CODE][0]), 401)

        for size in self.DATA_SIZES:
            frame = wire.ms_turn_frame(wire.MS_FRAME_DATA, os.urandom(size))
            t.sendall(frame)
            self.assertEqual(t.recv_exact(len(frame)), frame)
        stats = self.server.stats()
        self.assertEqual((stats["hellos"], stats["control"], stats["data"], stats["errors"]),
                         (1, 1, len(self.DATA_SIZES), 0), stats)
        return t

    def assert_counted(self, holder: dict) -> None:
        messages = holder.get("messages") or {}
        self.assertEqual(messages.get("Allocate"), 1, holder)
        # Each data frame is echoed; counting one direction or both is acceptable.
        self.assertIn(messages.get("data"), (len(self.DATA_SIZES), 2 * len(self.DATA_SIZES)),
                      holder)

    def test_pseudo_tls_allocate_and_data_pass_byte_exact(self):
        proxy = self.start_proxy()
        t = self.run_session(proxy)
        session = self.session_for(
            proxy, t.target, lambda s: (s.get("messages") or {}).get("data", 0) >= 3)
        self.assertEqual(session.get("protocol"), "ms-turn", session)
        self.assertIs(session.get("tunneled"), False, session)
        self.assert_counted(session)
        t.close()
        entry = self.log_for(proxy, t.target)
        self.assert_passthrough_log(entry, "ms-turn")
        self.assert_counted(entry)

    def test_framing_without_pseudo_tls_is_detected_as_ms_turn(self):
        proxy = self.start_proxy(STEP3_POLICY)
        t = self.tunnel(proxy, self.server.port)
        txid = os.urandom(16)
        t.sendall(wire.ms_turn_allocate_frame(txid=txid))
        frame_type, payload = wire.recv_ms_turn_frame(t)
        self.assertEqual(frame_type, wire.MS_FRAME_CONTROL)
        reply = wire.parse_ms_turn(payload)
        self.assertEqual(reply["type"], wire.MS_ALLOCATE_ERROR)
        self.assertEqual(reply["txid"], txid)
        self.assertEqual(self.server.stats()["hellos"], 0)
        t.close()
        entry = self.log_for(proxy, t.target)
        self.assert_passthrough_log(entry, "ms-turn")
        self.assertEqual((entry.get("messages") or {}).get("Allocate"), 1, entry)

    def test_ms_turn_passes_the_step3_deny_rule(self):
        proxy = self.start_proxy(STEP3_POLICY)
        t = self.run_session(proxy)
        t.close()
        entry = self.log_for(proxy, t.target)
        self.assert_passthrough_log(entry, "ms-turn")
        self.assert_counted(entry)


# ---- Step 3 rule, TLS left untouched, server-first protocols -----------------------------


class Step3AndTunnelTest(DetectTestCase):
    def test_random_bytes_are_denied_without_reaching_the_origin(self):
        sink = loopback_server(self)
        proxy = self.start_proxy(STEP3_POLICY, proxy={"detect_timeout_ms": "1000"})
        self.assert_denied_at_checkpoint3(proxy, sink, fixed_random_bytes(300))

    def test_ssh_banner_is_denied_without_reaching_the_origin(self):
        sink = loopback_server(self)
        proxy = self.start_proxy(STEP3_POLICY, proxy={"detect_timeout_ms": "1000"})
        self.assert_denied_at_checkpoint3(proxy, sink, SSH_BANNER)

    def test_untouched_tls_passes_the_step3_deny_rule(self):
        c = certs.test_certs()
        tls_origin = origin.start_origin(tls_cert=c.server_cert, tls_key=c.server_key)
        self.addCleanup(tls_origin.stop)
        proxy = self.start_proxy(STEP3_POLICY)
        # Verifying against the test CA proves the origin's own certificate came through.
        proc = harness.curl("--cacert", c.ca_bundle, f"https://localhost:{tls_origin.port}/",
                            proxy=proxy.url)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, b"hello from origin\n")
        entry = self.log_for(proxy, f"localhost:{tls_origin.port}")
        self.assertEqual(entry.get("protocol"), "ssl", entry)
        self.assertIs(entry.get("tunneled"), True, entry)
        self.assertIs(entry.get("intercepted"), False, entry)
        self.assertEqual(entry.get("action"), "allowed", entry)
        self.assertEqual(entry.get("sni"), "localhost", entry)

    def test_server_first_protocol_is_tunnelled_after_the_timeout(self):
        server = loopback_server(self, banner=SMTP_BANNER, echo=True)
        proxy = self.start_proxy(proxy={"detect_timeout_ms": "300"})
        t = self.tunnel(proxy, server.port)
        self.assertEqual(t.recv_exact(len(SMTP_BANNER)), SMTP_BANNER)
        t.sendall(b"EHLO client.test\r\n")
        self.assertEqual(t.recv_exact(18), b"EHLO client.test\r\n")
        t.close()
        self.assert_blind_tunnel_log(self.log_for(proxy, t.target))


if __name__ == "__main__":
    unittest.main()
