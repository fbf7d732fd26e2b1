"""Test certificates made with the openssl CLI, once per process.

test_certs() returns a TestCerts with the paths of:
  ca_cert / ca_key          a test root CA (also the upstream CA bundle for the proxy)
  server_cert / server_key  DNS:localhost, DNS:origin.test, IP:127.0.0.1, signed by the root
  self_signed_cert / _key   the same names, signed by itself
  expired_cert / _key       the same names, signed by the root, valid 2020-2021 only
  wrong_name_cert / _key    DNS:wrong.test only, signed by the root
"""

import atexit
import datetime
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass

SERVER_NAMES = "DNS:localhost,DNS:origin.test,IP:127.0.0.1"

# `openssl ca` is the only OpenSSL 3.0 command that sets a start date in the past.
_CA_CONFIG = """\
[ca]
default_ca = test_ca

[test_ca]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
policy = accept_any
unique_subject = no
copy_extensions = none

[accept_any]
commonName = supplied
"""

_LEAF_EXTENSIONS = """\
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {names}
"""


@dataclass(frozen=True)
class TestCerts:
    dir: str
    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    self_signed_cert: str
    self_signed_key: str
    expired_cert: str
    expired_key: str
    wrong_name_cert: str
    wrong_name_key: str

    @property
    def ca_bundle(self) -> str:
        return self.ca_cert


def _openssl(*args: str, cwd: str) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def _ec_key(path: str, cwd: str) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path, cwd=cwd)
    os.chmod(path, 0o600)


def make_root_ca(directory: str, name: str = "handoff test root CA") -> tuple:
    """EC P-256 root CA in directory; returns (cert, key). The key is mode 0600."""
    key = os.path.join(directory, "ca.key")
    cert = os.path.join(directory, "ca.crt")
    _ec_key(key, directory)
    _openssl(
        "req", "-x509", "-new", "-key", key, "-out", cert, "-days", "3650", "-sha256",
        "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=directory,
    )
    return cert, key


def _signed_leaf(work: str, stem: str, names: str, start: str, end: str) -> tuple:
    key = os.path.join(work, f"{stem}.key")
    csr = os.path.join(work, f"{stem}.csr")
    cert = os.path.join(work, f"{stem}.crt")
    ext = os.path.join(work, f"{stem}.ext")
    _ec_key(key, work)
    common_name = names.split(",")[0].split(":", 1)[1]
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={common_name}", cwd=work)
    with open(ext, "w") as f:
        f.write(_LEAF_EXTENSIONS.format(names=names))
    _openssl(
        "ca", "-batch", "-config", "ca.cnf", "-in", csr, "-out", cert, "-notext",
        "-startdate", start, "-enddate", end, "-extfile", ext, "-extensions", "leaf",
        cwd=work,
    )
    return cert, key


def _self_signed(work: str, names: str) -> tuple:
    key = os.path.join(work, "self_signed.key")
    cert = os.path.join(work, "self_signed.crt")
    _ec_key(key, work)
    _openssl(
        "req", "-x509", "-new", "-key", key, "-out", cert, "-days", "3650", "-sha256",
        "-subj", "/CN=localhost", "-addext", f"subjectAltName={names}",
        "-addext", "basicConstraints=critical,CA:FALSE",
        cwd=work,
    )
    return cert, key


def _build(work: str) -> TestCerts:
    os.makedirs(os.path.join(work, "issued"))
    open(os.path.join(work, "index.txt"), "w").close()
    with open(os.path.join(work, "serial"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(work, "ca.cnf"), "w") as f:
        f.write(_CA_CONFIG.format(dir=work))
    ca_cert, ca_key = make_root_ca(work)
    # Valid from yesterday so a clock a little behind still accepts it.
    now = datetime.datetime.now(datetime.timezone.utc)
    start = (now - datetime.timedelta(days=1)).strftime("%Y%m%d%H%M%SZ")
    end = (now + datetime.timedelta(days=825)).strftime("%Y%m%d%H%M%SZ")
    server = _signed_leaf(work, "server", SERVER_NAMES, start, end)
    expired = _signed_leaf(work, "expired", SERVER_NAMES, "20200101000000Z", "20210101000000Z")
    wrong = _signed_leaf(work, "wrong_name", "DNS:wrong.test", start, end)
    self_signed = _self_signed(work, SERVER_NAMES)
    return TestCerts(
        dir=work, ca_cert=ca_cert, ca_key=ca_key,
        server_cert=server[0], server_key=server[1],
        self_signed_cert=self_signed[0], self_signed_key=self_signed[1],
        expired_cert=expired[0], expired_key=expired[1],
        wrong_name_cert=wrong[0], wrong_name_key=wrong[1],
    )


_lock = threading.Lock()
_cached = None


def test_certs() -> TestCerts:
    """The process-wide set of test certificates, made on first use."""
    global _cached
    with _lock:
        if _cached is None:
            work = tempfile.mkdtemp(prefix="handoff-certs-")
            atexit.register(shutil.rmtree, work, True)
            _cached = _build(work)
        return _cached


if __name__ == "__main__":
    for field, value in vars(test_certs()).items():
        print(f"{field} = {value}")
