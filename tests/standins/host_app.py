"""The stand-in for the images the host site builds from its own source (its api, web, worker
and mqtt services, `build:` in its compose file), which cannot be built here: one process
answering HTTP on 8000 (the api's port: `/health` for its healthcheck) and 3000 (the web app's)
with a line naming the port's role and the path it saw, as the api sees it behind its proxy
(`host api saw /auth/login`), and accepting TCP on 1883 (the MQTT broker's port, for its
healthcheck's `netstat`). Whatever command the compose file gives is ignored."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLES = {8000: "api", 3000: "web"}
# In a container: reached over the compose project's network, as the real service is.
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
