"""SMTP encryption and the password, against real SMTP servers (aiosmtpd) behind a relay that
records every byte the client sends.

With SMTP_STARTTLS unset the client used to be told `start_tls=False`: even a server offering
STARTTLS got the login, password included, in clear. Unset now means STARTTLS whenever the
server offers it; a password over a connection left unencrypted is refused (one ERROR line, the
BDR stays ready, the email stays owed) unless SMTP_ALLOW_PLAIN_AUTH=true.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiohttp.test_utils import TestClient
from aiosmtpd.smtp import AuthResult, LoginPassword
from msgspec.structs import replace

from pmd_service.core.settings import Settings
from pmd_service.features.bdr.mail import BdrMail, compose, send_bdr_email
from pmd_service.mail.compose import PlainAuthRefused, send
from support import tools
from support.mailbox import Mailbox
from support.seeding import Factory
from tests.helpers import after_worker, ready_owing_email

Client = TestClient[Any, Any]
USER, PASSWORD = "pmd-mailer", "s3cret-Pa55word-not-for-the-wire"


@dataclass
class AuthMailbox(Mailbox):
    """A mailbox that takes AUTH (PLAIN, LOGIN) for USER/PASSWORD, noting each login and
    whether it came over TLS, and each message's too."""

    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, over TLS)
    tls_messages: list[bool] = field(default_factory=list)
    tls_context: ssl.SSLContext | None = None  # set: STARTTLS offered

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        user, password = data.login.decode(), data.password.decode()
        self.logins.append((user, session.ssl is not None))
        return AuthResult(success=(user, password) == (USER, PASSWORD))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tls_messages.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(
            self,
            hostname=self.host,
            port=self.port,
            tls_context=self.tls_context,
            authenticator=self.authenticate,
            auth_require_tls=False,  # AUTH offered in clear too
        )
        self.controller.start()


class Relay:
    """A TCP relay in front of the SMTP server `box`, keeping every byte the client sent."""

    def __init__(self, box: AuthMailbox) -> None:
        self.box = box
        self.sent = bytearray()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Relay:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.box.port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            try:
                while chunk := await src.read(65536):
                    if keep:
                        self.sent += chunk
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    def password_seen(self) -> bool:
        """The password in any form AUTH PLAIN or LOGIN sends it, or as it is."""
        secret = PASSWORD.encode()
        forms = [
            secret,
            base64.b64encode(secret),
            base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()),
        ]
        return any(form in self.sent for form in forms)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl: (cert, key)."""
    missing = tools.missing(["openssl"])
    assert missing is None, missing
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def trusted(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker trusts the certificate as it would a private CA's: OpenSSL's SSL_CERT_FILE
    (aiosmtplib verifies with Python's default context, which reads it)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))


@pytest.fixture
async def starttls_relay(certificate: tuple[Path, Path], trusted: None) -> AsyncIterator[Relay]:
    """A relay before a mailbox that offers STARTTLS with `certificate`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    with AuthMailbox(tls_context=context) as box:
        async with Relay(box) as relay:
            yield relay


@pytest.fixture
async def plain_relay() -> AsyncIterator[Relay]:
    """A relay before a mailbox that offers no STARTTLS."""
    with AuthMailbox() as box:
        async with Relay(box) as relay:
            yield relay


def through(settings: Settings, relay: Relay, **overrides: Any) -> Settings:
    chosen: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": relay.port,
        "smtp_username": USER,
        "smtp_password": PASSWORD,
        "smtp_timeout": 5.0,
        "mail_from": "PMD <pmd@pmd.test>",
    }
    return replace(settings, **(chosen | overrides))


