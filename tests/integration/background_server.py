"""A threaded TCP server running in a background thread, for the test servers.

stop() also ends the connections still open, so a test never waits on a handler blocked in
recv(). Handlers call track()/untrack() for the sockets they serve.
"""

import socket
import socketserver
import threading


class BackgroundServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler):
        self.lock = threading.Lock()
        self.open_sockets = set()
        self.thread = None
        super().__init__(address, handler)
        self.port = self.server_address[1]

    def track(self, sock) -> None:
        with self.lock:
            self.open_sockets.add(sock)

    def untrack(self, sock) -> None:
        with self.lock:
            self.open_sockets.discard(sock)

    def start(self):
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        with self.lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.thread:
            self.thread.join(timeout=5)
