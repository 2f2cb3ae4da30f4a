"""The stand-in for Mailpit: SMTP on 1025, its API's messages on 8025 (MP_UI_AUTH)."""

from __future__ import annotations

import base64
import email.policy
import json
import os
import threading
import time
import uuid
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

MESSAGES: list[dict[str, Any]] = []
EVERY_ADDRESS = "0.0.0.0"  # noqa: S104


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    return str(part.get_content()) if part is not None else ""


class Catcher:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        MESSAGES.append(
            {
                "ID": uuid.uuid4().hex,
                "From": {"Address": getaddresses([message.get("From", "")])[0][1]},
                "To": [
                    {"Address": address} for _, address in getaddresses(message.get_all("To", []))
                ],
                "Subject": message.get("Subject", ""),
                "Text": _body(message, "plain"),
                "HTML": _body(message, "html"),
            }
        )
        return "250 OK"


class Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        summary = ("ID", "From", "To", "Subject")
        if self.path == "/readyz":
            self._send({"ok": True})
        elif not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="Login"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/api/v1/messages"):
            listed = [{k: m[k] for k in summary} for m in reversed(MESSAGES)]
            self._send({"total": len(MESSAGES), "messages": listed})
        elif found := [m for m in MESSAGES if self.path == f"/api/v1/message/{m['ID']}"]:
            self._send(found[0])
        else:
            self._send({"error": "not found"}, 404)

    def _authorized(self) -> bool:
        wanted = os.environ.get("MP_UI_AUTH")
        if not wanted:
            return True
        given = self.headers.get("Authorization", "")
        return given == "Basic " + base64.b64encode(wanted.encode()).decode()

    def _send(self, value: object, status: int = 200) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    Controller(Catcher(), hostname=EVERY_ADDRESS, port=1025).start()
    api = ThreadingHTTPServer((EVERY_ADDRESS, 8025), Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
