"""The words of the service's emails, in the recipient's language (`users.locale`, a BCP 47
tag; NULL is English), from one `<tag>.json` per locale: EMAIL_COPY_DIR's, then `copy/`'s."""

from __future__ import annotations

import functools
import html
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from babel import Locale, UnknownLocaleError
from babel.core import get_global, parse_locale
from babel.dates import format_date, format_time, get_datetime_format
from babel.numbers import format_decimal
from babel.units import format_unit

from ..core.settings import ConfigError, Settings
from ..core.startup import stop

ENGLISH = "en"
PROJECT_COPY = Path(__file__).with_name("copy")
PLURAL_CATEGORIES = frozenset({"zero", "one", "two", "few", "many", "other"})
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
# A language tag as a file name: letters, digits and hyphens (BCP 47's shape, not its registry).
_TAG_RE = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")


class Key:
    def __init__(self, *placeholders: str, plural: str | None = None) -> None:
        self.placeholders = frozenset(placeholders)
        self.plural = plural  # the placeholder whose number picks a plural form


# Every key the emails use and the placeholders each may hold.
KEYS: dict[str, Key] = {
    "greeting_named": Key("handle"),
    "greeting_anonymous": Key(),
    "footer": Key("site"),
    "bdr_subject": Key("count", plural="count"),
    "bdr_ready": Key("count", plural="count"),
    "bdr_count": Key("count", plural="count"),
    "bdr_button": Key(),
    "bdr_expiry": Key("expires"),
    "bdr_fallback_link": Key(),
    "bdr_why": Key(),
    "bdr_failed_subject": Key(),
    "bdr_failed": Key(),
    "bdr_failed_button": Key(),
    # A failure's reason, one per `error_code` (core/codes.py ITEM_SENTENCES in English).
    "failure_user_not_found": Key(),
    "failure_no_posts": Key(),
    "failure_internal": Key(),
    "export_subject": Key("count", plural="count"),
    "export_ready": Key("count", plural="count"),
    "export_count": Key("count", plural="count"),
    "export_changes_subject": Key("since"),
    "export_changes_ready": Key("since", "added", "changed", "removed"),
    "export_parts": Key("parts", "size", plural="parts"),
    "export_button": Key(),
    "export_expiry": Key("expires"),
    "export_check": Key(),
    "export_why": Key(),
    "export_failed_subject": Key(),
    "export_failed": Key(),
    "export_failed_kept": Key("expires"),
    "export_failed_button": Key(),
    # A cleanup policy's run that changed something, when the policy has `notify`.
    "policy_subject": Key("name"),
    "policy_hid": Key("count", "name", plural="count"),
    "policy_deleted": Key("count", "name", plural="count"),
    "policy_undo_until": Key("until"),
    "policy_button": Key(),
    "policy_why": Key(),
    # A cleanup policy's run held for its owner's approval, whatever its `notify`.
    "policy_held_subject": Key("name"),
    "policy_held_hide": Key("count", "approved", "name", plural="count"),
    "policy_held_delete": Key("count", "approved", "name", plural="count"),
    "policy_held_approve": Key(),
    "policy_held_button": Key(),
    "policy_held_why": Key(),
}

Value = str | dict[str, str]


class CopyError(ConfigError):
    """A copy file the emails cannot use: one line naming the file and the key."""


@dataclass(frozen=True)
class CopyFile:
    path: Path
    tag: str
    values: dict[str, Value]


@dataclass(frozen=True)
class Catalog:
    """Every locale's copy: the operator's files and the project's, by lower-cased tag."""

    operator: dict[str, CopyFile] = field(default_factory=dict)
    project: dict[str, CopyFile] = field(default_factory=dict)

    def words(self, locale: str | None) -> Words:
        files = [
            found
            for tag in _lookup_chain(locale)
            for found in (self.operator.get(tag), self.project.get(tag))
            if found is not None
        ]
        # The language it is written in: the first step of the chain that has a file.
        language = files[0].tag if files else ENGLISH
        return Words(language, files, _babel_locale(locale, language))


