"""Every activity of an archive export, and its actor.json, read by a JSON-LD processor (PyLD):
expanded with the ActivityStreams context, no term falls out and no type is unknown, and the
compacted form has every key the activity has. The context is the W3C's, vendored beside this
file (activitystreams.jsonld, as served at www.w3.org/ns/activitystreams, under the W3C Software
and Document License); the processor's loader serves it alone, so nothing is fetched."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import asyncpg
from pyld import jsonld

from pmd_service.core.settings import Settings
from pmd_service.features.exports.activitypub import CONTEXT
from support.seeding import Factory
from tests.exports import ready_export, seeded
from tests.helpers import Client

AS = "https://www.w3.org/ns/activitystreams"
VENDORED = {AS: json.loads(Path(__file__).with_name("activitystreams.jsonld").read_text())}
# Mastodon's actor.json names its bookmarks file by a key no context defines; importers read it
# by that key.
UNDEFINED_IN_ACTOR = {"bookmarks"}


def _loader(url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    if url.rstrip("/") not in VENDORED:
        raise jsonld.JsonLdError(f"not vendored: {url}", "jsonld.LoadDocumentError")
    document = VENDORED[url.rstrip("/")]
    return {"contentType": "application/ld+json", "contextUrl": None, "documentUrl": url,
            "document": document}  # fmt: skip


OPTIONS = {"documentLoader": _loader, "base": "https://archive.example/"}


def _undefined(expanded: Any) -> set[str]:
    """The keys and types the context did not define: `@vocab` "_:" made them blank nodes."""
    found: set[str] = set()
    if isinstance(expanded, list):
        for item in expanded:
            found |= _undefined(item)
    elif isinstance(expanded, dict):
        for key, value in expanded.items():
            if key.startswith("_:"):
                found.add(key[2:])
            if key == "@type":
                found |= {t[2:] for t in value if t.startswith("_:")}
            found |= _undefined(value)
    return found


def _keys(value: Any) -> set[str]:
    """Every key of a document, nested ones too, but those whose value is null or empty (no
    statement in JSON-LD), the context's, and those the processor spells as keywords."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _keys(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "@context" and item not in (None, [], {}):
                found.add(key)
            found |= _keys(item)
    return found


def _read(document: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(terms the context leaves undefined, keys of the document the compacted form lacks)."""
    expanded = jsonld.expand(document, OPTIONS)
    compacted = jsonld.compact(expanded, {"@context": CONTEXT}, OPTIONS)
    return _undefined(expanded), _keys(document) - _keys(compacted)


async def test_every_activity_expands_with_every_term_kept(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool
) -> None:
    owner, _ = await seeded(factory, pool, small)
    item = await ready_export(ex_client, small, owner, layout="activitypub")
    activities = 0
    for part in item["parts"]:
        resp = await ex_client.get(part["download_url"], headers=owner.auth)
        with zipfile.ZipFile(io.BytesIO(await resp.read())) as archive:
            outbox = json.loads(archive.read("outbox.json"))
            actor = json.loads(archive.read("actor.json"))
        context = outbox["@context"]
        for activity in outbox["orderedItems"]:
            assert _read({"@context": context, **activity}) == (set(), set()), activity
            activities += 1
        undefined, lost = _read(actor)
        assert undefined == UNDEFINED_IN_ACTOR and lost == set(), actor
    assert activities == sum(p["artwork_count"] for p in item["parts"]) == 6
