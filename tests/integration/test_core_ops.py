"""Operating the proxy: a client that vanishes mid-transfer, the access-log formats, --check,
listeners and workers, and the signals of SPEC section 10."""

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest

import core_support as cs
import harness
import origin

HOST = harness.HOST
ALLOW_ALL = "<proxy>\n  ALLOW\n"
TEN_MB = 10 * 1024 * 1024


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class SharedOrigin(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.origin = origin.start_origin()
        cls.addClassCleanup(cls.origin.stop)

    def download_ok(self, proxy_url: str, size: int = 100_000, timeout: float = 60):
        out = os.path.join(cs.temp_dir(self), "download.bin")
        proc = harness.curl("-o", out, f"{self.origin.url}/bytes/{size}", proxy=proxy_url,
                            timeout=timeout)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode(errors="replace"))
        self.assertEqual(cs.file_sha256(out), cs.expected_sha256(size))


class VanishingClientTest(SharedOrigin):
    def test_client_vanishing_mid_transfer_does_not_disturb_another(self):
        proxy = harness.Handoff(policy_text=ALLOW_ALL)
        self.addCleanup(proxy.close)
        authority = f"{HOST}:{self.origin.port}"
        size = 64 * 1024 * 1024
        quitter = cs.connect(proxy.host, proxy.port)
        quitter.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        quitter.sendall(f"GET http://{authority}/bytes/{size} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
                        .encode())
        # Read the start of the answer, then stop reading: a slow client, then a gone one.
        first = quitter.recv(4096)
        self.assertTrue(first.startswith(b"HTTP/1.1 200"), first[:100])

        result = {}

        def other_download():
            try:
                self.download_ok(proxy.url, TEN_MB, timeout=120)
                result["ok"] = True
            except BaseException as e:  # reported by the main thread
                result["error"] = e

        other = threading.Thread(target=other_download)
        other.start()
        time.sleep(0.5)
        # Abrupt close: RST instead of FIN, with unread data in the socket.
        quitter.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        quitter.close()
        other.join(timeout=150)
        self.assertFalse(other.is_alive(), "the other download never finished")
        if "error" in result:
            raise result["error"]
        self.assertTrue(proxy.alive(), proxy.process.describe())
        self.download_ok(proxy.url)
        self.assertTrue(proxy.alive(), proxy.process.describe())


class AccessLogFormatTest(SharedOrigin):
    RFC3339_MS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$"

    def test_squid_format_writes_one_native_line_per_request(self):
        proxy = harness.Handoff(policy_text=ALLOW_ALL, log={"format": "squid"})
        self.addCleanup(proxy.close)
        urls = [f"{self.origin.url}/squid-one", f"{self.origin.url}/status/404"]
        for url in urls:
            proc = harness.curl(url, proxy=proxy.url)
            self.assertEqual(proc.returncode, 0, proc.stderr)

        def lines():
            found = [line for line in proxy.stdout_text().splitlines() if line.strip()]
            return found if len(found) >= 2 else None

        found = harness.wait_until(lines, timeout=10, what="two squid log lines")
        self.assertEqual(len(found), 2, found)
        for line, url, status in zip(found, urls, (200, 404)):
            self.assertFalse(line.startswith("{"), f"not squid format: {line}")
            # time elapsed client code/status bytes method URL user hierarchy/peer type
            fields = line.split()
            self.assertEqual(len(fields), 10, line)
            self.assertRegex(fields[0], r"^\d{10}\.\d{3}$", line)
            self.assertRegex(fields[1], r"^\d+$", line)
            self.assertEqual(fields[2], HOST, f"client field should be the address: {line}")
            self.assertRegex(fields[3], rf"^[A-Z_]+/{status}$", line)
            self.assertRegex(fields[4], r"^\d+$", line)
            self.assertEqual(fields[5], "GET", line)
            self.assertEqual(fields[6], url, line)
        self.assertGreater(int(found[0].split()[4]), len(b"hello from origin\n"))

    def test_json_lines_carry_the_spec_fields(self):
        proxy = harness.Handoff(policy_text=ALLOW_ALL)
        self.addCleanup(proxy.close)
        url = f"{self.origin.url}/bytes/5000"
        proc = harness.curl(url, proxy=proxy.url)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        entry = proxy.wait_log(lambda e: e.get("url") == url)
        for field in ("time", "client", "method", "url", "status", "protocol", "intercepted",
                      "tunneled", "action", "rule", "sni", "bytes_from_client",
                      "bytes_from_server", "duration_ms"):
            self.assertIn(field, entry, f"{field} missing from {entry}")
        self.assertRegex(entry["time"], self.RFC3339_MS)
        self.assertRegex(entry["client"], r"^127\.0\.0\.1(:\d+)?$")
        self.assertEqual(entry["method"], "GET")
        self.assertEqual(entry["status"], 200)
        self.assertEqual(entry["action"], "allowed")
        self.assertIs(entry["intercepted"], False)
        self.assertIs(entry["tunneled"], False)
        self.assertGreaterEqual(entry["bytes_from_server"], 5000)
        self.assertGreater(entry["bytes_from_client"], 0)
        self.assertIsInstance(entry["duration_ms"], int)
        self.assertNotIn("error", entry)


