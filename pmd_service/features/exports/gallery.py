"""A part's `index.html`: its artworks as a page to browse offline, every link inside the bag."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

import asyncpg

from ...core.visibility import visible_comment
from ...host.mentions import Mentions
from ...zipbuild.content import Artwork
from .bag import BagPlace
from .schemas import BAGIT, part_filename

COMMENTS_SHOWN = 10  # per artwork, newest first

SQL_NEWEST_COMMENTS = f"""
SELECT post_id, author_handle, body, created_at, total FROM (
    SELECT c.post_id, u.handle AS author_handle, c.body, c.created_at,
           row_number() OVER (PARTITION BY c.post_id ORDER BY c.created_at DESC, c.id DESC) AS n,
           count(*) OVER (PARTITION BY c.post_id) AS total
    FROM comments c LEFT JOIN users u ON u.id = c.author_id
    WHERE c.post_id = ANY($1::int[]) AND {visible_comment("c")}
) AS newest
WHERE n <= {COMMENTS_SHOWN}
ORDER BY post_id, created_at DESC
"""
SQL_REACTIONS = """
SELECT post_id, emoji, count(*) AS n FROM reactions WHERE post_id = ANY($1::int[])
GROUP BY post_id, emoji ORDER BY post_id, n DESC, emoji
"""


@dataclass
class Social:
    """What the page shows of each artwork's comments and reactions (when asked for)."""

    comments: dict[int, list[tuple[str, str, datetime]]] = field(default_factory=dict)
    comment_totals: dict[int, int] = field(default_factory=dict)
    reactions: dict[int, list[tuple[str, int]]] = field(default_factory=dict)


async def read_social(
    pool: asyncpg.Pool, post_ids: list[int], *, comments: bool, reactions: bool
) -> Social:
    social = Social()
    if comments and post_ids:
        for row in await pool.fetch(SQL_NEWEST_COMMENTS, post_ids):
            social.comments.setdefault(row["post_id"], []).append(
                (row["author_handle"] or "anonymous", row["body"], row["created_at"])
            )
            social.comment_totals[row["post_id"]] = row["total"]
    if reactions and post_ids:
        for row in await pool.fetch(SQL_REACTIONS, post_ids):
            social.reactions.setdefault(row["post_id"], []).append((row["emoji"], row["n"]))
    return social


