"""Real SIP and TURN servers on loopback for the integration tests.

start_kamailio(tls=False) -> SipServer (.port for UDP/TCP, .tls_port, .stop())
start_coturn()            -> TurnServer (.port, .username, .password, .realm, .stop())
start_msturn_server()     -> MsTurnServer (.port, .stats(), .stop()), in this process

Each external server runs in its own temp dir with its config made from the templates beside
this file; a missing binary raises unittest.SkipTest.
"""

import os
import random
import shutil
import tempfile
import unittest

import certs
import harness

from .msturn_server import MsTurnServer, start_msturn_server

__all__ = ["MsTurnServer", "SipServer", "TurnServer", "start_coturn", "start_kamailio",
           "start_msturn_server"]

HERE = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT_S = 20.0


def _binary(name: str) -> str:
    for folder in ("/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if not found:
        raise unittest.SkipTest(f"{name} is not installed")
    return found


def _render(template: str, target: str, values: dict) -> None:
    with open(os.path.join(HERE, template)) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    with open(target, "w") as f:
        f.write(text)


class _ExternalServer:
    """A server process in a private temp dir, waited for on its TCP ports."""

    def __init__(self, name: str, cmd, workdir: str, ports):
        self.dir = workdir
        self.process = harness.ManagedProcess(cmd, workdir, name)
        try:
            for port in ports:
                harness.wait_port(harness.HOST, port, START_TIMEOUT_S, alive=self.process.alive)
        except (RuntimeError, TimeoutError) as e:
            detail = self.process.describe()
            self.stop()
            raise RuntimeError(f"{name} did not start: {e}\n{detail}") from None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.process.stdout_text() + self.process.stderr_text()

    def stop(self) -> None:
        try:
            self.process.stop(grace=10.0)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class SipServer(_ExternalServer):
    """Kamailio: OPTIONS 200, REGISTER saved (200), NEGOTIATE 200, MESSAGE 200, else 404."""

    def __init__(self, tls: bool):
        binary = _binary("kamailio")
        workdir = tempfile.mkdtemp(prefix="handoff-kamailio-")
        self.port = harness.free_udp_tcp_port()
        self.tls_port = harness.free_port() if tls else None
        config = os.path.join(workdir, "kamailio.cfg")
        tls_config = os.path.join(workdir, "tls.cfg")
        _render("kamailio.cfg", config, {
            "SIP_PORT": self.port, "TLS_PORT": self.tls_port or 0, "TLS_CONFIG": tls_config})
        cmd = [binary, "-DD", "-E", "-f", config, "-P", os.path.join(workdir, "kamailio.pid"),
               "-Y", workdir, "-w", workdir, "-m", "32", "-M", "8"]
        ports = [self.port]
        if tls:
            test_certs = certs.test_certs()
            _render("kamailio-tls.cfg", tls_config, {
                "CERT": test_certs.server_cert, "KEY": test_certs.server_key})
            cmd += ["-A", "WITH_TLS"]
            ports.append(self.tls_port)
        super().__init__("kamailio", cmd, workdir, ports)


class TurnServer(_ExternalServer):
    """coturn with long-term credentials: an Allocate without them is answered 401."""

    realm = "handoff.test"

    def __init__(self):
        binary = _binary("turnserver")
        workdir = tempfile.mkdtemp(prefix="handoff-coturn-")
        self.port = harness.free_udp_tcp_port()
        self.username = "alice"
        self.password = os.urandom(8).hex()
        relay_min = random.randrange(49152, 65000, 100)
        config = os.path.join(workdir, "turnserver.conf")
        _render("turnserver.conf", config, {
            "PORT": self.port, "RELAY_MIN": relay_min, "RELAY_MAX": relay_min + 99,
            "USER": self.username, "PASSWORD": self.password, "DIR": workdir})
        super().__init__("turnserver", [binary, "-c", config], workdir, [self.port])


def start_kamailio(tls: bool = False) -> SipServer:
    return SipServer(tls)


def start_coturn() -> TurnServer:
    return TurnServer()