@dataclass(frozen=True)
class Words:
    """One email's copy: each key from the first file in the chain that has it."""

    language: str  # a BCP 47 tag: the Content-Language of the email
    files: list[CopyFile]
    locale: Locale  # Babel's, for dates, numbers and plural forms

    def text(self, key: str, **values: object) -> str:
        spec = KEYS[key]
        value = next(f.values[key] for f in self.files if key in f.values)
        if isinstance(value, dict):
            assert spec.plural is not None
            number = values[spec.plural]
            assert isinstance(number, int)
            value = value.get(self.locale.plural_form(number), value["other"])
        shown = {name: self._shown(v) for name, v in values.items()}
        return _PLACEHOLDER_RE.sub(lambda match: shown[match[1]], value)

    def html(self, key: str, **values: object) -> str:
        """Escaped as HTML, the copy's own text and every value alike."""
        # Escaping is per character, so the filled text escapes as its parts would.
        return html.escape(self.text(key, **values))

    def _shown(self, value: object) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return format_decimal(value, locale=self.locale)
        if not isinstance(value, datetime):
            return str(value)
        # A date and time in the language's usual long form, in UTC, saying so.
        date = format_date(value.astimezone(UTC), "long", locale=self.locale)
        time = format_time(value, "short", tzinfo=UTC, locale=self.locale)
        pattern = str(get_datetime_format("long", locale=self.locale))  # a str, typed otherwise
        return pattern.replace("'", "").replace("{0}", f"{time} UTC").replace("{1}", date)

    def size(self, n: int) -> str:
        """A byte count in decimal units (kB, MB, GB), as the language writes them."""
        for unit, scale in (("gigabyte", 10**9), ("megabyte", 10**6), ("kilobyte", 10**3)):
            if n >= scale:
                return format_unit(
                    n / scale, f"digital-{unit}", "short", "#,##0.#", locale=self.locale
                )
        return format_unit(n, "digital-byte", "short", locale=self.locale)


def _lookup_chain(locale: str | None) -> list[str]:
    """`zh-CN` → zh-cn, zh-hans-cn, zh-hans, zh, en: RFC 4647's lookup plus likely subtags."""
    subtags = (locale or "").strip().replace("_", "-").lower().split("-")
    steps = ["-".join(subtags[:n]) for n in range(len(subtags), 0, -1) if subtags[0]]
    # The longest step CLDR knows gives the language and script the recipient reads.
    reads = next((found[:2] for step in steps if (found := _likely(step))), None)
    chain = []
    for step in steps:
        chain.append(step)
        if (found := _likely(step)) is None or found[:2] != reads:
            continue
        language, script, region = found
        named = (f"{language}-{script}-{region}", f"{language}-{region}", f"{language}-{script}")
        # `zh-Hans-TW` must not reach `zh-TW`, whose likely script is another.
        chain += [tag.lower() for tag in named if (guess := _likely(tag)) and guess[:2] == reads]
    return list(dict.fromkeys([*chain, ENGLISH]))


def _likely(tag: str) -> tuple[str, str, str] | None:
    """The tag's language, script and region, filled in from CLDR's likely subtags (UTS #35)."""
    try:
        language, region, script = parse_locale(tag, sep="-")[:3]
    except (ValueError, TypeError):
        return None
    likely = get_global("likely_subtags")
    keys = [(language, script, region), (language, region), (language, script), (language,)]
    if script:
        keys.append(("und", script))
    for key in keys:
        found = likely.get("_".join(part for part in key if part))
        if found is None:
            continue
        try:
            guess_language, guess_region, guess_script = parse_locale(found)[:3]
        except (ValueError, TypeError):
            return None
        if not (guess_script and guess_region):
            return None
        if language == "und":
            language = guess_language
        return language, script or guess_script, region or guess_region
    return None


