"""compose.yaml, the whole stack: db (PostgreSQL 16), migrate (creates or upgrades the
archive's schema, which the read-only browser never does), web (`scientist web` on port
8000), runner (campaigns on demand; sandbox containers through the host's Docker socket), a
Ray head and workers (profile ray) and the sandbox image builds.

Two levels:

* The file, through docker-compose (Debian's 1.29.2, installed by
  scripts/install-system-deps.sh; skipped where it is missing): `config -q` accepts it, and
  the resolved configuration wires what the README promises: services and profiles,
  health-gated dependencies, the published port, credentials from the environment, the
  runner's socket and scratch mounts, the CUDA sandbox image's GPU reservation.

* The stack for real, where a Docker engine answers (skipped otherwise): `docker-compose up`
  of db, migrate and web from the real compose.yaml plus an override file; then the test
  writes a campaign into the PostgreSQL in the db container with archive.db /
  archive.writes, and the web service must list it over HTTP. These machines have no
  container registry, and their dockerd runs with `--bridge=none --iptables=false`, so the
  override (written by the test to a temporary directory, passed as a second `-f`)
  substitutes what cannot work offline, and only that:
    - images: postgres:16 and the application image (docker/Dockerfile) can be neither pulled
      nor built, so every service runs a `docker import`ed empty root filesystem with the
      host's /usr (Debian's PostgreSQL 15 binaries stand in for 16's), this interpreter and
      a world-readable copy of this checkout bind-mounted read-only at its path, as uid 65534
      (initdb refuses root);
    - db's entrypoint: the official image's entrypoint script is not there, so a short shell
      script does what it does with POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB (initdb
      with that user and password in the named volume, create the database), then runs postgres;
    - networking: a bridge network would change the host's networking, so each service gets
      `network_mode: none` (a network namespace of its own, loopback only; the engine then
      ignores web's published port, which the configuration test checks instead). db and
      migrate/web meet through PostgreSQL's Unix socket in a shared directory, so SCIENTIST_DB
      names the socket instead of db:5432 (and PGHOST lets the unchanged pg_isready
      healthcheck find it); the test reaches the database through the same socket, and web
      through `docker-compose exec web`, an HTTP request to 127.0.0.1:8000 inside web's own
      namespace: all traffic stays on loopback or in a socket file.
  Kept from compose.yaml: the service names, the POSTGRES_* environment, the healthcheck, the
  depends_on conditions (web starts only once db is healthy and migrate has succeeded), the
  named volumes, migrate's command and web's command (`scientist web --host 0.0.0.0 --port
  8000 ...`). The stack is torn down with `down -v` whatever happens, under a unique project
  name; the test also checks that nothing of it is left.
"""

import importlib.util
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from harness.backends.filesystem import interpreter_mounts, mount_points_in_checkout

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "compose.yaml"
OFFLINE_REPOSITORY = "rl-scientist-compose-test"  # tagged per run, removed after it
CREDENTIAL_VARS = (
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "WEB_PORT",
    "WEB_BIND",
    "SCIENTIST_SANDBOX_IMAGE",
    "SCIENTIST_SCRATCH",
)


@pytest.fixture(scope="module")
def docker_compose(tmp_path_factory) -> list[str]:
    """The command, with an empty --env-file: a developer's .env must not change the results."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "docker-compose is not installed (scripts/install-system-deps.sh installs Debian's)"
        )
    empty = tmp_path_factory.mktemp("compose") / "empty.env"
    empty.write_text("")
    return [binary, "--env-file", str(empty)]


def compose_env(**values) -> dict:
    """The caller's environment without any of the stack's variables, plus `values`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CREDENTIAL_VARS and not k.startswith("COMPOSE_")
    }
    return {**env, **values}


