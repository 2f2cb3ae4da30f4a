"""Request and response shapes of the posts endpoints (also the OpenAPI schemas)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta

from ..core.visibility import RESTORE_WINDOW_DAYS
from ..host.eligibility import PostIds, Sqid
from .cursor import MAX_CURSOR
from .filters import FilterKeys, Tag
from .host_rules import MAX_TAGS_PER_POST
from .sorting import SORTS

MAX_PAGE = 512


class PostsQuery(FilterKeys, forbid_unknown_fields=False, omit_defaults=False):
    """The query of GET /api/pmd/posts: the filter's keys (each alone or combined; a cursor
    stays bound to the filter it came with), then the page's and its order's."""

    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE, description="Page size")] = MAX_PAGE
    sort: (
        Annotated[
            str,
            Meta(
                max_length=20,
                description=f"The order's key: {', '.join(SORTS)} (default `created_at`; the "
                "deleted listing's default is the deletion time). Counts are of reactions and "
                "of visible comments; ids break ties",
            ),
        ]
        | None
    ) = None
    order: (
        Annotated[
            str,
            Meta(
                max_length=4,
                description="`asc` or `desc` (default `desc`, `asc` for `title`); a cursor "
                "stays bound to its sort and order",
            ),
        ]
        | None
    ) = None
    cursor: (
        Annotated[
            str,
            Meta(
                max_length=MAX_CURSOR,
                description="`next_cursor` of the previous page; omit for the first page",
            ),
        ]
        | None
    ) = None
    deleted: Annotated[
        bool,
        Meta(
            description=f"List posts deleted within the {RESTORE_WINDOW_DAYS}-day restore window "
            "instead"
        ),
    ] = False

    def filter_keys(self) -> FilterKeys:
        return FilterKeys(**{key: getattr(self, key) for key in FilterKeys.__struct_fields__})


Action = Literal["hide", "unhide", "delete", "restore", "tags", "remixable"]


class PostFile(msgspec.Struct):
    format: str
    file_bytes: int | None
    is_native: bool


class ArtworkHolder(msgspec.Struct):
    """The live post that holds a deleted post's artwork (the same file uploaded again)."""

    post_id: int
    public_sqid: str | None


RestoreRefusal = Literal["deleted-by-moderator", "artwork-reuploaded"]
Restorable = Annotated[
    bool | None,
    Meta(
        description="Deleted listing: whether the caller may restore the post (null in the "
        "live listing)"
    ),
]
RestoreRefusalField = Annotated[
    RestoreRefusal | None,
    Meta(
        description="Deleted listing: why the post cannot be restored: a moderator deleted it "
        "(only a moderator may restore it), or its artwork was uploaded again as `held_by` "
        "(the site keeps one live post per artwork)"
    ),
]
HeldByField = Annotated[
    ArtworkHolder | None,
    Meta(description="Deleted listing: the live post that now holds this post's artwork"),
]


Files = TypeVar("Files")


class _Post(msgspec.Struct, Generic[Files]):
    """A posts item's fields; `Files`: how its `files` are held (see ListedPost)."""

    id: int
    public_sqid: str | None
    title: str
    description: str | None
    created_at: datetime
    width: int | None
    height: int | None
    frame_count: int
    files: Files
    art_url: str | None
    hidden_by_user: bool
    hidden_by_mod: bool
    reaction_count: int
    comment_count: int
    view_count: int
    license_identifier: str | None
    # Beyond the host's page (which ignores them): the filter's and the bulk editors' fields.
    hashtags: list[str]
    mod_hashtags: Annotated[
        list[str],
        Meta(description="A moderator's tags (also in `hashtags`); the artist keeps them"),
    ]
    remixable: bool
    layers_bytes: Annotated[
        int | None, Meta(description="The attached `.mkpx` layers file's size, or null")
    ]
    deleted_by_user_date: datetime | None = None
    restorable: Restorable = None
    restore_refusal: RestoreRefusalField = None
    held_by: HeldByField = None


class PostItem(_Post[list[PostFile]]):
    pass


class ListedPost(_Post[msgspec.Raw]):
    """PostItem as the list query yields it: `files` as the JSON text the query built
    (posts/listing.py), so it encodes to the same bytes."""


TotalCount = Annotated[
    int,
    Meta(
        description="The listing's posts, counted by the first page (no cursor); later pages "
        "of the same walk repeat that figure, carried in the cursor, without counting again."
    ),
]


MatchDigest = Annotated[
    str | None,
    Meta(
        description="An opaque digest of the whole matching set (not only this page), from "
        "the first page (later pages: null); an action by `filter` sends it as "
        "`expect_digest` to act on that very set"
    ),
]


Item = TypeVar("Item")


