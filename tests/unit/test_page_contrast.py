"""The page's colours, as styles.css defines them for light and dark: every text colour reads on
every background a text of it sits on at WCAG's 4.5:1 (the badges are small bold text), so no
state of a card or a row (a highlighted card, a selected row) falls below it."""

from __future__ import annotations

import re

import pytest

from tests.helpers import CHECKOUT

STYLES = (CHECKOUT / "pmd_service" / "web" / "static" / "styles.css").read_text()
TEXTS = ("--text", "--muted", "--danger", "--ok", "--warn", "--accent")
BACKGROUNDS = ("--bg", "--panel", "--selected", "--highlight")


def _colours(block: str) -> dict[str, str]:
    return dict(re.findall(r"(--[\w-]+):\s*(#[0-9a-fA-F]{6})\s*;", block))


def schemes() -> dict[str, dict[str, str]]:
    dark_at = STYLES.index("@media (prefers-color-scheme: dark)")
    light = _colours(STYLES[STYLES.index(":root {") : dark_at])
    return {
        "light": light,
        "dark": light | _colours(STYLES[dark_at : STYLES.index("}\n}", dark_at)]),
    }


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_contrast_formula_is_wcags() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48  # WCAG's own example, just short


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_colour_reads_on_every_background(scheme: str) -> None:
    colours = schemes()[scheme]
    short = [
        f"{text} on {background}: {contrast(colours[text], colours[background]):.2f}"
        for text in TEXTS
        for background in BACKGROUNDS
        if contrast(colours[text], colours[background]) < 4.5
    ]
    assert short == []