@pytest.fixture(scope="module")
def resolved(docker_compose):
    """compose.yaml as docker-compose resolves it, with these environment variables."""

    def resolve(**values) -> dict:
        result = subprocess.run(
            [*docker_compose, "-f", str(COMPOSE_FILE), "config"],
            capture_output=True,
            text=True,
            env=compose_env(**values),
            cwd=REPO,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return yaml.safe_load(result.stdout)

    return resolve


@pytest.fixture(scope="module")
def config(resolved) -> dict:
    return resolved()


def test_compose_file_is_valid(docker_compose):
    result = subprocess.run(
        [*docker_compose, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        env=compose_env(),
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_services_and_their_wiring(config):
    services = config["services"]
    assert set(services) == {
        "db",
        "migrate",
        "web",
        "runner",
        "ray-head",
        "ray-worker",
        "sandbox",
        "sandbox-cpu",
    }
    # `docker compose up` starts db, migrate and web; the runner and the image builds are on demand.
    assert {name for name, s in services.items() if not s.get("profiles")} == {
        "db",
        "migrate",
        "web",
    }
    assert services["runner"]["profiles"] == ["runner"]
    # The Ray cluster (profile ray): a head that only schedules, workers that join it and
    # start sandbox containers through the host's Docker socket.
    head, worker = services["ray-head"], services["ray-worker"]
    assert head["profiles"] == worker["profiles"] == ["ray"]
    assert head["command"][:3] == ["ray", "start", "--head"] and "--num-cpus" in head["command"]
    assert "ray start --address ray-head:6379 --block --num-gpus 0" in worker["command"][-1]
    assert "ray-head" in worker["depends_on"]
    for node in (head, worker):
        assert "/var/run/docker.sock:/var/run/docker.sock:rw" in node["volumes"]
        assert (
            node["environment"]["SCIENTIST_DB"]
            == "postgresql+psycopg://scientist:scientist@db:5432/scientist"
        )

    db = services["db"]
    assert db["image"] == "postgres:16"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "db-data:/var/lib/postgresql/data:rw" in db["volumes"] and "db-data" in config["volumes"]

    web = services["web"]
    assert web["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert web["ports"] == ["127.0.0.1:8000:8000/tcp"]
    assert web["command"][:2] == ["scientist", "web"] and "8000" in web["command"]
    assert (
        web["command"][web["command"].index("--host") + 1] == "0.0.0.0"
    )  # reachable through the port
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert "open_engine()" in services["migrate"]["command"][-1]
    # Landscapes computed by the runner (web --precompute) are where web reads them.
    assert "landscapes:/data/landscapes:rw" in web["volumes"]
    assert "landscapes:/data/landscapes:rw" in services["runner"]["volumes"]
    assert web["command"][web["command"].index("--cache") + 1] == "/data/landscapes"

    for name in ("migrate", "web", "runner"):
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
        assert services[name]["image"] == "rl-scientist:latest"
        assert (
            services[name]["environment"]["SCIENTIST_DB"]
            == "postgresql+psycopg://scientist:scientist@db:5432/scientist"
        )
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert '".[cpu,postgres,ray]"' in dockerfile
    # Everything the application needs at run time is copied, and exists (the build context is
    # the repo).
    copied = {
        name
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for name in line.split()[1:-1]
    }
    assert {
        "archive",
        "sandbox",
        "scientist",
        "task_templates",
        "prompts",
        "pyproject.toml",
    } <= copied
    assert all((REPO / name).exists() for name in copied), copied

    # The CUDA sandbox image keeps its GPU reservation; the CPU one has none.
    devices = services["sandbox"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in services["sandbox-cpu"]
    assert services["sandbox"]["build"]["dockerfile"] == "sandbox/Dockerfile"
    assert services["sandbox-cpu"]["build"]["dockerfile"] == "sandbox/Dockerfile.cpu"


def test_runner_reaches_the_docker_engine_with_a_shared_scratch_path(config, resolved):
    runner = config["services"]["runner"]
    env = runner["environment"]
    assert env["SCIENTIST_SANDBOX_IMAGE"] == "rl-scientist-sandbox:cpu"
    assert "/var/run/docker.sock:/var/run/docker.sock:rw" in runner["volumes"]
    # Sandbox containers bind-mount the scratch directory by its path on the host.
    scratch = env["SCIENTIST_SCRATCH"]
    assert f"{scratch}:{scratch}:rw" in runner["volumes"]
    assert runner["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert runner["entrypoint"] == ["scientist"] and runner["command"][0] == "run"
    # API keys pass through from the shell when set, and are not written into the file.
    assert {"SCIENTIST_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= set(env)
    assert all(env[k] is None for k in ("SCIENTIST_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"))

    moved = resolved(
        SCIENTIST_SCRATCH="/srv/scratch", SCIENTIST_SANDBOX_IMAGE="rl-scientist-sandbox:cuda12"
    )
    runner = moved["services"]["runner"]
    assert runner["environment"]["SCIENTIST_SCRATCH"] == "/srv/scratch"
    assert "/srv/scratch:/srv/scratch:rw" in runner["volumes"]
    assert runner["environment"]["SCIENTIST_SANDBOX_IMAGE"] == "rl-scientist-sandbox:cuda12"


def test_credentials_and_port_come_from_the_environment(resolved):
    services = resolved(
        POSTGRES_USER="alice",
        POSTGRES_PASSWORD="s3cret",
        POSTGRES_DB="runs",
        WEB_PORT="8080",
        WEB_BIND="0.0.0.0",
    )["services"]
    assert services["db"]["environment"] == {
        "POSTGRES_USER": "alice",
        "POSTGRES_PASSWORD": "s3cret",
        "POSTGRES_DB": "runs",
    }
    for name in ("migrate", "web", "runner"):
        assert (
            services[name]["environment"]["SCIENTIST_DB"]
            == "postgresql+psycopg://alice:s3cret@db:5432/runs"
        )
    assert services["web"]["ports"] == ["0.0.0.0:8080:8000/tcp"]


# --- the stack, for real ---------------------------------------------------------------


def offline_rootfs() -> bytes:
    """The Docker sandbox's empty root filesystem plus PostgreSQL's data directory owned by
    uid 65534: a new named volume takes the ownership of the directory it is mounted on."""
    from harness.backends.docker import _host_rootfs_tar

    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(_host_rootfs_tar())) as source,
        tarfile.open(fileobj=out, mode="w") as tar,
    ):
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        for name, mode, owner in (
            ("var/lib", 0o755, 0),
            ("var/lib/postgresql", 0o755, 65534),
            ("var/lib/postgresql/data", 0o700, 65534),
        ):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, owner, owner
            tar.addfile(info)
    return out.getvalue()


# Does, offline, what the postgres image's entrypoint does with POSTGRES_* on a new volume.
DB_ENTRYPOINT = """set -e
export PGDATA=/var/lib/postgresql/data
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s' "$POSTGRES_PASSWORD" > /tmp/pwfile
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/pwfile -A scram-sha-256 -E UTF8 \
--locale=C --no-sync >/dev/null
  rm /tmp/pwfile
  echo "CREATE DATABASE \\"$POSTGRES_DB\\"" | postgres --single -D "$PGDATA" postgres >/dev/null
fi
exec postgres -D "$PGDATA" -k /run/postgresql -c fsync=off
"""
SOCKET_DIR = "/run/postgresql"


APP_CODE = (
    "archive",
    "harness",
    "sandbox",
    "scientist",
    "task_templates",
    "prompts",
    "examples",
    "pyproject.toml",
)


def readable_checkout(target: Path) -> Path:
    """A copy of the code the services run, readable by uid 65534, to mount at the checkout's
    own path (where the editable install points): a clone in a 0700 directory (mktemp -d)
    would be unreadable to the containers' user."""
    import shutil

    for name in APP_CODE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(source, target / name)
    for point in mount_points_in_checkout():  # where a venv inside the checkout is mounted back
        (target / point).mkdir(parents=True, exist_ok=True)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def offline_override(image: str, pg_bin: Path, sockets: Path, db_url: str, code: Path) -> dict:
    shared = ["/usr:/usr:ro", f"{sockets}:{SOCKET_DIR}"]
    interpreter = [
        f"{source}:{target}:ro"
        for target, source in interpreter_mounts().items()
        if Path("/usr") not in [target, *target.parents]
    ]
    app = {
        "image": image,
        "user": "65534:65534",
        "network_mode": "none",
        "working_dir": "/tmp",
        "volumes": [*shared, *interpreter, f"{code}:{REPO}:ro"],
        "environment": {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": "/tmp",
            "SCIENTIST_DB": db_url,
        },
    }
    return {
        "services": {
            "db": {
                "image": image,
                "user": "65534:65534",
                "network_mode": "none",
                "entrypoint": ["/bin/sh", "-c", DB_ENTRYPOINT.replace("$", "$$")],
                "command": [],
                "volumes": shared,
                "environment": {"PATH": f"{pg_bin}:/usr/bin:/bin", "PGHOST": SOCKET_DIR},
            },
            "migrate": app,
            "web": app,
        }
    }


# Run by `docker-compose exec` in the web container (its network namespace is its own):
# GET each path from web's port 8000; status 0 where nothing answered.
HTTP_GET = """import json, sys, urllib.error, urllib.request
pages = []
for path in sys.argv[1:]:
    try:
        with urllib.request.urlopen("http://127.0.0.1:8000" + path, timeout=20) as r:
            pages.append((r.status, r.read().decode()))
    except urllib.error.HTTPError as e:
        pages.append((e.code, e.read().decode()))
    except OSError as e:
        pages.append((0, repr(e)))
print(json.dumps(pages))
"""


@pytest.fixture
def stack(tmp_path, docker_compose):
    """db, migrate and web from compose.yaml plus the offline override, up; torn down after."""
    import docker

    if importlib.util.find_spec("psycopg") is None:
        pytest.skip(
            "psycopg is not installed (pip install -e '.[postgres]'): "
            "the test writes into the stack's database"
        )
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as error:
        pytest.skip(f"no Docker engine answers here: {error}")
    pg_bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not pg_bins:
        pytest.skip(
            "PostgreSQL is not installed on the host (its binaries stand in for postgres:16's)"
        )
    run_id = secrets.token_hex(4)
    image = f"{OFFLINE_REPOSITORY}:{run_id}"
    client.api.import_image_from_data(offline_rootfs(), repository=OFFLINE_REPOSITORY, tag=run_id)
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    sockets.chmod(0o777)  # postgres (uid 65534) makes its socket here; the test connects as itself
    user, password, database = "scientist", secrets.token_hex(8), "archive"
    url = f"postgresql+psycopg://{user}:{password}@/{database}?host="
    override = tmp_path / "compose.offline.yaml"
    override.write_text(
        yaml.safe_dump(
            offline_override(
                image,
                pg_bins[-1].parent,
                sockets,
                url + SOCKET_DIR,
                readable_checkout(tmp_path / "checkout"),
            )
        )
    )
    project = f"rlsci-compose-test-{run_id}"
    base = [*docker_compose, "-p", project, "-f", str(COMPOSE_FILE), "-f", str(override)]
    env = compose_env(POSTGRES_USER=user, POSTGRES_PASSWORD=password, POSTGRES_DB=database)

    def compose(*args, timeout=120, env_extra=None):
        return subprocess.run(
            [*base, *args],
            capture_output=True,
            text=True,
            env={**env, **(env_extra or {})},
            cwd=REPO,
            timeout=timeout,
        )

    def get(*paths: str) -> list[tuple[int, str]]:
        result = compose("exec", "-T", "web", "python", "-c", HTTP_GET, *paths, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    try:
        up = compose("up", "-d", "--no-build", "db", "migrate", "web")
        assert up.returncode == 0, f"{up.stderr}\n{compose('logs', '--no-color').stdout}"
        volumes = {
            v.name
            for v in client.volumes.list(filters={"label": f"com.docker.compose.project={project}"})
        }
        yield {
            "db_url": url + str(sockets),
            "get": get,
            "compose": compose,
            "volumes": volumes,
            "project": project,
        }
    finally:
        down = compose("down", "-v", "--remove-orphans", "-t", "5")
        if down.returncode == 0:
            client.images.remove(image)
        assert down.returncode == 0, down.stderr
        left = client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={project}"}
        )
        volumes = client.volumes.list(filters={"label": f"com.docker.compose.project={project}"})
        assert not left and not volumes, (left, volumes)


def test_stack_serves_the_archive_from_postgres(stack):
    from archive import writes
    from archive.db import open_engine, transaction
    from archive.schema import Campaign
    from sandbox.tasks import load_task

    # `up` returned once db was healthy, migrate had succeeded and web had started; uvicorn
    # may still be importing. An empty campaigns page means the schema is there.
    deadline = time.monotonic() + 60
    while (page := stack["get"]("/")[0])[0] == 0 and time.monotonic() < deadline:
        time.sleep(1)
    assert page[0] == 200, f"{page}\n{stack['compose']('logs', '--no-color').stdout}"
    # Wide enough that no name or state wraps onto a second row (the table fits the terminal).
    ps = stack["compose"]("ps", "-a", env_extra={"COLUMNS": "400"}).stdout
    assert re.search(r"_migrate_1 .* Exit 0 ", ps) and re.search(r"_db_1 .* Up \(healthy\)", ps), ps
    assert {f"{stack['project']}_db-data", f"{stack['project']}_landscapes"} <= stack["volumes"]

    name = f"compose-{secrets.token_hex(3)}"
    engine = open_engine(stack["db_url"])  # the database in the db container, through its socket
    try:
        with transaction(engine) as session:
            campaign = Campaign(
                name=name,
                task="mirror_drift",
                budget="smoke",
                proposer="mutation",
                config={"islands": 1, "population": 1, "generations": 1},
            )
            session.add(campaign)
            session.flush()
            candidate = writes.add_candidate(
                session,
                campaign,
                code=load_task("mirror_drift").baseline_source("ppo"),
                origin="baseline",
                operator="seed",
                island=0,
                generation=0,
                member_of=(0,),
                baseline_name="ppo",
                note="baseline ppo",
            )
            campaign_id, candidate_id = campaign.id, candidate.id
    finally:
        engine.dispose()

    campaigns, one, candidate = stack["get"](
        "/", f"/campaigns/{campaign_id}", f"/candidates/{candidate_id}"
    )
    assert (
        campaigns[0] == 200 and name in campaigns[1] and f"/campaigns/{campaign_id}" in campaigns[1]
    )
    assert one[0] == 200 and name in one[1]
    assert candidate[0] == 200 and name in candidate[1] and "baseline ppo" in candidate[1]