async def test_unset_starttls_is_used_when_offered_and_the_password_goes_encrypted(
    client: Client,
    factory: Factory,
    settings: Settings,
    starttls_relay: Relay,
) -> None:
    assert settings.smtp_starttls is None  # the default: SMTP_STARTTLS unset
    owner, [post] = await factory.owner_and_posts(1)
    worker = through(settings, starttls_relay)
    item = await after_worker(client, worker, owner, [post.id], send_email=True)
    assert item["status"] == "ready"
    assert starttls_relay.box.logins == [(USER, True)]
    assert starttls_relay.box.tls_messages == [True] and len(starttls_relay.box.messages) == 1
    assert b"STARTTLS" in starttls_relay.sent
    assert not starttls_relay.password_seen()


async def test_no_starttls_offered_the_password_is_refused_and_the_email_stays_owed(
    client: Client,
    factory: Factory,
    settings: Settings,
    plain_relay: Relay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner, [post] = await factory.owner_and_posts(1)
    worker = through(settings, plain_relay)
    item = await after_worker(client, worker, owner, [post.id], send_email=True)
    assert item["status"] == "ready"  # not failed by it
    assert plain_relay.box.logins == [] and plain_relay.box.messages == []
    assert b"AUTH" not in plain_relay.sent and not plain_relay.password_seen()
    row = await factory.pool.fetchrow(
        "SELECT email_sent_at FROM batch_download_requests WHERE id = $1::uuid", item["id"]
    )
    assert row is not None and row["email_sent_at"] is None  # released: the sweep tries again
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and item["id"] in r.message]
    assert len(errors) == 1
    assert "the server offered no STARTTLS" in errors[0].message
    assert "SMTP_ALLOW_PLAIN_AUTH=true" in errors[0].message


async def test_starttls_false_never_sends_the_password_in_clear(
    client: Client, factory: Factory, settings: Settings, starttls_relay: Relay
) -> None:
    """SMTP_STARTTLS=false is the only way to send in clear; not a password, though."""
    bdr_id = await ready_owing_email(client, factory, await factory.user())
    settings = through(settings, starttls_relay, smtp_starttls=False)
    assert await send_bdr_email(factory.pool, settings, uuid.UUID(bdr_id)) is False
    assert b"STARTTLS" not in starttls_relay.sent and not starttls_relay.password_seen()


async def test_starttls_false_without_a_password_sends_in_clear(
    client: Client,
    factory: Factory,
    settings: Settings,
    starttls_relay: Relay,
) -> None:
    bdr_id = await ready_owing_email(client, factory, await factory.user())
    settings = through(
        settings, starttls_relay, smtp_starttls=False, smtp_username=None, smtp_password=None
    )
    assert await send_bdr_email(factory.pool, settings, uuid.UUID(bdr_id)) is True
    assert starttls_relay.box.tls_messages == [False] and starttls_relay.box.logins == []


async def test_plain_auth_allowed_only_when_asked(settings: Settings, plain_relay: Relay) -> None:
    mail = BdrMail("a@b.test", "a", "s", str(uuid.uuid4()), "ready", 1, None, None)
    refused = through(settings, plain_relay)
    with pytest.raises(PlainAuthRefused, match="SMTP_ALLOW_PLAIN_AUTH"):
        await send(refused, compose(refused, mail))
    assert plain_relay.box.logins == [] and not plain_relay.password_seen()

    allowed = through(settings, plain_relay, smtp_allow_plain_auth=True)
    await send(allowed, compose(allowed, mail))
    assert plain_relay.box.logins == [(USER, False)] and len(plain_relay.box.messages) == 1
    assert plain_relay.password_seen()  # what the operator allowed, and the relay saw


async def test_required_starttls_refused_by_a_server_without_it_sends_nothing(
    settings: Settings, plain_relay: Relay
) -> None:
    mail = BdrMail("a@b.test", "a", "s", str(uuid.uuid4()), "ready", 1, None, None)
    required = through(settings, plain_relay, smtp_starttls=True)
    with pytest.raises(aiosmtplib.SMTPException):
        await send(required, compose(required, mail))
    assert plain_relay.box.logins == [] and plain_relay.box.messages == []
    assert not plain_relay.password_seen()
