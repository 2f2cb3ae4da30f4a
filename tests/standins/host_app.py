"""The stand-in for the host's images: HTTP on 8000 and 3000, TCP on 1883 (MQTT)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLES = {8000: "api", 3000: "web"}
EVERY_ADDRESS = "0.0.0.0"  # noqa: S104


class Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        role = ROLES[self.connection.getsockname()[1]]
        body = f"host {role} saw {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


def _accept_and_close(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        conn.close()


def main() -> None:
    for port in ROLES:
        server = ThreadingHTTPServer((EVERY_ADDRESS, port), Answer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    mqtt = socket.create_server((EVERY_ADDRESS, 1883))
    threading.Thread(target=_accept_and_close, args=(mqtt,), daemon=True).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
