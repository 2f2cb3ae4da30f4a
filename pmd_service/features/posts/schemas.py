"""Request and response shapes of the posts endpoints (also the OpenAPI schemas)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta

from ...core.visibility import RESTORE_WINDOW_DAYS
from ...host.eligibility import PostIds, Sqid
from ...host.mentions import MentionRef
from .actions import ACTIONS
from .cursor import MAX_CURSOR
from .filters import Count, FilterKeys, Tag
from .host_rules import MAX_TAGS_PER_POST
from .sorting import ORDERS, SORTS

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
                description="The order's key (default `created_at`; the deleted listing's "
                "default is the deletion time). `title` is natural and case-insensitive (#4 "
                "before #24); counts are of reactions and of visible comments; `file_bytes` and "
                "`format` are the native file's (none: smallest); `license` is the identifier "
                "(none: as empty); `hidden` ranks not hidden, hidden by the artist, then by a "
                "moderator; ids break ties",
                extra_json_schema={"enum": list(SORTS)},
            ),
        ]
        | None
    ) = None
    order: (
        Annotated[
            str,
            Meta(
                max_length=4,
                description="`asc` or `desc` (default `desc`; `asc` for `title`, `license` and "
                "`format`); a cursor stays bound to its sort and order",
                extra_json_schema={"enum": list(ORDERS)},
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


# The `action` of POST /api/pmd/action, and those of an endpoint of their own (license), from
# the actions' records (features/posts/actions.py); to a type checker, any name.
if TYPE_CHECKING:
    Action = str
    OwnEndpointAction = str
else:
    Action = Literal[tuple(a.name for a in ACTIONS if not a.own_endpoint)]
    OwnEndpointAction = Literal[tuple(a.name for a in ACTIONS if a.own_endpoint)]


class PostFile(msgspec.Struct):
    format: str
    file_bytes: int | None
    is_native: bool


class ArtworkHolder(msgspec.Struct):
    """The live post that holds a deleted post's artwork (the same file uploaded again)."""

    post_id: int
    public_sqid: str | None


RestoreRefusal = Literal["deleted-by-moderator", "artwork-reuploaded"]


Files = TypeVar("Files")
TagList = TypeVar("TagList")


class _Post(msgspec.Struct, Generic[Files, TagList]):
    """A posts item's fields, its `files` and tags held as `Files` and `TagList` (ListedPost)."""

    id: int
    public_sqid: str | None
    title: str
    description: Annotated[
        str | None,
        Meta(description="The description as people read it: each mention as `@handle`"),
    ]
    description_markup: Annotated[
        str | None,
        Meta(
            description="The description as the host stores it, mentions as `<@SQID>` "
            "(null when there is no description)"
        ),
    ]
    mentions: Annotated[
        Sequence[MentionRef],
        Meta(
            description="The existing accounts the description mentions, distinct, in order of "
            "first appearance"
        ),
    ]
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
    hashtags: TagList
    mod_hashtags: Annotated[
        TagList,
        Meta(description="A moderator's tags (also in `hashtags`); the artist keeps them"),
    ]
    remixable: bool
    layers_bytes: Annotated[
        int | None, Meta(description="The attached `.mkpx` layers file's size, or null")
    ]
    deleted_by_user_date: datetime | None = None
    restorable: Annotated[
        bool | None,
        Meta(
            description="Deleted listing: whether the caller may restore the post (null in the "
            "live listing)"
        ),
    ] = None
    restore_refusal: Annotated[
        RestoreRefusal | None,
        Meta(
            description="Deleted listing: why the post cannot be restored: a moderator deleted "
            "it (only a moderator may restore it), or the same artwork is now another live post "
            "(`held_by` when it is the owner's own; the site keeps one live post per artwork)"
        ),
    ] = None
    held_by: Annotated[
        ArtworkHolder | None,
        Meta(
            description="Deleted listing: the owner's live post that now holds this post's "
            "artwork (null when another user's post holds it: that post is not named)"
        ),
    ] = None


class PostItem(_Post[list[PostFile], list[str]]):
    pass


class ListedPost(_Post[msgspec.Raw, msgspec.Raw], gc=False):
    """PostItem as the list query yields it: `files` and the tags as the JSON text the query
    built (features/posts/listing.py), so it encodes to the same bytes. Never in a reference
    cycle, so the collector does not track the page's 512 of them."""


class PageTarget(msgspec.Struct):
    """Whose posts a listing holds, as a page names them (a moderator's: "@handle's posts")."""

    public_sqid: str | None
    handle: str


Item = TypeVar("Item")


class _Page(msgspec.Struct, Generic[Item]):
    items: list[Item]
    next_cursor: str | None
    total_count: Annotated[
        int,
        Meta(
            description="The posts the listing (and its filter) holds, counted by each page as "
            "they are when it is read."
        ),
    ]
    match_digest: Annotated[
        str | None,
        Meta(
            description="An opaque digest of the whole matching set (not only this page), from "
            "the first page (later pages: null); an action by `filter` sends it as "
            "`expect_digest` to act on that very set"
        ),
    ] = None
    target: Annotated[
        PageTarget | None,
        Meta(description="Whose posts these are: the caller, or the user `target_sqid` names"),
    ] = None


class PostPage(_Page[PostItem]):
    pass