_STYLE = """
:root { color-scheme: light dark; --line: #8884; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 1.5rem; max-width: 80rem; }
header p { margin: .25rem 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(18rem, 1fr)); gap: 1rem;
        padding: 0; list-style: none; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .75rem; }
.frame { display: flex; align-items: center; justify-content: center; min-height: 16rem;
         background: repeating-conic-gradient(#8882 0 25%, transparent 0 50%) 0 0 / 16px 16px; }
.frame img { image-rendering: pixelated; max-width: 100%;
             height: auto; }
h2 { font-size: 1.05rem; margin: .5rem 0 .25rem; overflow-wrap: anywhere; }
.meta, .files { font-size: .85rem; margin: .2rem 0; }
.tag { display: inline-block; border: 1px solid var(--line); border-radius: 999px;
       padding: 0 .45rem; margin: 0 .2rem .2rem 0; font-size: .8rem; }
.hidden { color: #b45309; font-weight: 600; }
details { font-size: .85rem; margin-top: .4rem; }
blockquote { margin: .3rem 0; padding-left: .6rem; border-left: 3px solid var(--line);
             white-space: pre-wrap; overflow-wrap: anywhere; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _href(path: str) -> str:
    """A relative URL for a path inside the bag (its names are sqids and fixed words)."""
    return quote(path, safe="/")


def _card(a: Artwork, files: set[str], social: Social, mentions: Mentions) -> str:
    image = f"data/artworks/{a.filename}"
    size = ""
    if a.width and a.height:
        # Whole-step enlargement of small pixel art to about 256 px, never blurred.
        scale = max(1, 256 // max(a.width, a.height))
        size = f' width="{a.width * scale}" height="{a.height * scale}"'
    hidden = [
        w for w, on in (("by you", a.hidden_by_user), ("by a moderator", a.hidden_by_mod)) if on
    ]
    parts = [
        '<li class="card">',
        f'<a class="frame" href="{_href(image)}"><img src="{_href(image)}" alt="{_e(a.title)}"'
        f'{size} loading="lazy"></a>',
        f"<h2>{_e(a.title)}</h2>",
        f'<p class="meta"><time datetime="{a.created_at.isoformat()}">'
        f"{a.created_at:%Y-%m-%d}</time>"
        + (f" · {a.width}×{a.height}" if a.width and a.height else "")
        + (f" · {a.frame_count} frames" if a.frame_count > 1 else "")
        + f" · license: {_e(a.license or 'none')}</p>",
    ]
    if hidden:
        parts.append(f'<p class="meta hidden">Hidden {" and ".join(hidden)}</p>')
    if a.description:
        parts.append(f"<p>{_e(mentions.plain(a.description))}</p>")
    if a.hashtags:
        parts.append(
            "<p>" + "".join(f'<span class="tag">#{_e(t)}</span>' for t in a.hashtags) + "</p>"
        )
    links = [f'<a href="{_href(image)}">image</a>']
    for w in a.working:
        path = f"data/{w.arcname}"
        if path in files:
            label = "layers (.mkpx)" if w.kind == "layers" else "upscaled"
            links.append(f'<a href="{_href(path)}">{label}</a>')
    parts.append(f'<p class="files">Files: {" · ".join(links)}</p>')
    if reactions := social.reactions.get(a.post_id):
        parts.append(
            '<p class="meta">' + " ".join(f"{_e(emoji)} {n}" for emoji, n in reactions) + "</p>"
        )
    if comments := social.comments.get(a.post_id):
        shown = len(comments)
        total = social.comment_totals.get(a.post_id, shown)
        more = f" (the newest {shown}; all in data/comments.json)" if total > shown else ""
        parts.append(
            f"<details><summary>{total} comment{'s' if total != 1 else ''}{more}</summary>"
        )
        for author, body, created_at in comments:
            parts.append(
                f"<blockquote><b>@{_e(author)}</b> · {created_at:%Y-%m-%d}<br>"
                f"{_e(mentions.plain(body))}</blockquote>"
            )
        parts.append("</details>")
    parts.append("</li>")
    return "\n".join(parts)


def gallery(
    place: BagPlace, artworks: list[Artwork], social: Social, mentions: Mentions, files: set[str]
) -> bytes:
    """`index.html` from the payload's names, showing only what the part holds."""
    shown = [a for a in artworks if f"data/artworks/{a.filename}" in files]
    others = [
        part_filename(place.export_id, n, place.count, BAGIT)
        for n in range(1, place.count + 1)
        if n != place.number
    ]
    follows = listed = ""
    if place.follows is not None and place.since is not None:
        gone = "; the posts gone since are listed in data/removed.json"
        follows = (
            f"<p>Only what changed since export {_e(place.follows)} started "
            f"({place.since:%Y-%m-%d %H:%M} UTC){gone if place.number == 1 else ''}.</p>"
        )
    if others:
        names = ", ".join(f"<code>{_e(name)}</code>" for name in others)
        listed = (
            "<p>The other parts of this export, each a ZIP like the one this folder came "
            f"from: {names}.</p>"
        )
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@{_e(place.handle)}: Makapix Club export, part {place.number} of {place.count}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>@{_e(place.handle)}: artworks exported from Makapix Club</h1>
<p>Export {_e(place.export_id)}, part {place.number} of {place.count}: {len(shown)} artwork{"s" if len(shown) != 1 else ""}.</p>
{follows}{listed}<p>Everything about each artwork is in <a href="data/metadata.json">data/metadata.json</a>; how to check that this part is whole: <a href="README.txt">README.txt</a>.</p>
</header>
<main>
<ul class="grid">
{"".join(_card(a, files, social, mentions) for a in shown)}
</ul>
</main>
</body>
</html>
"""
    return page.encode()
