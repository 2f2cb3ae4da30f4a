"""The service's SQL statements, as its modules hold them: what the grants and the host check
are tested against."""

from __future__ import annotations

import importlib
import pkgutil

import pmd_service


def service_statements() -> dict[str, str]:
    """Every SQL_* constant of the package but the standalone-only and catalog modules (and
    the worker's entry module, which reads its settings from the environment on import)."""
    skip = {"dev", "demo", "embedded", "hostcheck", "migrate", "worker"}
    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(pmd_service.__path__, "pmd_service."):
        if info.name.rsplit(".", 1)[-1] in skip:
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.startswith("SQL_") and isinstance(value, str) and value not in found.values():
                found[f"{info.name}.{name}"] = value
    return found
