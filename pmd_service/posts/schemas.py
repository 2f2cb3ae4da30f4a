"""Request and response shapes of the posts endpoints (also the OpenAPI schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from ..core.visibility import RESTORE_WINDOW_DAYS
from ..host.eligibility import PostIds, Sqid

MAX_PAGE = 512


class PostsQuery(msgspec.Struct):
    """The query of GET /api/pmd/posts."""

    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE, description="Page size")] = MAX_PAGE
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
    deleted: Annotated[
        bool,
        Meta(
            description=f"List posts deleted within the {RESTORE_WINDOW_DAYS}-day restore window "
            "instead"
        ),
    ] = False


Action = Literal["hide", "unhide", "delete", "restore"]


class PostFile(msgspec.Struct):
    format: str
    file_bytes: int | None
    is_native: bool


class PostItem(msgspec.Struct):
    id: int
    public_sqid: str | None
    title: str
    description: str | None
    created_at: datetime
    width: int | None
    height: int | None
    frame_count: int
    files: list[PostFile]
    art_url: str | None
    hidden_by_user: bool
    hidden_by_mod: bool
    reaction_count: int
    comment_count: int
    view_count: int
    license_identifier: str | None
    deleted_by_user_date: datetime | None = None


TotalCount = Annotated[
    int,
    Meta(
        description="The listing's posts, counted by the first page (no cursor); later pages "
        "of the same walk repeat that figure, carried in the cursor, without counting again."
    ),
]


class PostPage(msgspec.Struct):
    items: list[PostItem]
    next_cursor: str | None
    total_count: TotalCount


class ListedPost(msgspec.Struct):
    """PostItem as the list query yields it: the same fields in the same order, with `files`
    as the JSON text the query built (posts/listing.py), so it encodes to the same bytes."""

    id: int
    public_sqid: str | None
    title: str
    description: str | None
    created_at: datetime
    width: int | None
    height: int | None
    frame_count: int
    files: msgspec.Raw
    art_url: str | None
    hidden_by_user: bool
    hidden_by_mod: bool
    reaction_count: int
    comment_count: int
    view_count: int
    license_identifier: str | None
    deleted_by_user_date: datetime | None = None


class ListedPage(msgspec.Struct):
    """PostPage of ListedPost items (PostPage stays the documented shape)."""

    items: list[ListedPost]
    next_cursor: str | None
    total_count: TotalCount


class ActionRequest(msgspec.Struct, forbid_unknown_fields=True):
    action: Action
    post_ids: PostIds
    target_sqid: Sqid | None = None


class LicenseRequest(msgspec.Struct, forbid_unknown_fields=True):
    post_ids: PostIds
    license_id: Annotated[int, Meta(ge=1, le=2_147_483_647)] | None
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


class License(msgspec.Struct):
    id: int
    identifier: str | None
    title: str | None


class LicenseList(msgspec.Struct):
    items: list[License]
