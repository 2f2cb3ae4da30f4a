"""An SMTP server (aiosmtpd, on a thread) keeping every message it receives."""

from __future__ import annotations

import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Self

from support.stack import free_port


@dataclass
class Mailbox:
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    messages: list[EmailMessage] = field(default_factory=list)  # appended by aiosmtpd's thread
    controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(BytesParser(policy=email.policy.default).parsebytes(envelope.content))
        return "250 OK"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname=self.host, port=self.port)
        self.controller.start()

    def stop(self) -> None:
        controller, self.controller = self.controller, None
        if controller is not None:
            controller.stop()

    def received(self) -> list[EmailMessage]:
        return list(self.messages)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
