"""Byte-level builders and readers for the protocols the tests speak: STUN/TURN (RFC 5389/5766),
MS-TURN with its pseudo-TLS hello ([MS-TURN] 2.1.1, 2.1.4, 2.2), and SIP over a byte stream.
"""

import os
import socket
import struct

# ---- STUN / TURN (RFC 5389, RFC 5766) ----

STUN_MAGIC = 0x2112A442
STUN_ALLOCATE = 0x0003
STUN_ALLOCATE_ERROR = 0x0113
ATTR_ERROR_CODE = 0x0009
ATTR_REALM = 0x0014
ATTR_NONCE = 0x0015
ATTR_REQUESTED_TRANSPORT = 0x0019
TRANSPORT_UDP = 17


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def stun_attr(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + _pad4(value)


def stun_message(msg_type: int, attrs: bytes = b"", txid: bytes = None) -> bytes:
    """An RFC 5389 message: type, length, magic cookie, 12-byte transaction id, attributes."""
    txid = txid if txid is not None else os.urandom(12)
    return struct.pack("!HHI", msg_type, len(attrs), STUN_MAGIC) + txid + attrs


def stun_allocate_request(txid: bytes = None) -> bytes:
    """A TURN Allocate request without credentials, asking for a UDP relay."""
    transport = struct.pack("!B3x", TRANSPORT_UDP)
    return stun_message(STUN_ALLOCATE, stun_attr(ATTR_REQUESTED_TRANSPORT, transport), txid)


def parse_stun(data: bytes) -> dict:
    """{'type', 'length', 'cookie', 'txid', 'attrs': {type: [value, ...]}} of one STUN message."""
    if len(data) < 20:
        raise ValueError("STUN message shorter than its 20-byte header")
    msg_type, length, cookie = struct.unpack("!HHI", data[:8])
    if len(data) < 20 + length:
        raise ValueError("STUN message shorter than its length field")
    attrs = {}
    offset = 20
    while offset + 4 <= 20 + length:
        kind, size = struct.unpack("!HH", data[offset:offset + 4])
        attrs.setdefault(kind, []).append(data[offset + 4:offset + 4 + size])
        offset += 4 + size + (-size % 4)
    return {"type": msg_type, "length": length, "cookie": cookie, "txid": data[8:20], "attrs": attrs}


def stun_error_code(attr_value: bytes) -> int:
    return (attr_value[2] & 0x07) * 100 + attr_value[3]


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def recv_stun(sock: socket.socket) -> bytes:
    """One whole STUN message from a TCP stream."""
    head = recv_exact(sock, 20)
    length = struct.unpack("!H", head[2:4])[0]
    return head + recv_exact(sock, length)


# ---- MS-TURN ----

MS_TURN_COOKIE_ATTR = bytes.fromhex("000f000472c64bc6")
MS_ATTR_USERNAME = 0x0006
MS_ATTR_ERROR_CODE = 0x0009
MS_ATTR_LIFETIME = 0x000D
MS_ATTR_MAPPED_ADDRESS = 0x0001
MS_ATTR_NONCE = 0x0014  # MS-TURN swaps the RFC numbers of NONCE and REALM
MS_ATTR_REALM = 0x0015
MS_FRAME_CONTROL = 0x02
MS_FRAME_DATA = 0x03
MS_ALLOCATE = 0x0003
MS_ALLOCATE_RESPONSE = 0x0103
MS_ALLOCATE_ERROR = 0x0113

# libnice's fixed random, so the hello is byte-identical to a real client's.
_LIBNICE_RANDOM = bytes.fromhex(
    "c1fcd5a36d93dd7e0b45673fec7985fbbc3fd660c2ce8485081b8121bcaa10fb")

PSEUDO_TLS_HELLO_LEN = 50
PSEUDO_TLS_SERVER_HELLO_LEN = 83


def pseudo_tls_client_hello(random32: bytes = _LIBNICE_RANDOM) -> bytes:
    """The 50-byte pseudo-TLS ClientHello of [MS-TURN] 2.1.1."""
    assert len(random32) == 32
    return (bytes.fromhex("160301002d0100002903 01".replace(" ", "")) + random32
            + bytes.fromhex("00000200180100"))


def pseudo_tls_server_hello(random32: bytes = None, session_id: bytes = None) -> bytes:
    """The 83-byte ServerHello + ServerHelloDone record of [MS-TURN] 2.1.1."""
    random32 = random32 if random32 is not None else os.urandom(32)
    session_id = session_id if session_id is not None else os.urandom(20) + b"\0" * 12
    return (bytes.fromhex("16030100 4e 02000046 0301".replace(" ", "")) + random32
            + b"\x20" + session_id + bytes.fromhex("0018 00 0e000000".replace(" ", "")))


def is_pseudo_tls_client_hello(data: bytes) -> bool:
    return (len(data) == PSEUDO_TLS_HELLO_LEN
            and data[:11] == bytes.fromhex("160301002d010000290301")
            and data[43:50] == bytes.fromhex("00000200180100"))


def is_pseudo_tls_server_hello(data: bytes) -> bool:
    return (len(data) == PSEUDO_TLS_SERVER_HELLO_LEN
            and data[:11] == bytes.fromhex("160301004e020000460301")
            and data[43] == 0x20
            and data[76:83] == bytes.fromhex("0018000e000000"))


def ms_turn_message(msg_type: int, attrs: bytes = b"", txid: bytes = None) -> bytes:
    """An MS-TURN message: 20-byte header with a 16-byte transaction id, Magic Cookie first."""
    txid = txid if txid is not None else os.urandom(16)
    body = MS_TURN_COOKIE_ATTR + attrs
    return struct.pack("!HH", msg_type, len(body)) + txid + body


def ms_turn_frame(frame_type: int, payload: bytes) -> bytes:
    """[MS-TURN] 2.1.4 TCP framing: Type(1) Reserved(1)=0 Length(2)."""
    return struct.pack("!BBH", frame_type, 0, len(payload)) + payload


def ms_turn_allocate_frame(username: bytes = None, txid: bytes = None) -> bytes:
    attrs = stun_attr(MS_ATTR_USERNAME, username) if username else b""
    return ms_turn_frame(MS_FRAME_CONTROL, ms_turn_message(MS_ALLOCATE, attrs, txid))


def parse_ms_turn(payload: bytes) -> dict:
    """{'type', 'length', 'txid', 'attrs': {type: [value, ...]}, 'first_attr'} of one message."""
    msg_type, length = struct.unpack("!HH", payload[:4])
    attrs = {}
    first = None
    offset = 20
    while offset + 4 <= 20 + length:
        kind, size = struct.unpack("!HH", payload[offset:offset + 4])
        first = kind if first is None else first
        attrs.setdefault(kind, []).append(payload[offset + 4:offset + 4 + size])
        offset += 4 + size + (-size % 4)
    return {"type": msg_type, "length": length, "txid": payload[4:20], "attrs": attrs,
            "first_attr": first}


def recv_ms_turn_frame(sock: socket.socket):
    """(frame type, payload) of the next framed message."""
    head = recv_exact(sock, 4)
    frame_type, _reserved, length = struct.unpack("!BBH", head)
    return frame_type, recv_exact(sock, length)


# ---- SIP ----


def sip_request(method: str, transport: str = "TCP", uri: str = "sip:test@127.0.0.1",
                call_id: str = None, cseq: int = 1, extra_headers=(), body: bytes = b"",
                local: str = "127.0.0.1:5999") -> bytes:
    """A minimal, valid SIP request with Content-Length."""
    call_id = call_id or os.urandom(8).hex()
    branch = "z9hG4bK" + os.urandom(6).hex()
    tag = os.urandom(4).hex()
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {local};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:test@127.0.0.1>;tag={tag}",
        "To: <sip:test@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *extra_headers,
    ]
    if method == "REGISTER":
        lines += [f"Contact: <sip:test@{local};transport={transport.lower()}>", "Expires: 60"]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def recv_sip_message(sock) -> tuple:
    """(start line, {lower header: value}, body) of the next SIP message on a stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"peer closed before a whole SIP head: {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", headers.get("l", "0")))
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("peer closed inside a SIP body")
        rest += chunk
    return lines[0], headers, rest[:length]


def sip_status(start_line: str) -> int:
    """The status code of a 'SIP/2.0 NNN Reason' line."""
    parts = start_line.split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0":
        raise ValueError(f"not a SIP status line: {start_line!r}")
    return int(parts[1])
