"""An export's part as an account archive other sites import, in the layout Mastodon's backup
writes (its zip version); its rows, progress and publishing are a bag part's (archive.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import html
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec

from ...host.mentions import Mentions, resolve_ahead
from ...host.vault import VaultPathError, vault_file_in
from ...jobs.context import WorkerState
from ...zipbuild.build import FileDigest, Stored, Trailing
from ...zipbuild.content import Artwork, Plan, plan_artworks, pretty_json
from ...zipbuild.json_files import Extras
from ...zipbuild.sources import MAX_ARTWORK_BYTES, http_reader, object_reader
from ...zipbuild.working_files import BAG_FOLDERS, Wanted, WorkingFile, split
from .archive import ExportPart, PartRun
from .bag import BagPlace
from .gallery import Social

# The full context once, at the top of outbox.json and actor.json, as Mastodon writes it.
CONTEXT: list[Any] = [
    "https://www.w3.org/ns/activitystreams",
    {"sensitive": "as:sensitive", "Hashtag": "as:Hashtag"},
]
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
MEDIA = "media_attachments/files"
MEDIA_TYPES = {
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "jpg": "image/jpeg",
}
# A post's files beside its image, by their role in a build's outcome: (media type, what it is).
BESIDE = {
    "layers": ("application/octet-stream", "layers, .mkpx"),  # no registered type
    "palette": ("text/plain", "palette, .hex"),
    "gimp_palette": ("application/x-gimp-palette", "GIMP palette, .gpl"),
}

SQL_PROFILE = "SELECT handle, public_sqid, avatar_url, bio FROM users WHERE id = $1"
# A Note's `updated`: the later of the post's metadata and artwork changes.
SQL_UPDATED = """
SELECT id, greatest(metadata_modified_at, artwork_modified_at) AS updated
FROM posts WHERE id = ANY($1::int[])
"""

# The host keeps an uploaded avatar at `{vault}/avatar/{shard}/{uuid}.{ext}` and stores its
# public URL; any other URL (a GitHub picture) is not in the vault.
_AVATAR = re.compile(
    r"/avatar/((?:[0-9a-f]{2}/){2,3})([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})\.(png|gif|webp|jpg)"
)


@dataclasses.dataclass(frozen=True)
class Profile:
    """What actor.json says of the artist, and their avatar's bytes when the vault has them."""

    handle: str
    actor: str  # the artist's public address on the host: the actor's id
    avatar: tuple[str, bytes] | None  # (its name at the root, its bytes)
    bio: str | None  # as stored: its mentions are served plain


def _vault_bytes(vault: Path, relative: str) -> bytes | None:
    try:
        with vault_file_in(vault.resolve(), relative).open("rb") as handle:
            data = handle.read(MAX_ARTWORK_BYTES + 1)
    except (VaultPathError, OSError):
        return None
    return data if len(data) <= MAX_ARTWORK_BYTES else None


async def _read_avatar(st: WorkerState, relative: str) -> bytes | None:
    """From wherever the artworks come from; None when it cannot be read."""
    if st.artwork_store is not None:
        read = object_reader(st.artwork_store)
    elif st.settings.artwork_base_url and st.http is not None:
        read = http_reader(st.http, st.settings.artwork_base_url)
    else:
        return await asyncio.to_thread(_vault_bytes, st.settings.vault_path, relative)
    return (await read(0, "avatar", relative)).data


async def _avatar(st: WorkerState, url: str | None) -> tuple[str, bytes] | None:
    """An avatar URL the host made -> (its name at the root, its bytes), else None."""
    found = _AVATAR.fullmatch(urlsplit(url).path) if url else None
    if found is None:
        return None
    data = await _read_avatar(st, f"avatar/{found[1]}{found[2]}.{found[3]}")
    return None if data is None else (f"avatar.{found[3]}", data)


