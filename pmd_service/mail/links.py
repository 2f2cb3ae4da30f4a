"""Where an email's link goes: the user's dashboard page under BASE_URL."""

from __future__ import annotations

from ..core.settings import Settings
from ..host.tokens import mint_token

# As long as `make run`'s printed link (dev/stack.py).
DEV_LINK_TOKEN_SECONDS = 7 * 86400


def page_link(settings: Settings, user_sqid: str, query: str) -> str:
    """`{BASE_URL}/u/{user_sqid}/posts?{query}`, signed in (a fragment token) in dev mode only."""
    link = f"{settings.base_url}/u/{user_sqid}/posts?{query}"
    if settings.dev_mode and settings.jwt_secret_key:
        token = mint_token(settings.jwt_secret_key, user_sqid, ttl_seconds=DEV_LINK_TOKEN_SECONDS)
        link += f"#token={token}"
    return link