class _Page(msgspec.Struct, Generic[Item]):
    items: list[Item]
    next_cursor: str | None
    total_count: TotalCount
    match_digest: MatchDigest = None


class PostPage(_Page[PostItem]):
    pass


class ListedPage(_Page[ListedPost]):
    """PostPage of ListedPost items (PostPage stays the documented shape)."""


ExpectCount = Annotated[
    int,
    Meta(
        ge=0,
        le=2_147_483_647,
        description="With `filter`: how many posts the person approved (the listing's "
        "`total_count`); a different number at run time is a 409 carrying the current one",
    ),
]
ExpectDigest = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        description="With `filter`, beside `expect_count`: the listing's `match_digest` for "
        "the same filter; the action then runs only on that very set (a 409 carrying the "
        "current `count` and `match_digest` otherwise)",
    ),
]
FilterField = Annotated[
    FilterKeys,
    Meta(
        description="Instead of `post_ids`: every eligible post that matches, as the keys of "
        "GET /api/pmd/posts (`hashtag` a list); needs `expect_count`"
    ),
]
Tags = Annotated[list[Tag], Meta(max_length=MAX_TAGS_PER_POST)]


class ActionRequest(msgspec.Struct, forbid_unknown_fields=True):
    action: Action
    post_ids: PostIds | None = None
    filter: FilterField | None = None
    expect_count: ExpectCount | None = None
    expect_digest: ExpectDigest | None = None
    add: Annotated[Tags, Meta(description="`tags`: tags to add (normalised as the site does)")] = []
    remove: Annotated[
        Tags, Meta(description="`tags`: tags to remove (a moderator's tags stay)")
    ] = []
    value: Annotated[bool, Meta(description="`remixable`: the new remix permission")] | None = None
    target_sqid: Sqid | None = None


class LicenseRequest(msgspec.Struct, forbid_unknown_fields=True):
    license_id: Annotated[int, Meta(ge=1, le=2_147_483_647)] | None
    post_ids: PostIds | None = None
    filter: FilterField | None = None
    expect_count: ExpectCount | None = None
    expect_digest: ExpectDigest | None = None
    target_sqid: Sqid | None = None


class ActionResult(msgspec.Struct):
    success: bool
    affected_count: Annotated[
        int,
        Meta(description="The posts acted on: every id sent (the batch is all-or-nothing)"),
    ]
    message: Annotated[
        str,
        Meta(
            description="In the host site's words: `Hidden 3 post(s)`, "
            "`Changed license to CC-BY-4.0 for 3 post(s)`, `Removed license from 3 post(s)`"
        ),
    ]
    changed_count: Annotated[
        int,
        Meta(description="Of those, the posts whose row changed (hiding a hidden post does not)"),
    ]
    undo: Annotated[
        str | None,
        Meta(
            description="POST here within 24 hours to put back what this action changed "
            "(null when it changed nothing)"
        ),
    ] = None


class UndoResult(msgspec.Struct):
    success: bool
    affected_count: Annotated[int, Meta(description="The posts put back as they were")]
    message: str
    left_post_ids: Annotated[
        list[int],
        Meta(description="Posts the action changed that changed again since: left as they are"),
    ]


HISTORY_PAGE = 50


class ActionsQuery(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=False):
    """The query of GET /api/pmd/actions."""

    limit: Annotated[
        int, Meta(ge=1, le=HISTORY_PAGE, description="Page size: the newest actions first")
    ] = HISTORY_PAGE
    cursor: (
        Annotated[
            str,
            Meta(
                max_length=100,
                description="`next_cursor` of the previous page; omit for the first page",
            ),
        ]
        | None
    ) = None


class ActionItem(msgspec.Struct):
    """One bulk action on the target's posts."""

    id: uuid.UUID
    action: Annotated[
        Action | Literal["license"], Meta(description="What it did (`license`: POST /license)")
    ]
    created_at: datetime
    changed_count: Annotated[int, Meta(description="The posts whose row it changed")]
    by_moderator: Annotated[
        bool, Meta(description="A moderator did it (on the owner's posts, as a moderator)")
    ]
    by_you: Annotated[bool, Meta(description="The caller did it")]
    undone_at: Annotated[datetime | None, Meta(description="When it was undone, or null")]
    undo: Annotated[
        str | None,
        Meta(
            description="The undo link, as the action's own answer gave it, while the caller "
            "may undo it: only who acted, once, within 24 hours, while its history is kept "
            "(else null; an owner never undoes a moderator's action)"
        ),
    ]


class ActionList(msgspec.Struct):
    items: list[ActionItem]
    next_cursor: Annotated[
        str | None, Meta(description="The next (older) page's `cursor`; null on the last page")
    ]


class License(msgspec.Struct):
    id: int
    identifier: str | None
    title: str | None


class LicenseList(msgspec.Struct):
    items: list[License]
