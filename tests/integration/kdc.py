"""A private MIT Kerberos realm on loopback for the Negotiate tests.

`Realm()` writes a krb5.conf and a kdc.conf into a temporary folder, creates the database
(`kdb5_util create -s`), adds user principals with passwords and service principals with a keytab
(`kadmin.local`), and starts `krb5kdc` in the foreground on a free loopback port; `stop()` ends it
by PID. `env()` is the environment a client or the proxy needs to use the realm (KRB5_CONFIG,
KRB5_KDC_PROFILE, a private replay cache folder); `kinit(user)` fills a private ticket cache
and returns the environment with KRB5CCNAME set to it.
"""

import os
import shutil
import subprocess
import tempfile
import unittest

from harness import HOST, ManagedProcess, free_udp_tcp_port, wait_port

REALM = "TEST.HANDOFF"
USERS = {"alice": "alice-Secret-1", "bob": "bob-Secret-2"}
SERVICES = ("HTTP/localhost", "HTTP/proxy.test")
MASTER_PASSWORD = "master-Secret-0"

_TOOLS = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit")


def _find(tool: str):
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin")


def missing_tools() -> list:
    """Names of the MIT tools that are not installed (empty when the realm can run)."""
    return [t for t in _TOOLS if not _find(t)]


def skip_unless_kdc(test):
    """unittest decorator: skip with a reason naming the packages when a tool is missing."""
    missing = missing_tools()
    reason = (f"MIT Kerberos tools missing ({', '.join(missing)}): "
              "apt-get install krb5-kdc krb5-admin-server krb5-user")
    return unittest.skipIf(bool(missing), reason)(test)


class Realm:
    """One KDC for REALM with USERS and SERVICES; use as a context manager or start()/stop()."""

    def __init__(self, realm: str = REALM, users: dict = None, services=SERVICES):
        self.realm = realm
        self.users = dict(USERS if users is None else users)
        self.services = tuple(services)
        self.dir = tempfile.mkdtemp(prefix="handoff-kdc-")
        self.port = free_udp_tcp_port(HOST)
        self.keytab = os.path.join(self.dir, "service.keytab")
        self.krb5_conf = os.path.join(self.dir, "krb5.conf")
        self.kdc_conf = os.path.join(self.dir, "kdc.conf")
        self.rcache_dir = os.path.join(self.dir, "rcache")
        self.kdc = None

    # ---- set-up ----

    def _write_config(self) -> None:
        os.makedirs(self.rcache_dir, exist_ok=True)
        with open(self.krb5_conf, "w") as f:
            f.write(
                "[libdefaults]\n"
                f"  default_realm = {self.realm}\n"
                "  dns_lookup_kdc = false\n"
                "  dns_lookup_realm = false\n"
                "  dns_canonicalize_hostname = false\n"
                "  rdns = false\n"
                "  udp_preference_limit = 1\n"
                "[realms]\n"
                f"  {self.realm} = {{\n    kdc = {HOST}:{self.port}\n  }}\n"
                "[domain_realm]\n"
                f"  localhost = {self.realm}\n"
                f"  .test = {self.realm}\n"
                f"  proxy.test = {self.realm}\n"
            )
        with open(self.kdc_conf, "w") as f:
            f.write(
                "[kdcdefaults]\n"
                f"  kdc_listen = {HOST}:{self.port}\n"
                f"  kdc_tcp_listen = {HOST}:{self.port}\n"
                "[realms]\n"
                f"  {self.realm} = {{\n"
                f"    database_name = {self.dir}/principal\n"
                f"    key_stash_file = {self.dir}/stash\n"
                f"    acl_file = {self.dir}/kadm5.acl\n"
                "    supported_enctypes = aes256-cts-hmac-sha1-96:normal\n"
                "  }\n"
                "[logging]\n"
                f"  kdc = FILE:{self.dir}/kdc.log\n"
            )
        open(os.path.join(self.dir, "kadm5.acl"), "w").close()

    def env(self, extra: dict = None) -> dict:
        """Variables that point a Kerberos client or acceptor at this realm only."""
        e = {
            "KRB5_CONFIG": self.krb5_conf,
            "KRB5_KDC_PROFILE": self.kdc_conf,
            "KRB5RCACHEDIR": self.rcache_dir,
            "KRB5_TRACE": os.path.join(self.dir, "trace.log"),
            "KRB5CCNAME": "FILE:" + os.path.join(self.dir, "no-tickets.ccache"),
            "KRB5_KTNAME": "FILE:" + os.path.join(self.dir, "no-default.keytab"),
        }
        if extra:
            e.update(extra)
        return e

    def _run(self, *cmd, input: str = None) -> str:
        full = dict(os.environ)
        full.update(self.env())
        p = subprocess.run([_find(cmd[0])] + list(cmd[1:]), input=input, capture_output=True,
                           text=True, env=full, timeout=60, cwd=self.dir)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p.stdout

    def kadmin(self, query: str) -> str:
        """One kadmin.local query against the realm's database."""
        return self._run("kadmin.local", "-r", self.realm, "-q", query)

    def start(self) -> "Realm":
        self._write_config()
        self._run("kdb5_util", "-r", self.realm, "create", "-s", "-P", MASTER_PASSWORD)
        for user, password in self.users.items():
            self.kadmin(f"addprinc -pw {password} {user}")
        for svc in self.services:
            self.kadmin(f"addprinc -randkey {svc}")
            self.kadmin(f"ktadd -k {self.keytab} {svc}")
        self.kdc = ManagedProcess(
            [_find("krb5kdc"), "-n", "-r", self.realm, "-P", os.path.join(self.dir, "kdc.pid")],
            self.dir, "krb5kdc", env=self.env())
        wait_port(HOST, self.port, timeout=15, alive=self.kdc.alive)
        return self

    def keytab_for(self, *services) -> str:
        """A keytab holding only these services' current keys (a fresh file each call)."""
        path = tempfile.mktemp(prefix="only-", suffix=".keytab", dir=self.dir)
        for svc in services:
            self.kadmin(f"ktadd -k {path} -norandkey {svc}")
        return path

    def kinit(self, user: str, password: str = None) -> dict:
        """Gets user's TGT with a password into a private ccache; returns env with KRB5CCNAME."""
        ccache = "FILE:" + os.path.join(self.dir, f"{user}.ccache")
        env = self.env({"KRB5CCNAME": ccache})
        full = dict(os.environ)
        full.update(env)
        secret = self.users[user] if password is None else password
        p = subprocess.run([_find("kinit"), f"{user}@{self.realm}"], input=secret + "\n",
                           capture_output=True, text=True, env=full, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"kinit {user} failed ({p.returncode}): {p.stderr}")
        return env

    def stop(self) -> None:
        if self.kdc is not None:
            self.kdc.stop(grace=5)
            self.kdc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def describe(self) -> str:
        """The KDC's state and log, for failure messages."""
        log = ""
        try:
            with open(os.path.join(self.dir, "kdc.log")) as f:
                log = f.read()[-3000:]
        except OSError:
            pass
        state = self.kdc.describe() if self.kdc else "krb5kdc not running"
        return f"{state}\n--- kdc.log ---\n{log}"

    def __enter__(self) -> "Realm":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