def _in_media(plan: Plan) -> Plan:
    """The plan with each post's image, layers file and palette under its media folder."""
    moved = []
    for a in plan.artworks:
        folder = f"{MEDIA}/{a.filename.rpartition('.')[0]}/original"  # named by its safe public id
        working = tuple(
            WorkingFile(w.kind, f"{folder}/{w.arcname.rpartition('/')[2]}") for w in a.working
        )
        palette = a.palette and f"{folder}/{a.palette.rpartition('/')[2]}"
        moved.append(dataclasses.replace(a, folder=folder, working=working, palette=palette))
    return Plan(moved, plan.skipped, plan.sqids)


async def start_archive_part(run: PartRun, place: BagPlace, post_ids: list[int]) -> ArchivePart:
    """Part `place` of an archive export, with what it holds read."""
    user_id = run.claim["user_id"]
    # The layers file and palette go beside each image; an upscaled copy is the site's.
    wanted = Wanted(layers=True, palettes=True, folders=BAG_FOLDERS)
    plan = _in_media(await plan_artworks(run.pool, user_id, post_ids, run.st.public_ids, wanted))
    ids = [a.post_id for a in plan.artworks]
    updated = {r["id"]: r["updated"] for r in await run.pool.fetch(SQL_UPDATED, ids)}
    user = await run.pool.fetchrow(SQL_PROFILE, user_id)
    handle = place.handle if user is None else user["handle"]
    sqid = (user and user["public_sqid"]) or run.st.public_ids.encode(user_id)
    actor = f"{run.st.settings.base_url.rstrip('/')}/u/{quote(sqid, safe='')}"
    avatar = await _avatar(run.st, None if user is None else user["avatar_url"])
    bio = None if user is None else user["bio"]
    mentions = resolve_ahead(run.pool, [bio, *(a.description for a in plan.artworks)], [])
    return ArchivePart(run, place, plan, mentions, Profile(handle, actor, avatar, bio), updated)


