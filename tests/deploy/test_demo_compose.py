"""docker-compose.yml, the stack on its own, as Docker Compose v2 itself reads it (`docker
compose config`): what makes it safe to copy. It used to publish SeaweedFS's S3 port on every
interface with the repository's static admin keys, Mailpit's page without a password, the server
(and its /metrics) on every interface, and images without a tag."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pmd_service.core.settings import Settings
from tests.helpers import CHECKOUT
from tests.host_stack import COMPOSE_MISSING, compose_binary, run_compose, write_env
from tests.prerequisites import needs

pytestmark = needs("deploy", None if compose_binary() else COMPOSE_MISSING)

FILE = CHECKOUT / "docker-compose.yml"
SECRETS = {
    "JWT_SECRET_KEY": "j" * 40,
    "PMD_REDIS_PASSWORD": "queue-password-1",
    "PMD_S3_SECRET_KEY": "store-secret-2",
    "PMD_MAIL_UI_PASSWORD": "mail-page-3",
}
APP = ("migrate", "demo", "server", "worker")  # the processes of the service's image


def config(tmp_path: Path, env: dict[str, str]) -> tuple[int, str, str]:
    write_env(tmp_path / "stack.env", env)
    args = [
        "-f",
        str(FILE),
        "--project-directory",
        str(CHECKOUT),
        "--env-file",
        str(tmp_path / "stack.env"),
        "--profile",
        "demo",
    ]
    done = run_compose(tmp_path, *args, "config", "--format", "json")
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def stack(tmp_path: Path) -> dict[str, Any]:
    code, out, err = config(tmp_path, SECRETS)
    assert code == 0, err
    found: dict[str, Any] = json.loads(out)
    return found


def test_every_published_port_is_on_loopback_only(stack: dict[str, Any]) -> None:
    published = {name: svc["ports"] for name, svc in stack["services"].items() if svc.get("ports")}
    assert set(published) == {"server", "s3", "mail"}
    for name, ports in published.items():
        for port in ports:
            assert port.get("host_ip") == "127.0.0.1", (name, port)


def test_metrics_are_off_the_published_port(stack: dict[str, Any]) -> None:
    server = stack["services"]["server"]
    assert [p["target"] for p in server["ports"]] == [8080]
    for name in ("server", "worker"):
        settings = Settings.from_env(stack["services"][name]["environment"])
        assert settings.port == 8080
        assert settings.server_metrics_port not in (None, 8080)  # /metrics answers 404 on 8080
    metrics = str(Settings.from_env(server["environment"]).server_metrics_port)
    assert metrics in server["expose"]
    worker = stack["services"]["worker"]
    assert "ports" not in worker and "9108" in worker["expose"]


def test_every_image_has_a_tag(stack: dict[str, Any]) -> None:
    for name, svc in stack["services"].items():
        image = svc["image"]
        tag = image.rpartition("/")[2].partition(":")[2]
        assert tag and tag != "latest", (name, image)


@pytest.mark.parametrize("variable", [n for n in SECRETS if n != "JWT_SECRET_KEY"])
def test_each_secret_is_required(tmp_path: Path, variable: str) -> None:
    code, _, err = config(tmp_path, {k: v for k, v in SECRETS.items() if k != variable})
    assert code != 0
    assert f"set {variable}" in err


def test_no_key_or_password_is_written_in_the_file() -> None:
    text = FILE.read_text()
    assert "change-me" not in text
    assert not (CHECKOUT / "deploy" / "seaweedfs" / "s3.json").exists()
    for line in text.splitlines():
        if re.search(r"(SECRET|PASSWORD|secretKey|requirepass|MP_UI_AUTH)", line):
            assert "${" in line or line.lstrip().startswith("#") or "POSTGRES_PASSWORD" in line, (
                line
            )


def test_the_store_takes_the_keys_the_service_is_given(stack: dict[str, Any]) -> None:
    content = stack["configs"]["s3_identities"]["content"]
    identities = json.loads(content)["identities"]
    (credentials,) = [c for i in identities for c in i["credentials"]]
    assert credentials == {"accessKey": "pmd", "secretKey": SECRETS["PMD_S3_SECRET_KEY"]}
    (mounted,) = stack["services"]["s3"]["configs"]
    assert mounted["source"] == "s3_identities"
    assert f"-s3.config={mounted['target']}" in stack["services"]["s3"]["command"]
    for name in APP:
        env = stack["services"][name]["environment"]
        assert env["AWS_ACCESS_KEY_ID"] == credentials["accessKey"]
        assert env["AWS_SECRET_ACCESS_KEY"] == credentials["secretKey"]


def test_the_queues_redis_takes_the_password_redis_url_carries(stack: dict[str, Any]) -> None:
    redis = stack["services"]["redis"]
    command = redis["command"]
    password = command[command.index("--requirepass") + 1]
    assert password == SECRETS["PMD_REDIS_PASSWORD"]
    assert redis["environment"]["REDISCLI_AUTH"] == password  # the healthcheck's redis-cli
    for name in APP:
        url = stack["services"][name]["environment"]["REDIS_URL"]
        assert urlsplit(url).password == password, name
        assert Settings.from_env(stack["services"][name]["environment"]).redis_url == url


def test_mailpits_page_takes_a_password(stack: dict[str, Any]) -> None:
    auth = stack["services"]["mail"]["environment"]["MP_UI_AUTH"]
    assert auth == f"pmd:{SECRETS['PMD_MAIL_UI_PASSWORD']}"
