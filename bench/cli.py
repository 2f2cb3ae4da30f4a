"""What every benchmark's command line shares: `--json FILE`, its figures printed, and the
settings it changed from what ships, kept beside its figures."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from pmd_service.core.settings import SECRET_FIELDS, Settings
from support import stack

# Where a run's own stack is (its servers, folders, ports, secret, embedded mode, migrations
# already applied), not how the service behaves: never a change from what ships.
STACK_FIELDS = frozenset(
    {
        "database_url",
        "redis_url",
        "database_direct_url",
        "data_dir",
        "vault_path",
        "zip_path",
        "jwt_secret_key",
        "base_url",
        "host",
        "port",
        "metrics_port",
        "server_metrics_port",
        "dev_mode",
        "auto_migrate",
        "aws_endpoint_url",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    }
)
VARIABLES = {f.name: f.encode_name for f in msgspec.structs.fields(Settings)}
# Every setting this process's benchmark ran with that is not what ships, by its variable.
CHANGED: dict[str, dict[str, Any]] = {}


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m bench.{name}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    return p


def save(path: Path | None, figures: Any) -> None:
    """The figures into `path`, and the settings changed from what ships into its `changes`."""
    if path is not None:
        path.write_text(json.dumps(figures, indent=2, default=str))
        changes(path).write_text(json.dumps(CHANGED, indent=2, sort_keys=True))


def changes(figures: Path) -> Path:
    """Where a run's changed settings are written beside its figures file."""
    return figures.with_name(f"{figures.stem}.settings.json")


def shipped() -> Settings:
    """The settings as they ship: every default, on stand-in URLs."""
    return Settings(database_url="postgresql://", redis_url="redis://")


def changed(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each setting of `settings` that is not what ships, by its variable: `ran`, `ships`."""
    ships, out = shipped(), {}
    for name, variable in VARIABLES.items():
        ran, default = getattr(settings, name), getattr(ships, name)
        if name in STACK_FIELDS or ran == default:
            continue
        hidden = name in SECRET_FIELDS  # a credential is said to be set, never shown
        out[variable] = {
            "ran": "(set)" if hidden and ran is not None else msgspec.to_builtins(ran),
            "ships": msgspec.to_builtins(default),
        }
    return out


def uses(settings: Settings) -> Settings:
    """`settings`, each of its changes from what ships kept for the figures file (`save`)."""
    for variable, change in changed(settings).items():
        kept = CHANGED.setdefault(variable, {"ran": [], "ships": change["ships"]})
        if change["ran"] not in kept["ran"]:
            kept["ran"].append(change["ran"])
    return settings


def replace(settings: Settings, **changes: Any) -> Settings:
    """`settings` with `changes`, which the figures file records."""
    return uses(msgspec.structs.replace(settings, **changes))


def roomy(settings: Settings, **at_least: int) -> Settings:
    """`settings` with each limit named raised to at least its value: room for the run."""
    return replace(
        settings, **{name: max(n, getattr(settings, name)) for name, n in at_least.items()}
    )


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """A service process's environment on `settings` (stack.service_env), its settings recorded."""
    env = stack.service_env(settings, **extra)
    uses(Settings.from_env(env))
    return env


def in_stack(bench: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """`bench(settings, *args)` on a fresh stack of its own: its figures."""

    async def run() -> Any:
        async with stack.fresh_stack() as settings:
            return await bench(settings, *args)

    return asyncio.run(run())


def show(title: str, figures: dict[str, Any]) -> None:
    """A part's figures on one line: nested ones by their path, a spread by its median."""
    print(f"{title}: {', '.join(_flat(figures))}", flush=True)


def _flat(figures: dict[str, Any], path: str = "") -> Iterator[str]:
    for k, v in figures.items():
        v = v["median"] if isinstance(v, dict) and "median" in v else v
        if isinstance(v, dict):
            yield from _flat(v, f"{path}{k}.")
        elif not isinstance(v, list):
            yield f"{path}{k} {v:.4g}" if isinstance(v, float) else f"{path}{k} {v}"
