"""The Negotiate acceptor against real tickets from a private MIT KDC.

`negotiate_tool init` makes a SPNEGO token from a ticket cache with gss_init_sec_context;
`negotiate_tool accept` feeds Proxy-Authorization values to one acceptor context through the
credential pool and prints each outcome (see tests/unit/proxy/negotiate_tool.c).
"""

import base64
import os
import subprocess
import unittest

from harness import clean_env
from kdc import Realm, skip_unless_kdc


def _tool() -> str:
    path = os.environ.get("HANDOFF_NEGOTIATE_TOOL")
    if not path:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "..", "..", "build", "tests", "unit", "proxy", "negotiate_tool")
    return path


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 128:
        length = bytes([n])
    elif n < 256:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82, n >> 8, n & 255])
    return bytes([tag]) + length + body


def spnego_init_without_mech_token() -> str:
    """A NegTokenInit that only lists Kerberos: the acceptor must ask for another leg."""
    krb5 = _der(0x06, bytes.fromhex("2a864886f712010202"))
    init = _der(0x30, _der(0xA0, _der(0x30, krb5)))
    token = _der(0x60, _der(0x06, bytes.fromhex("2b0601050502")) + _der(0xA0, init))
    return base64.b64encode(token).decode()


@skip_unless_kdc
@unittest.skipUnless(os.access(_tool(), os.X_OK), "negotiate_tool not built (cmake --build build)")
class NegotiateAcceptor(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.realm = Realm().__enter__()
        cls.alice = cls.realm.kinit("alice")
        cls.bob = cls.realm.kinit("bob")

    @classmethod
    def tearDownClass(cls):
        cls.realm.stop()

    def token(self, env: dict, service: str = "HTTP@localhost") -> str:
        p = subprocess.run([_tool(), "init", service], capture_output=True, text=True,
                           env=clean_env(env), timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr + self.realm.describe())
        return p.stdout.strip()

    def accept(self, lines, keytab: str = None, principal: str = "-", strip: str = "yes"):
        """Outcome lines, one per value fed (`new` lines start a new context)."""
        p = subprocess.run([_tool(), "accept", keytab or self.realm.keytab, principal, strip],
                           input="".join(line + "\n" for line in lines), capture_output=True,
                           text=True, env=clean_env(self.realm.env()), timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = p.stdout.splitlines()
        self.assertNotIn("pending counter not released", out)
        return out

    def test_a_ticket_authenticates_and_the_realm_is_stripped(self):
        out = self.accept(["Negotiate " + self.token(self.alice)])
        self.assertEqual(out, ["complete alice alice@TEST.HANDOFF mutual"])

    def test_strip_realm_no_keeps_the_principal(self):
        out = self.accept(["Negotiate " + self.token(self.bob)], strip="no")
        self.assertEqual(out, ["complete bob@TEST.HANDOFF bob@TEST.HANDOFF mutual"])

    def test_one_context_serves_a_later_exchange(self):
        out = self.accept(["Negotiate " + self.token(self.alice),
                           "Negotiate " + self.token(self.bob)])
        self.assertEqual([o.split()[:2] for o in out], [["complete", "alice"], ["complete", "bob"]])

    def test_service_principal_restricts_the_keytab(self):
        for_proxy_test = "Negotiate " + self.token(self.alice, "HTTP@proxy.test")
        for_localhost = "Negotiate " + self.token(self.alice)
        out = self.accept([for_proxy_test, "new", for_localhost], principal="HTTP/localhost")
        self.assertTrue(out[0].startswith("failed token refused"), out)
        self.assertEqual(out[1].split()[:2], ["complete", "alice"])
        # without the restriction the same keytab accepts both names
        out = self.accept(["Negotiate " + self.token(self.alice, "HTTP@proxy.test")])
        self.assertEqual(out[0].split()[:2], ["complete", "alice"])

    def test_a_token_for_a_principal_missing_from_the_keytab_fails(self):
        keytab = self.realm.keytab_for("HTTP/localhost")
        out = self.accept(["Negotiate " + self.token(self.alice, "HTTP@proxy.test")], keytab=keytab)
        self.assertTrue(out[0].startswith("failed token refused"), out)

    def test_a_replayed_token_fails(self):
        value = "Negotiate " + self.token(self.alice)
        out = self.accept([value, "new", value])
        self.assertEqual(out[0].split()[:2], ["complete", "alice"])
        self.assertTrue(out[1].startswith("failed token refused"), out)
        self.assertIn("replay", out[1].lower())

    def test_corrupted_and_cut_tokens_fail_with_a_reason(self):
        raw = base64.b64decode(self.token(self.alice))
        values = []
        for at in (len(raw) // 3, len(raw) // 2, len(raw) - 20):
            bad = bytearray(raw)
            bad[at] ^= 0x5A
            values.append("Negotiate " + base64.b64encode(bytes(bad)).decode())
        for cut in (1, 10, len(raw) // 2, len(raw) - 1):
            values.append("Negotiate " + base64.b64encode(raw[:cut]).decode())
        values.append("Negotiate " + base64.b64encode(raw).decode()[:-3])  # not base64 any more
        out = self.accept(values)
        self.assertEqual(len(out), len(values), out)
        for value, line in zip(values, out):
            self.assertTrue(line.startswith("failed ") and len(line) > len("failed "),
                            f"{value[:40]}…: {line}")

    def test_a_spnego_init_without_a_kerberos_token_asks_for_another_leg(self):
        out = self.accept(["Negotiate " + spnego_init_without_mech_token()])
        status, _, token = out[0].partition(" ")
        self.assertEqual(status, "continue", out)
        reply = base64.b64decode(token, validate=True)
        self.assertEqual(reply[0], 0xA1)  # NegTokenResp

    def test_a_two_leg_exchange_completes_on_the_same_context(self):
        raw = subprocess.run([_tool(), "init-krb5", "HTTP@localhost"], capture_output=True,
                             text=True, env=clean_env(self.alice), timeout=30).stdout.strip()
        # second leg: a NegTokenResp carrying the Kerberos AP-REQ
        resp = _der(0xA1, _der(0x30, _der(0xA2, _der(0x04, base64.b64decode(raw)))))
        second = "Negotiate " + base64.b64encode(resp).decode()
        out = self.accept(["Negotiate " + spnego_init_without_mech_token(), second])
        self.assertEqual(out[0].split()[0], "continue", out)
        self.assertEqual(out[1], "complete alice alice@TEST.HANDOFF mutual")
        # the second leg alone, on a new connection, is not an exchange
        out = self.accept([second])
        self.assertTrue(out[0].startswith("failed token refused"), out)

    def test_a_ticket_from_another_realm_fails(self):
        with Realm(realm="OTHER.HANDOFF") as other:
            env = other.kinit("alice")
            value = "Negotiate " + self.token(env)
        out = self.accept([value])
        self.assertTrue(out[0].startswith("failed token refused"), out)


if __name__ == "__main__":
    unittest.main()
