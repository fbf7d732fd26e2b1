"""An MS-TURN server over TCP that is exact on the wire and nothing more.

It reads the 50-byte pseudo-TLS ClientHello ([MS-TURN] 2.1.1) and answers with the 83-byte
ServerHello+ServerHelloDone record; a client that starts straight with framing is accepted too,
as real servers do. It then reads frames `Type(02|03) 00 Length(2)` ([MS-TURN] 2.1.4):
  - a control frame holding an Allocate without USERNAME gets an Allocate error 401 with REALM
    and NONCE; with USERNAME, an Allocate response with MAPPED-ADDRESS and LIFETIME;
  - any other control request gets a success response of its method;
  - data frames are echoed back unchanged.
Anything that breaks the format closes the connection.

Run it: python3 msturn_server.py --port P   (prints "ready PORT"), or import start_msturn_server().
"""

import argparse
import os
import socket
import socketserver
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import wire  # noqa: E402
from background_server import BackgroundServer  # noqa: E402

REALM = b"handoff.test"


class ProtocolError(Exception):
    pass


class MsTurnServer(BackgroundServer):

    def __init__(self, host="127.0.0.1", port=0):
        self.counts = {"connections": 0, "hellos": 0, "control": 0, "data": 0, "errors": 0}
        super().__init__((host, port), MsTurnHandler)
        self.host = host

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def stats(self) -> dict:
        with self.lock:
            return dict(self.counts)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class MsTurnHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(60)
        server = self.server
        server.count("connections")
        server.track(sock)
        try:
            first = wire.recv_exact(sock, 4)
            if first == wire.pseudo_tls_client_hello()[:4]:
                hello = first + wire.recv_exact(sock, wire.PSEUDO_TLS_HELLO_LEN - 4)
                if not wire.is_pseudo_tls_client_hello(hello):
                    raise ProtocolError("not the MS-TURN pseudo-TLS ClientHello")
                server.count("hellos")
                sock.sendall(wire.pseudo_tls_server_hello())
                first = None
            while True:
                self.serve_frame(sock, first)
                first = None
        except (ConnectionError, socket.timeout, OSError):
            pass
        except ProtocolError:
            server.count("errors")
        finally:
            server.untrack(sock)

    def serve_frame(self, sock, head: bytes = None) -> None:
        head = head if head is not None else wire.recv_exact(sock, 4)
        frame_type, reserved, length = struct.unpack("!BBH", head)
        if frame_type not in (wire.MS_FRAME_CONTROL, wire.MS_FRAME_DATA) or reserved != 0:
            raise ProtocolError(f"bad frame header {head.hex()}")
        payload = wire.recv_exact(sock, length)
        if frame_type == wire.MS_FRAME_DATA:
            self.server.count("data")
            sock.sendall(head + payload)
            return
        self.server.count("control")
        sock.sendall(wire.ms_turn_frame(wire.MS_FRAME_CONTROL, self.answer(payload)))

    def answer(self, payload: bytes) -> bytes:
        if len(payload) < 28 or struct.unpack("!H", payload[2:4])[0] + 20 != len(payload):
            raise ProtocolError("control frame length does not match its TURN header")
        if payload[20:28] != wire.MS_TURN_COOKIE_ATTR:
            raise ProtocolError("Magic Cookie is not the first attribute")
        msg = wire.parse_ms_turn(payload)
        if msg["type"] & 0x0110:
            raise ProtocolError("only requests are expected from a client")
        txid = msg["txid"]
        if msg["type"] != wire.MS_ALLOCATE:
            return wire.ms_turn_message(0x0100 | msg["type"], b"", txid)
        if wire.MS_ATTR_USERNAME not in msg["attrs"]:
            error = struct.pack("!HBB", 0, 4, 1) + b"Unauthorized"
            attrs = (wire.stun_attr(wire.MS_ATTR_ERROR_CODE, error)
                     + wire.stun_attr(wire.MS_ATTR_REALM, REALM)
                     + wire.stun_attr(wire.MS_ATTR_NONCE, os.urandom(16).hex().encode()))
            return wire.ms_turn_message(wire.MS_ALLOCATE_ERROR, attrs, txid)
        host, port = self.client_address[:2]
        mapped = struct.pack("!BBH", 0, 1, port) + socket.inet_aton(host)
        attrs = (wire.stun_attr(wire.MS_ATTR_MAPPED_ADDRESS, mapped)
                 + wire.stun_attr(wire.MS_ATTR_LIFETIME, struct.pack("!I", 600)))
        return wire.ms_turn_message(wire.MS_ALLOCATE_RESPONSE, attrs, txid)


def start_msturn_server(host="127.0.0.1", port=0) -> MsTurnServer:
    """An MS-TURN server in background threads of this process; call .stop() when done."""
    return MsTurnServer(host, port).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    opts = parser.parse_args()
    server = MsTurnServer(opts.host, opts.port)
    print(f"ready {server.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