class ListedPage(_Page[ListedPost]):
    """PostPage of ListedPost items (PostPage stays the documented shape)."""


ExpectCount = Annotated[
    Count,
    Meta(
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
ClickId = Annotated[
    uuid.UUID,
    Meta(
        description="With `post_ids`: the one action of a person (a click) this request is a "
        "batch of, when a client sends more than 128 posts in several requests: a uuid the "
        "client makes once per click and sends with each of its batches. The batches of one "
        "click by the same caller, of the same action on the same user's posts, within the undo "
        "window (24 hours), are one entry in GET /api/pmd/actions (`changed_count` their sum) "
        "with one undo that puts back every post of every batch; each batch's answer gives "
        "that undo. Omitted: the request is an action of its own"
    ),
]


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
    click_id: ClickId | None = None
    target_sqid: Sqid | None = None


class LicenseRequest(msgspec.Struct, forbid_unknown_fields=True):
    license_id: Annotated[int, Meta(ge=1, le=2_147_483_647)] | None
    post_ids: PostIds | None = None
    filter: FilterField | None = None
    expect_count: ExpectCount | None = None
    expect_digest: ExpectDigest | None = None
    click_id: ClickId | None = None
    target_sqid: Sqid | None = None


LeftReason = Literal["deleted-by-moderator", "artwork-reuploaded", "same-artwork"]


class LeftOut(msgspec.Struct):
    """Posts a restore by filter matched and left deleted, for one reason."""

    reason: Annotated[
        LeftReason,
        Meta(
            description="`deleted-by-moderator`: only a moderator may restore them; "
            "`artwork-reuploaded`: the same artwork is now a live post (the site keeps one "
            "live post per artwork); `same-artwork`: two or more deleted posts of the filter "
            "are one artwork, and only one of them could be live (restore one by its id)"
        ),
    ]
    count: int
    post_ids: Annotated[list[int], Meta(description="Those posts (the owner's), ascending")]


class ActionResult(msgspec.Struct):
    success: bool
    affected_count: Annotated[
        int,
        Meta(
            description="The posts acted on: every id sent (the batch is all-or-nothing); by "
            "filter, every post that matched, except those a restore left (`left_count`)"
        ),
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
            "(null when it changed nothing); with `click_id`, the click's undo, which puts back "
            "every batch of the click"
        ),
    ] = None
    # Only in the answer of a restore by filter: every other action is all or nothing.
    left_count: (
        Annotated[
            int,
            Meta(
                description="A restore by filter only: it restores every matching post it may "
                "and leaves the others deleted; how many it left (`affected_count` + "
                "`left_count` = the filter's count, `expect_count`)"
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    left: (
        Annotated[
            list[LeftOut],
            Meta(description="A restore by filter only: the posts it left, grouped by why"),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class UndoResult(msgspec.Struct):
    success: bool
    affected_count: Annotated[int, Meta(description="The posts put back as they were")]
    message: str
    left_post_ids: Annotated[
        list[int],
        Meta(description="Posts the action changed that changed again since: left as they are"),
    ]
    undone: Annotated[
        bool,
        Meta(
            description="The action is now undone (its undo no longer offered). False when "
            "nothing was put back while a post it left may again be as the action left it: "
            "its undo stays offered"
        ),
    ] = True


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


class ActionPost(msgspec.Struct):
    """A post an action changed, as the history names it."""

    id: int
    title: str


class ActionItem(msgspec.Struct):
    """One bulk action on the target's posts: the batches of one click are one action."""

    id: Annotated[uuid.UUID, Meta(description="The action (a click's: the id of its first batch)")]
    action: Annotated[
        Action | OwnEndpointAction,
        Meta(description="What it did (`license`: POST /license)"),
    ]
    created_at: datetime
    changed_count: Annotated[
        int, Meta(description="The posts whose row it changed (a click's: in all its batches)")
    ]
    unchanged_count: Annotated[
        int | None,
        Meta(
            description="The posts it found already so (hiding a hidden post), as its answer "
            "counted them (`affected_count` less `changed_count`); null for an action recorded "
            "before the service counted them"
        ),
    ]
    by_moderator: Annotated[
        bool, Meta(description="A moderator did it (on the owner's posts, as a moderator)")
    ]
    by_you: Annotated[
        bool, Meta(description="The caller did it (an owner: a policy of theirs too)")
    ]
    undone_at: Annotated[datetime | None, Meta(description="When it was undone, or null")]
    posts: Annotated[
        list[ActionPost],
        Meta(
            description="The first (at most 3) of the posts it changed, to name them "
            "(`changed_count` counts them all), in one lookup for the page; empty once it "
            "was undone or its history was dropped"
        ),
    ]
    undo: Annotated[
        str | None,
        Meta(
            description="The undo link, as the action's own answer gave it, while the caller "
            "may undo it: only who acted, once, within 24 hours, while its history is kept "
            "(else null; an owner never undoes a moderator's action)"
        ),
    ]
    policy_id: Annotated[
        uuid.UUID | None,
        Meta(
            description="Done by this cleanup policy of the owner's (a run), shown and undone "
            "as the owner's own; null for anything else"
        ),
    ] = None
    policy_name: Annotated[str | None, Meta(description="The policy's name when it ran")] = None


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
