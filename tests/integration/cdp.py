"""A headless Chromium driven over the DevTools protocol on a pipe (stdlib only).

`--dump-dom` loads one URL and dumps the DOM when the first load ends or a virtual-time budget
runs out; a test that needs several navigations in one browser, in order, and to wait for a page
that takes real time (a Kerberos exchange with the KDC) uses `Browser` instead:
`--remote-debugging-pipe` reads NUL-terminated JSON commands on fd 3 and answers on fd 4.
"""

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

from harness import clean_env

CHROMIUM = "/usr/bin/chromium"
BASE_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage")


def _above_4(fd: int) -> int:
    """fd moved above 4, so placing the pipe ends on 3 and 4 cannot close one of them."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Browser:
    """One Chromium process with a private profile; close() ends it (its process group)."""

    def __init__(self, flags=(), env: dict = None, timeout: float = 60.0):
        self.deadline = time.monotonic() + timeout
        self.profile = tempfile.mkdtemp(prefix="handoff-chromium-")
        to_child, self._to_chromium = map(_above_4, os.pipe())
        self._from_chromium, from_child = map(_above_4, os.pipe())
        # The protocol's fds are 3 and 4 in the child; bash (dash stops at fd 9) moves them there.
        shell = f'exec "$@" 3<&{to_child} 4>&{from_child} {to_child}<&- {from_child}>&-'
        self.stderr_path = os.path.join(self.profile, "chromium.stderr")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", shell, "bash", CHROMIUM, *BASE_FLAGS,
             f"--user-data-dir={self.profile}", "--remote-debugging-pipe", *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            pass_fds=(to_child, from_child), env=clean_env(env), cwd=self.profile,
            start_new_session=True)
        os.close(to_child)
        os.close(from_child)
        self._next_id = 0
        self._buffer = b""
        self.session = None

    def call(self, method: str, params: dict = None, session: bool = True) -> dict:
        """Sends one command and returns its result; events in between are dropped."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_chromium, json.dumps(msg).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_chromium], [], [], left)
            if ready:
                chunk = os.read(self._from_chromium, 65536)
                if not chunk:
                    raise RuntimeError(f"chromium closed its pipe:\n{self.stderr()[-3000:]}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> None:
        """Opens a tab on url and attaches to it; later calls go to that tab."""
        target = self.call("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})

    def page(self, url: str, timeout: float = 20.0) -> str:
        """The text of the tab once it shows url fully loaded (waiting up to timeout)."""
        end = min(time.monotonic() + timeout, self.deadline)
        expr = "JSON.stringify([location.href, document.readyState, document.body ? " \
               "document.body.innerText : ''])"
        state = None
        while time.monotonic() < end:
            value = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
            state = json.loads(value.get("result", {}).get("value", "null") or "null")
            if state and state[0] == url and state[1] == "complete":
                return state[2]
            time.sleep(0.1)
        raise AssertionError(f"{url} not loaded within {timeout}s (last state {state});"
                             f" chromium:\n{self.stderr()[-3000:]}")

    def stderr(self) -> str:
        self._stderr.flush()
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def close(self) -> None:
        """Asks Chromium to quit, then ends its process group if it is still there."""
        try:
            if self.proc.poll() is None:
                self.session = None
                self.deadline = time.monotonic() + 5
                self.call("Browser.close", session=False)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this object started
            self.proc.wait(timeout=10)
        for fd in (self._to_chromium, self._from_chromium):
            os.close(fd)
        self._stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)