class ArchivePart(ExportPart):
    """One part of an archive export: the archive's files at the ZIP's root."""

    def __init__(
        self,
        run: PartRun,
        place: BagPlace,
        plan: Plan,
        mentions: concurrent.futures.Future[Mentions],
        profile: Profile,
        updated: dict[int, datetime],
    ) -> None:
        # Each post carries its files, an incremental export's too: an importer reads one part.
        super().__init__(run, place, plan, None, None, Social(), mentions)
        self.prefix = ""
        # Comments by others are not the artist's to carry to another site.
        self.comments = self.reactions = False
        self.profile = profile
        self.updated = updated

    def trailing(
        self, extras: Extras, added: list[int], skipped: list[tuple[int, str]]
    ) -> list[tuple[str, Trailing]]:
        posts, _, working = split(added, skipped, self.arcnames)
        by_id = {a.post_id: a for a in self.plan.artworks}
        mentions = self.mentions.result()
        creates = (self._create(by_id[p], working.added.get(p, {}), mentions) for p in posts)
        files: list[tuple[str, Trailing]] = [
            ("outbox.json", outbox(creates, len(posts))),
            ("actor.json", actor_json(self.profile, mentions)),
            ("likes.json", _empty_collection("likes.json")),
            ("bookmarks.json", _empty_collection("bookmarks.json")),
        ]
        if self.profile.avatar is not None:
            name, data = self.profile.avatar
            files.append((name, Stored(data)))
        return files

    def closing(self, files: list[FileDigest]) -> Iterable[tuple[str, bytes]]:
        return ()

    def _create(self, a: Artwork, beside: dict[str, str], mentions: Mentions) -> dict[str, Any]:
        """Post `a` a `Create` of a `Note`; `beside`: its other files in the part, by role."""
        actor, base = self.profile.actor, self.run.st.settings.base_url.rstrip("/")
        followers = f"{actor}/followers"
        url = f"{base}/p/{quote(a.sqid, safe='')}"
        hidden = a.hidden_by_user or a.hidden_by_mod
        # A hidden post is not public: its followers only, so no importer shows it to all.
        to, cc = ([followers], []) if hidden else ([PUBLIC], [followers])
        description = mentions.plain(a.description) or ""
        attachment: list[dict[str, Any]] = [
            {
                "type": "Document",
                "mediaType": MEDIA_TYPES.get(a.ext, "application/octet-stream"),
                "url": f"{a.folder}/{a.filename}",
                "name": a.title,
                "width": a.width,
                "height": a.height,
            }
        ]
        for role, (media_type, what) in BESIDE.items():
            if role in beside:
                attachment.append(
                    {
                        "type": "Document",
                        "mediaType": media_type,
                        "url": beside[role],
                        "name": f"{a.title} ({what})",
                    }
                )
        note = {
            "id": url,
            "type": "Note",
            "summary": None,
            "inReplyTo": None,
            "published": _when(a.created_at),
            "updated": _when(self.updated.get(a.post_id) or a.created_at),
            "url": url,
            "attributedTo": actor,
            "to": to,
            "cc": cc,
            "sensitive": False,
            # The title, then the description's paragraphs.
            "content": _paragraphs([a.title, *description.split("\n\n")]),
            "attachment": attachment,
            "tag": [
                {
                    "type": "Hashtag",
                    "href": f"{base}/hashtags/{quote(tag, safe='')}",
                    "name": f"#{tag}",
                }
                for tag in a.hashtags
            ],
        }
        return {
            "id": f"{url}/activity",
            "type": "Create",
            "actor": actor,
            "published": note["published"],
            "to": to,
            "cc": cc,
            "object": note,
        }


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _paragraphs(texts: Iterable[str]) -> str:
    """Each text not blank an HTML paragraph, escaped, its line breaks kept."""
    return "".join(
        f"<p>{html.escape(p.strip()).replace(chr(10), '<br>')}</p>" for p in texts if p.strip()
    )


CHUNK = 256 << 10  # outbox.json is written in pieces of about this many bytes


def outbox(creates: Iterable[dict[str, Any]], total: int) -> Iterator[bytes]:
    """outbox.json, streamed: its context once, then each activity without one."""
    head = msgspec.json.encode(
        {
            "@context": CONTEXT,
            "id": "outbox.json",
            "type": "OrderedCollection",
            "totalItems": total,
            "orderedItems": [],
        }
    )
    pending, size = [head[: -len(b"]}")]], 0
    for i, create in enumerate(creates):
        pending.append((b"," if i else b"") + msgspec.json.encode(create))
        size += len(pending[-1])
        if size >= CHUNK:
            yield b"".join(pending)
            pending, size = [], 0
    pending.append(b"]}")
    yield b"".join(pending)


def actor_json(profile: Profile, mentions: Mentions) -> bytes:
    bio = mentions.plain(profile.bio) or ""
    actor: dict[str, Any] = {
        "@context": CONTEXT,
        "id": profile.actor,
        "type": "Person",
        "url": profile.actor,
        "preferredUsername": profile.handle,
        "name": profile.handle,
        "summary": _paragraphs(bio.split("\n\n")),
        "followers": f"{profile.actor}/followers",
        "outbox": "outbox.json",
        "likes": "likes.json",
        "bookmarks": "bookmarks.json",
    }
    if profile.avatar is not None:
        name = profile.avatar[0]
        kind = MEDIA_TYPES.get(name.rpartition(".")[2], "application/octet-stream")
        actor["icon"] = {"type": "Image", "mediaType": kind, "url": name}
    return pretty_json(actor)


def _empty_collection(name: str) -> bytes:
    """likes.json and bookmarks.json: what the site keeps of them is not the artist's work."""
    document = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": name,
        "type": "OrderedCollection",
        "orderedItems": [],
    }
    return pretty_json(document)
