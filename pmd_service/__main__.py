"""Operations CLI: `python -m pmd_service --help`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .settings import ConfigError, Settings


def _resolved() -> Settings:
    settings = Settings.from_env()
    if settings.embedded:
        from .embedded import with_embedded_services

        settings = with_embedded_services(settings)
    return settings


async def _migrate(settings: Settings) -> None:
    from .db import connect
    from .migrate import apply_migrations

    assert settings.database_url is not None
    conn = await connect(settings.database_url, "pmd-cli")
    try:
        applied = await apply_migrations(conn)
    finally:
        await conn.close()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")


async def _token(settings: Settings, sqid: str, ttl: int) -> None:
    from .auth import mint_token
    from .db import connect

    assert settings.database_url is not None
    conn = await connect(settings.database_url, "pmd-cli")
    try:
        roles = await conn.fetchval("SELECT roles FROM users WHERE public_sqid = $1", sqid)
    finally:
        await conn.close()
    if roles is None:
        sys.exit(f"no user has the public id {sqid!r}")
    print(mint_token(settings.jwt_secret_key, sqid, ttl_seconds=ttl, roles=list(roles)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pmd_service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser("dev", help="run everything locally (what `make run` does)")
    token = sub.add_parser("token", help="mint a Bearer token for a user (dev and support)")
    token.add_argument("user_sqid", help="the user's public id")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    args = parser.parse_args(argv)

    try:
        if args.command == "dev":
            from .dev import run_dev

            return run_dev()
        settings = _resolved()
        if args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "token":
            if args.ttl <= 0:
                parser.error("--ttl must be a positive number of seconds")
            asyncio.run(_token(settings, args.user_sqid, args.ttl))
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
