"""Shared plumbing for the integration tests: ports, processes, curl and the proxy itself.

Every wait is bounded, and every process started here is remembered so that it is killed by
its own PID when the test stops it, and again at interpreter exit if a test forgot.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import certs

HOST = "127.0.0.1"
STOP_GRACE_S = 15.0

_PROXY_ENV_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (bind to 0 and release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_udp_tcp_port(host: str = HOST) -> int:
    """A port free for both TCP and UDP, for servers that listen on both."""
    for _ in range(50):
        port = free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both TCP and UDP")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 10.0, alive=None) -> None:
    """Wait until host:port accepts TCP; alive() returning False stops the wait early."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if alive is not None and not alive():
            raise RuntimeError(f"process exited before {host}:{port} was listening")
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} not listening after {timeout}s")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll predicate() until it returns a truthy value, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met after {timeout}s")
        time.sleep(interval)


def clean_env(extra: dict = None) -> dict:
    """The current environment without any proxy variables, so clients go where told."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_ENV_VARS}
    if extra:
        env.update(extra)
    return env


def curl(*args, proxy: str = None, timeout: float = 20, input: bytes = None) -> subprocess.CompletedProcess:
    """Run curl -sS with a hard time limit; stdout/stderr are bytes.

    proxy is passed as --proxy; the environment's proxy variables are always cleared.
    """
    cmd = ["curl", "-sS", "--max-time", str(timeout)]
    if proxy is not None:
        cmd += ["--proxy", proxy]
    cmd += [str(a) for a in args]
    return subprocess.run(
        cmd, input=input, capture_output=True, env=clean_env(), timeout=timeout + 10
    )


# ---- processes ---------------------------------------------------------------------------

_live = {}
_live_lock = threading.Lock()


def _kill_leftovers() -> None:
    with _live_lock:
        procs = list(_live.values())
    for proc in procs:
        proc.stop(grace=2.0)


atexit.register(_kill_leftovers)


class ManagedProcess:
    """A child process with stdout/stderr in files, stopped by PID (its own group as last resort)."""

    def __init__(self, cmd, workdir: str, name: str, env: dict = None):
        self.cmd = [str(c) for c in cmd]
        self.name = name
        self.stdout_path = os.path.join(workdir, f"{name}.stdout")
        self.stderr_path = os.path.join(workdir, f"{name}.stderr")
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            cwd=workdir,
            env=clean_env(env),
            start_new_session=True,
        )
        self.pid = self.proc.pid
        with _live_lock:
            _live[self.pid] = self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, grace: float = STOP_GRACE_S):
        """SIGTERM, wait up to grace seconds, then SIGKILL; returns the exit code."""
        try:
            if self.alive():
                os.kill(self.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self._kill_group()
                    self.proc.wait(timeout=5)
            return self.proc.returncode
        finally:
            self._reap_group()
            with _live_lock:
                _live.pop(self.pid, None)
            self._out.close()
            self._err.close()

    def _kill_group(self) -> None:
        # The group was created for this child alone (start_new_session), so it holds only
        # the child and anything it forked (kamailio's workers, for example).
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _reap_group(self) -> None:
        # Children a server forked may outlive a main process that died abruptly.
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        self._kill_group()

    def stdout_text(self) -> str:
        if not self._out.closed:
            self._out.flush()
        with open(self.stdout_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr_text(self) -> str:
        if not self._err.closed:
            self._err.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def describe(self) -> str:
        """Exit status and the tail of both streams, for failure messages."""
        state = "running" if self.alive() else f"exited {self.proc.returncode}"
        return (
            f"{self.name} ({' '.join(self.cmd)}) {state}\n"
            f"--- stderr ---\n{self.stderr_text()[-4000:]}\n"
            f"--- stdout ---\n{self.stdout_text()[-2000:]}"
        )


# ---- the proxy ---------------------------------------------------------------------------


def handoff_bin() -> str:
    """Path of the proxy binary from HANDOFF_BIN; skips the test when it is not there."""
    path = os.environ.get("HANDOFF_BIN", "")
    if not path:
        raise unittest.SkipTest("HANDOFF_BIN is not set (the handoff target is not built)")
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(f"HANDOFF_BIN={path} is not an executable file")
    # The proxy runs in its own temp dir, so a path relative to the tests' folder must not reach it.
    return os.path.abspath(path)


def run_handoff(*args, timeout: float = 30, cwd: str = None) -> subprocess.CompletedProcess:
    """Run the proxy binary as a command-line tool (ca init, --check, sessions, explain)."""
    return subprocess.run(
        [handoff_bin(), *[str(a) for a in args]],
        capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=cwd,
    )


_ca_lock = threading.Lock()
_proxy_ca = None


def proxy_ca() -> tuple:
    """(ca_cert, ca_key) for interception, made once per process by `handoff ca init DIR`.

    Falls back to an EC CA made with the openssl CLI while that command does not exist yet.
    """
    global _proxy_ca
    with _ca_lock:
        if _proxy_ca is None:
            directory = tempfile.mkdtemp(prefix="handoff-ca-")
            atexit.register(shutil.rmtree, directory, True)
            cert = os.path.join(directory, "ca.crt")
            key = os.path.join(directory, "ca.key")
            try:
                proc = run_handoff("ca", "init", directory)
                made = proc.returncode == 0 and os.path.exists(cert) and os.path.exists(key)
            except (unittest.SkipTest, OSError, subprocess.TimeoutExpired):
                made = False
            if not made:
                for path in (cert, key):
                    if os.path.exists(path):
                        os.unlink(path)
                cert, key = certs.make_root_ca(directory, name="handoff test interception CA")
            os.chmod(key, 0o600)
            _proxy_ca = (cert, key)
        return _proxy_ca


def _default_config(port: int, admin_port: int) -> dict:
    """Every section and key of SPEC §3, with values suited to a test on loopback."""
    ca_cert, ca_key = proxy_ca()
    return {
        "proxy": {
            "listen": f"{HOST}:{port}",
            "workers": "1",
            "protocol_detection": "yes",
            "tunnel_on_protocol_error": "no",
            "detect_timeout_ms": "2000",
            "header_timeout_s": "30",
            "connect_timeout_s": "10",
            "idle_timeout_s": "300",
            "max_header_bytes": "65536",
            "max_connections": "20000",
        },
        "tls": {
            "ca_cert": ca_cert,
            "ca_key": ca_key,
            "upstream_ca_file": certs.test_certs().ca_bundle,
            "verify_upstream": "yes",
            "leaf_cache_size": "10000",
            "crl_url": "",
            "ocsp_url": "",
            "check_revocation": "auto",
            "revocation_failure": "soft",
        },
        "policy": {"file": "policy.cpl", "default": "allow"},
        "admin": {"listen": f"{HOST}:{admin_port}"},
        "auth": {"htpasswd": "", "realm": "handoff"},
        "log": {"access_log": "-", "format": "json", "level": "debug"},
        "pac": {
            "proxy": f"PROXY {HOST}:{port}",
            "direct": "localhost, 127.0.0.0/8, *.local",
            "file": "",
        },
    }


def render_ini(config: dict) -> str:
    """INI text; a key whose value is None is left out."""
    lines = []
    for section, keys in config.items():
        lines.append(f"[{section}]")
        for key, value in keys.items():
            if value is not None:
                lines.append(f"{key} = {value}".rstrip())
        lines.append("")
    return "\n".join(lines)


def _address_of(listen: str):
    """(host, port) of the first address in a listen list; '' (disabled) gives (None, None)."""
    first = listen.split(",")[0].strip()
    if not first:
        return None, None
    host, port = first.rsplit(":", 1)
    return host.strip("[]"), int(port)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Handoff:
    """The proxy under test, in a private temp dir with its own config, policy and logs.

    Handoff(proxy={'workers': '2'}, tls={...}, policy_text='<proxy>\\nALLOW\\n',
            files={'users.htpasswd': '...'}) -- any [section] key can be overridden by
    passing a dict named after the section; a value of None removes the key.
    """

    SECTIONS = ("proxy", "tls", "policy", "admin", "auth", "log", "pac")

    def __init__(self, policy_text: str = "", files: dict = None, args=(), start: bool = True,
                 start_timeout: float = 15.0, env: dict = None, **sections):
        unknown = set(sections) - set(self.SECTIONS)
        if unknown:
            raise TypeError(f"unknown config sections: {sorted(unknown)}")
        self.binary = handoff_bin()
        self.dir = tempfile.mkdtemp(prefix="handoff-run-")
        if not os.environ.get("HANDOFF_KEEP_TMP"):
            atexit.register(shutil.rmtree, self.dir, True)
        self.conf_path = os.path.join(self.dir, "handoff.conf")
        self.policy_path = os.path.join(self.dir, "policy.cpl")
        self.config = _default_config(free_port(), free_port())
        for section, overrides in sections.items():
            self.config[section].update(overrides)
        self.host, self.port = _address_of(self.config["proxy"]["listen"])
        if "proxy" not in sections.get("pac", {}):
            self.config["pac"]["proxy"] = f"PROXY {_url_host(self.host)}:{self.port}"
        self.admin_host, self.admin_port = _address_of(self.config["admin"].get("listen") or "")
        self.write_policy(policy_text)
        for name, content in (files or {}).items():
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(content)
        with open(self.conf_path, "w") as f:
            f.write(render_ini(self.config))
        self.args = list(args)
        self.env = env
        self.process = None
        if start:
            self.start(start_timeout)

    @property
    def url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{_url_host(self.admin_host)}:{self.admin_port}"

    @property
    def ca_cert(self) -> str:
        return self.config["tls"]["ca_cert"]

    @property
    def pid(self) -> int:
        return self.process.pid

    def write_policy(self, text: str) -> None:
        with open(self.policy_path, "w") as f:
            f.write(text)

    def start(self, timeout: float = 15.0) -> None:
        self.process = ManagedProcess(
            [self.binary, "-c", self.conf_path, *self.args], self.dir, "handoff", self.env
        )
        try:
            wait_port(self.host, self.port, timeout, alive=self.process.alive)
            if self.admin_port:
                wait_port(self.admin_host, self.admin_port, timeout, alive=self.process.alive)
        except (RuntimeError, TimeoutError) as e:
            detail = self.process.describe()
            self.close()
            raise RuntimeError(f"handoff did not start: {e}\n{detail}") from None

    def signal(self, sig) -> None:
        self.process.signal(sig)

    def reload(self, policy_text: str = None) -> None:
        """Optionally rewrite the policy, then SIGHUP."""
        if policy_text is not None:
            self.write_policy(policy_text)
        self.signal(signal.SIGHUP)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self, grace: float = STOP_GRACE_S):
        """SIGTERM, up to grace seconds, then SIGKILL; returns the exit code."""
        if self.process is None:
            return None
        return self.process.stop(grace)

    def stdout_text(self) -> str:
        return self.process.stdout_text() if self.process else ""

    def stderr_text(self) -> str:
        return self.process.stderr_text() if self.process else ""

    def log_lines(self) -> list:
        """The access log so far: every stdout line that is a JSON object."""
        entries = []
        for line in self.stdout_text().splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                value = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if isinstance(value, dict):
                entries.append(value)
        return entries

    def wait_log(self, predicate, timeout: float = 10.0) -> dict:
        """The first access-log entry for which predicate(entry) is true, waiting for it."""
        def find():
            return next((e for e in self.log_lines() if predicate(e)), None)

        try:
            return wait_until(find, timeout, what="access log entry")
        except TimeoutError:
            raise AssertionError(
                f"no matching access-log entry within {timeout}s; log:\n"
                + "\n".join(json.dumps(e) for e in self.log_lines()[-20:])
                + f"\n--- stderr ---\n{self.stderr_text()[-3000:]}"
            ) from None

    def admin_get(self, path: str, timeout: float = 10.0) -> bytes:
        """GET on the admin listener, straight (never through a proxy)."""
        proc = curl("-f", f"{self.admin_url}{path}", timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"admin GET {path} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout

    def sessions(self) -> list:
        return json.loads(self.admin_get("/sessions"))["sessions"]

    def close(self) -> None:
        """Stop the process and remove its temp dir (kept when HANDOFF_KEEP_TMP is set)."""
        try:
            self.stop()
        finally:
            if not os.environ.get("HANDOFF_KEEP_TMP"):
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def connect_tunnel(proxy: "Handoff", host: str, port: int, timeout: float = 10) -> socket.socket:
    """A socket on which CONNECT host:port was answered 200; nothing read past the head."""
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            sock.close()
            raise AssertionError(f"proxy closed during CONNECT; got {head!r}")
        head += byte
        if len(head) > 8192:
            raise AssertionError(f"CONNECT answer head too long: {head[:200]!r}")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        sock.close()
        raise AssertionError(f"CONNECT {host}:{port} not answered 200: {head!r}")
    return sock