class CheckCommandTest(unittest.TestCase):
    def make_config(self, extra_lines: str = "", policy: str = ALLOW_ALL):
        """A complete config, plus extra_lines at its end; returns (path, first extra line)."""
        proxy = harness.Handoff(policy_text=policy, start=False)
        self.addCleanup(proxy.close)
        with open(proxy.conf_path) as f:
            text = f.read()
        if not text.endswith("\n"):
            text += "\n"
        first_extra = text.count("\n") + 1
        with open(proxy.conf_path, "w") as f:
            f.write(text + extra_lines)
        return proxy.conf_path, first_extra

    def check(self, conf: str, cwd: str = None):
        return harness.run_handoff("-c", conf, "--check", cwd=cwd)

    def assert_rejected(self, conf, line, *words):
        proc = self.check(conf)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        output = proc.stdout + proc.stderr
        self.assertRegex(output, rf"{re.escape(conf)}:{line}(:\d+)?:", output)
        for word in words:
            self.assertIn(word, output)

    def test_good_config_passes(self):
        conf, _ = self.make_config()
        proc = self.check(conf)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    def test_unknown_key_is_reported_with_its_line(self):
        conf, line = self.make_config("[proxy]\nlisten_backlog = 10\n")
        self.assert_rejected(conf, line + 1, "listen_backlog")

    def test_unknown_section_is_reported_with_its_line(self):
        conf, line = self.make_config("[caching]\nsize = 10\n")
        proc = self.check(conf)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        output = proc.stdout + proc.stderr
        self.assertIn("caching", output)
        self.assertRegex(output, rf"{re.escape(conf)}:({line}|{line + 1})(:\d+)?:", output)

    def test_bad_value_is_reported_with_its_line(self):
        conf, line = self.make_config("[proxy]\n\nheader_timeout_s = soon\n")
        self.assert_rejected(conf, line + 2, "header_timeout_s", "soon")

    def test_bad_listen_address_is_reported(self):
        conf, line = self.make_config("[proxy]\nlisten = 127.0.0.1:99999\n")
        self.assert_rejected(conf, line + 1, "listen")

    def test_relative_paths_resolve_against_the_config_folder(self):
        # A broken policy next to the config: --check run from elsewhere must still find it.
        conf, _ = self.make_config(policy="<proxy>\n  no.such.condition=1 ALLOW\n")
        elsewhere = cs.temp_dir(self)
        proc = self.check(conf, cwd=elsewhere)
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn(os.path.join(os.path.dirname(conf), "policy.cpl"), proc.stdout + proc.stderr)
        conf_ok, _ = self.make_config()
        proc = self.check(conf_ok, cwd=elsewhere)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)


class RelativePathsAtRunTimeTest(SharedOrigin):
    def test_running_from_another_folder_uses_the_files_next_to_the_config(self):
        proxy = harness.Handoff(
            policy_text="<proxy>\n  url.domain=denied.test DENY\n  ALLOW\n",
            files={"custom.pac": "function FindProxyForURL(u, h) { return \"DIRECT\"; } // custom\n"},
            pac={"file": "custom.pac"}, start=False)
        self.addCleanup(proxy.close)
        elsewhere = cs.temp_dir(self)
        process = harness.ManagedProcess([proxy.binary, "-c", proxy.conf_path], elsewhere,
                                         "handoff")
        self.addCleanup(process.stop)
        harness.wait_port(proxy.host, proxy.port, 15, alive=process.alive)
        proc = harness.curl(f"{proxy.url}/proxy.pac")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(b"// custom", proc.stdout, process.describe())
        proc = harness.curl("-w", "|%{http_code}", "http://denied.test/", proxy=proxy.url)
        self.assertTrue(proc.stdout.endswith(b"|403"), proc.stdout)
        self.assertIn(b"policy.cpl:2", proc.stdout)