def _babel_locale(locale: str | None, language: str) -> Locale:
    """The recipient's own tag if of the copy's language, else the copy's language, else English."""
    for tag in filter(None, (locale, language)):
        try:
            found = Locale.parse(tag.replace("_", "-"), sep="-")
        except (UnknownLocaleError, ValueError, TypeError):
            continue
        if found.language == language.split("-")[0].lower():
            return found
    return Locale.parse(ENGLISH)


# --- reading and checking the files -------------------------------------------------------------


def _fail(path: Path, why: str) -> NoReturn:
    raise CopyError(f"EMAIL_COPY_DIR: {path}: {why}")


def read_folder(folder: Path) -> dict[str, CopyFile]:
    """Every `<tag>.json` in `folder`, checked; CopyError on the first file that does not fit."""
    files: dict[str, CopyFile] = {}
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix == ".json")
    except OSError as exc:
        raise CopyError(f"EMAIL_COPY_DIR: {folder}: cannot be read ({exc.strerror})") from None
    for path in paths:
        copy = read_file(path)
        if copy.tag.lower() in files:
            _fail(path, f"a second file for {copy.tag} (tags match whatever their case)")
        files[copy.tag.lower()] = copy
    return files


def read_file(path: Path) -> CopyFile:
    tag = path.stem
    if not _TAG_RE.fullmatch(tag):
        _fail(path, "the file name is not a language tag (es.json, pt-BR.json, zh-Hans.json)")
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        _fail(path, f"cannot be read ({exc.strerror})")
    except json.JSONDecodeError as exc:
        _fail(path, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
    except UnicodeDecodeError as exc:
        _fail(path, f"not valid JSON (not UTF-8: {exc.reason} at byte {exc.start})")
    if not isinstance(data, dict):
        _fail(path, "not a JSON object of keys and their text")
    # Keys the emails do not use (the host's verification and reset emails') are left alone.
    values = {key: _checked(path, key, data[key]) for key in KEYS if key in data}
    return CopyFile(path, tag, values)


def _checked(path: Path, key: str, value: object) -> Value:
    spec = KEYS[key]
    if isinstance(value, dict) and spec.plural is not None:
        if unknown := ", ".join(sorted(set(value) - PLURAL_CATEGORIES)):
            categories = ", ".join(sorted(PLURAL_CATEGORIES))
            _fail(path, f"key {key}: {unknown}: not a CLDR plural category ({categories})")
        if "other" not in value:
            _fail(path, f"key {key}: a plural object needs its `other` form")
        return {c: _text(path, f"{key}.{c}", spec, form) for c, form in value.items()}
    if isinstance(value, dict):
        _fail(path, f"key {key}: a string is expected (only a key with a number has plural forms)")
    return _text(path, key, spec, value)


def _text(path: Path, key: str, spec: Key, value: object) -> str:
    if not isinstance(value, str):
        _fail(path, f"key {key}: a string is expected, not {type(value).__name__}")
    for name in _PLACEHOLDER_RE.findall(value):
        if name not in spec.placeholders:
            has = ", ".join(f"{{{p}}}" for p in sorted(spec.placeholders)) or "none"
            _fail(path, f"key {key}: {{{name}}} is not a placeholder of this email (it has {has})")
    return value


@functools.cache
def catalog(folder: Path | None) -> Catalog:
    """The operator's folder (None: none) and the project's copy, read and checked once."""
    return Catalog(read_folder(folder) if folder is not None else {}, read_folder(PROJECT_COPY))


def words(settings: Settings, locale: str | None) -> Words:
    return catalog(settings.email_copy_dir).words(locale)


def check_at_start(settings: Settings, process: str) -> None:
    """Read and check the copy at start: a file the emails cannot use ends the process."""
    try:
        catalog(settings.email_copy_dir)
    except CopyError as exc:
        stop(f"{process}: configuration error: {exc}", status=2)
