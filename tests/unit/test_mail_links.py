"""Where an email's link goes: in dev mode the base URL follows PORT and the link opens the page
signed in, as `make run`'s printed link does; in production BASE_URL's page, never a token."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import jwt

from pmd_service.core.settings import Settings
from pmd_service.dev.stack import banner
from pmd_service.features.bdr.mail import BdrMail, compose
from pmd_service.features.exports.mail import ExportMail, compose_export

SECRET = "s" * 32


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    return {
        "DATABASE_URL": "postgresql://db/x",
        "REDIS_URL": "redis://r",
        "JWT_SECRET_KEY": SECRET,
        "PMD_DATA_DIR": str(tmp_path),
    } | more


def _links(settings: Settings) -> list[str]:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    bdr = BdrMail("a@x.test", "demo", "Uk", "b1", "ready", 2, at, None)
    export = ExportMail("a@x.test", "demo", "Uk", "e1", "ready", 2, 1, 10, at, None)
    texts = [compose(settings, bdr), compose_export(settings, export)]
    return [
        line
        for message in texts
        for line in message.get_body(("plain",)).get_content().splitlines()  # type: ignore[union-attr]
        if "/u/Uk/posts?" in line
    ]


def test_in_dev_mode_an_email_link_follows_the_port_and_signs_in(tmp_path: Path) -> None:
    settings = Settings.from_env(_env(tmp_path, PORT="18900", PMD_DEV="1"))
    assert settings.base_url == "http://127.0.0.1:18900"
    links = _links(settings)
    assert [link.split("#")[0] for link in links] == [
        "http://127.0.0.1:18900/u/Uk/posts?bdr=b1",
        "http://127.0.0.1:18900/u/Uk/posts?export=e1",
    ]
    for link in links:
        token = link.split("#token=")[1]
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        assert claims["sub"] == "Uk"
    # The printed hint for more demo posts runs on the same port.
    text = banner(settings.base_url, "Uk", "t", 8, settings)
    assert "PORT=18900 PMD_DEV=1" in text and "http://127.0.0.1:18900/u/Uk/posts#token=t" in text


def test_in_production_an_email_link_is_base_urls_page_without_a_token(tmp_path: Path) -> None:
    settings = Settings.from_env(_env(tmp_path, PORT="18900", BASE_URL="https://pmd.example"))
    assert _links(settings) == [
        "https://pmd.example/u/Uk/posts?bdr=b1",
        "https://pmd.example/u/Uk/posts?export=e1",
    ]
