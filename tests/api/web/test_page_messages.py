"""What the page says to a person of the site: no command of the service's operators (`make
run`) in any message; signing in again on the site, or asking its operators, instead."""

from __future__ import annotations

import re

from pmd_service.web.pages import STATIC_DIR

# String literals of the page's scripts and the text of its HTML: what a person may see.
_JS_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\.)*`')


def _shown_texts() -> list[str]:
    texts = []
    for path in sorted(STATIC_DIR.glob("*.js")):
        code = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("//")
        )
        texts += [m.group(0) for m in _JS_STRING.finditer(code)]
    html = (STATIC_DIR / "index.html").read_text()
    texts += re.sub(r"<[^>]+>", "\n", html).split("\n")
    return texts


def test_no_message_of_the_page_names_an_operators_command() -> None:
    shown = _shown_texts()
    assert len(shown) > 100  # the scripts' strings were found
    for text in shown:
        assert "make run" not in text and "`make" not in text, text


def test_sign_in_messages_speak_of_the_site() -> None:
    app = (STATIC_DIR / "app.js").read_text()
    api = (STATIC_DIR / "api.js").read_text()
    assert "Sign in on the site and open this page from there" in app
    assert "Sign in on the site again" in api and "expired or is not valid" in api
    assert "ask the site's operators" in app and "ask the site's " in api
