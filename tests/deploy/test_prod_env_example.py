"""deploy/prod.env.example, where docs/operations.md's `docker run --env-file` lines start: every
variable of docs/configuration.md, each under a comment, no secret, and values the service
takes once the required three are filled in."""

from __future__ import annotations

import re

from pmd_service.core.settings import Settings
from tests.helpers import CHECKOUT

EXAMPLE = CHECKOUT / "deploy" / "prod.env.example"
LINE = re.compile(r"^(# )?([A-Z][A-Z0-9_]*)=(.*)$")
SECRETS = (
    "JWT_SECRET_KEY",
    "SMTP_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "SENTRY_DSN",
)


def variables() -> dict[str, tuple[bool, str]]:
    """name → (set, not commented out; its value)."""
    found: dict[str, tuple[bool, str]] = {}
    for line in EXAMPLE.read_text().splitlines():
        if match := LINE.match(line):
            assert match[2] not in found, f"{match[2]} twice"
            found[match[2]] = (match[1] is None, match[3])
    return found


def documented() -> set[str]:
    names: set[str] = set()
    for line in (CHECKOUT / "docs" / "configuration.md").read_text().splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split(" | ")[0]))
    return names


def test_every_documented_variable_and_no_other() -> None:
    assert set(variables()) == documented()


def test_each_under_a_comment_in_docker_env_file_form() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if LINE.match(line):
            above = lines[i - 1]
            assert above.startswith("# ") or LINE.match(above), f"no comment above {line!r}"
        else:  # Docker's env file: whole-line comments only, nothing quoted
            assert not line or line.startswith("#"), line
    for name, (_, value) in variables().items():
        assert not value.startswith(('"', "'")) and "#" not in value, name


def test_no_secret_and_the_required_left_to_fill_in() -> None:
    found = variables()
    for name in SECRETS:
        assert found[name][1] == "", f"{name} has a value"
    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY"):
        assert found[name] == (True, ""), name


def test_the_service_takes_every_value_shown() -> None:
    values = {name: value for name, (_, value) in variables().items() if value}
    required = {
        "DATABASE_URL": "postgresql://pmd:password@db:5432/makapix",
        "REDIS_URL": "redis://pmd-redis:6379/0",
        "JWT_SECRET_KEY": "s" * 32,
    }
    settings = Settings.from_env(values | required)
    assert settings.base_url == values["BASE_URL"]
    assert settings.log_format == "json"


# Commented lines whose value is not the service's own default, and why that is still true.
NOT_THE_SERVICE_DEFAULT = {
    "METRICS_PORT": "unset takes 9108 (or a free port, with a warning line)",
    "SENTRY_ENVIRONMENT": "unset, sentry-sdk names the environment production",
}


def image_env() -> dict[str, str]:
    """The ENV lines of the Dockerfile: the image's defaults."""
    text = (CHECKOUT / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found |= dict(re.findall(r"([A-Z][A-Z0-9_]*)=(\S+)", line))
    return found


def test_a_commented_line_shows_the_default_it_keeps() -> None:
    """The example says lines left commented keep the default they show: SMTP_STARTTLS=true,
    port 587 and a sender shown as if they were defaults made STARTTLS look on when it was not."""
    required = {
        "DATABASE_URL": "postgresql://p@db/m",
        "REDIS_URL": "redis://r",
        "JWT_SECRET_KEY": "s" * 32,
    }
    unset = Settings.from_env(required)
    lines, image = EXAMPLE.read_text().splitlines(), image_env()
    wrong = []
    for i, line in enumerate(lines):
        match = LINE.match(line)
        if not match or not match[1] or not match[3]:
            continue
        name, value = match[2], match[3]
        shown = Settings.from_env(required | {name: value})
        if shown == unset or name in NOT_THE_SERVICE_DEFAULT:
            continue
        if image.get(name) == value and "the image sets" in lines[i - 1]:
            continue
        wrong.append(name)
    assert wrong == []