class ListenerTest(SharedOrigin):
    def test_ipv6_loopback_listener(self):
        if not ipv6_loopback_available():
            self.skipTest("no IPv6 loopback on this machine")
        port = _free_port6()
        proxy = harness.Handoff(policy_text=ALLOW_ALL, proxy={"listen": f"[::1]:{port}"})
        self.addCleanup(proxy.close)
        self.download_ok(f"http://[::1]:{port}")
        entry = proxy.wait_log(lambda e: e.get("status") == 200)
        self.assertIn("::1", entry.get("client", ""), entry)

    def test_a_port_already_in_use_is_refused_with_exit_code_2(self):
        first = harness.Handoff(policy_text=ALLOW_ALL, proxy={"workers": "2"})
        self.addCleanup(first.close)
        second = harness.Handoff(policy_text=ALLOW_ALL, start=False,
                                 proxy={"listen": f"{harness.HOST}:{first.port}"})
        self.addCleanup(second.close)
        proc = subprocess.run([second.binary, "-c", second.conf_path], capture_output=True,
                              timeout=30, env=harness.clean_env())
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn(f"{harness.HOST}:{first.port}", proc.stderr.decode())
        self.assertIn("in use", proc.stderr.decode())
        # The first instance is untouched and keeps serving.
        self.download_ok(first.url)

    def test_two_listen_addresses_both_serve(self):
        first = harness.free_port()
        second = harness.free_port("127.0.0.2")
        proxy = harness.Handoff(policy_text=ALLOW_ALL,
                                proxy={"listen": f"127.0.0.1:{first}, 127.0.0.2:{second}"})
        self.addCleanup(proxy.close)
        harness.wait_port("127.0.0.2", second, 10)
        self.download_ok(f"http://127.0.0.1:{first}")
        self.download_ok(f"http://127.0.0.2:{second}")

    def test_ipv4_and_ipv6_listeners_together(self):
        if not ipv6_loopback_available():
            self.skipTest("no IPv6 loopback on this machine")
        first = harness.free_port()
        second = _free_port6()
        proxy = harness.Handoff(policy_text=ALLOW_ALL,
                                proxy={"listen": f"127.0.0.1:{first}, [::1]:{second}"})
        self.addCleanup(proxy.close)
        harness.wait_port("::1", second, 10)
        self.download_ok(f"http://127.0.0.1:{first}")
        self.download_ok(f"http://[::1]:{second}")

    def test_two_workers_serve_many_connections(self):
        proxy = harness.Handoff(policy_text=ALLOW_ALL, proxy={"workers": "2"})
        self.addCleanup(proxy.close)
        errors = []

        def fetch(i):
            proc = harness.curl(f"{self.origin.url}/conn-id?{i}", proxy=proxy.url)
            if proc.returncode != 0 or not proc.stdout.strip().isdigit():
                errors.append((i, proc.returncode, proc.stdout, proc.stderr))

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(errors, [])

        def served():
            ok = [e for e in proxy.log_lines() if e.get("status") == 200]
            return ok if len(ok) >= 16 else None

        harness.wait_until(served, timeout=10, what="16 logged requests")


def _free_port6() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


class SignalTest(SharedOrigin):
    def test_sigterm_stops_accepting_and_lets_a_transfer_finish(self):
        proxy = harness.Handoff(policy_text=ALLOW_ALL)
        self.addCleanup(proxy.close)
        out = os.path.join(cs.temp_dir(self), "slow.bin")
        # About 6 s at this rate, and far more than the socket buffers on the way can hold,
        # so the proxy must keep relaying after the signal for the download to complete.
        size = 48 * 1024 * 1024
        download = subprocess.Popen(
            ["curl", "-sS", "--max-time", "60", "--limit-rate", "8M", "--proxy", proxy.url,
             "-o", out, f"{self.origin.url}/bytes/{size}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=harness.clean_env())
        self.addCleanup(lambda: download.poll() is None and download.kill())
        harness.wait_until(lambda: os.path.exists(out) and os.path.getsize(out) > 1_000_000,
                           timeout=20, what="the download under way")
        proxy.signal(signal.SIGTERM)
        harness.wait_until(lambda: not harness.port_open(proxy.host, proxy.port), timeout=5,
                           what="the proxy port closed after SIGTERM")
        _, err = download.communicate(timeout=60)
        self.assertEqual(download.returncode, 0,
                         f"the transfer in progress did not complete after SIGTERM: {err!r}\n"
                         f"{proxy.process.describe()}")
        self.assertEqual(cs.file_sha256(out), cs.expected_sha256(size))
        try:
            code = proxy.process.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = "still running 15 s after its last connection ended"
        self.assertEqual(code, 0, proxy.process.describe())

    def test_sighup_without_changes_keeps_serving(self):
        proxy = harness.Handoff(policy_text=ALLOW_ALL)
        self.addCleanup(proxy.close)
        self.download_ok(proxy.url)
        proxy.reload()
        time.sleep(0.5)
        self.assertTrue(proxy.alive(), proxy.process.describe())
        self.download_ok(proxy.url)
        proxy.reload()
        self.download_ok(proxy.url)
        self.assertTrue(proxy.alive(), proxy.process.describe())


if __name__ == "__main__":
    unittest.main()
