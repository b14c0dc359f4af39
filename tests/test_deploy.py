"""What runs Baton at scale (deploy/): Prefect deployments, the image, Compose, Kubernetes manifests and Helm
values are consistent with the code and with Prefect 3.9.1; and the maintenance flows they deploy work."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import prefect
import pytest
import yaml
from sqlalchemy import text, update
from sqlmodel import col

from core.incidents.models import DepartmentTask, Incident
from core.ledger.models import LedgerEntry
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.platform.settings import Settings
from core.prevention.campaigns import CAMPAIGNS
from flows import maintenance
from flows.stack import PREFECT_SERVER_TUNING
from tests import engine_driver as drive

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)
API_COMMAND = ["uvicorn", "api.app:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--no-proxy-headers"]
POOL = "baton-maintenance"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def prefect_setting_names() -> set[str]:
    # Every environment variable name Prefect 3.9.1's settings accept (canonical names and aliases).
    from prefect.settings import Settings as PrefectSettings
    from prefect.settings.legacy import _get_valid_setting_names

    return set(_get_valid_setting_names(PrefectSettings))


def env_dict(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


# -- deploy/prefect.yaml -----------------------------------------------------------------------------------
def prefect_yaml() -> dict[str, Any]:
    data = load_yaml(DEPLOY / "prefect.yaml")
    assert isinstance(data, dict)
    return data


def test_prefect_yaml_is_valid_for_prefect_deploy_and_has_no_placeholders() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    raw = (DEPLOY / "prefect.yaml").read_text(encoding="utf-8")
    data = prefect_yaml()
    model = PrefectYamlModel.model_validate(data)
    assert {d.name for d in model.deployments} == {"deadline-sweep", "ledger-audit", "prevention-sweep",
                                                    *(f"prevention-{key}" for key in CAMPAIGNS)}
    assert "{{" not in raw, "templated placeholders: nothing is built or pushed"
    for section in ("build", "push"):
        assert section not in data, f"no {section} steps exist; leave the section out rather than null"

    def no_empty(value: Any, where: str) -> None:
        assert value not in (None, "", [], {}), f"empty placeholder at {where}"
        if isinstance(value, dict):
            for key, item in value.items():
                no_empty(item, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                no_empty(item, f"{where}[{i}]")

    no_empty(data, "prefect.yaml")


def test_every_deployment_entrypoint_is_a_real_prefect_flow() -> None:
    from prefect.flows import load_flow_from_entrypoint

    for deployment in prefect_yaml()["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        assert (ROOT / path).is_file(), path
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow_obj = getattr(module, name)
        assert isinstance(flow_obj, prefect.Flow)
        # A deployment is named by its flow, or (a campaign's) by its flow's kind and the campaign it runs.
        campaign = (deployment.get("parameters") or {}).get("campaign")
        named = deployment["name"] if campaign is None else "prevention-campaign"
        if campaign is not None:
            assert deployment["name"] == f"prevention-{campaign}" and campaign in CAMPAIGNS
        assert flow_obj.name == named
        # The way the process worker loads it at run time, from the pull step's working directory.
        loaded: Any = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        assert isinstance(loaded, prefect.Flow) and loaded.name == named
        assert deployment["work_pool"]["name"] == POOL


def test_schedules_pool_and_pull_step() -> None:
    data = prefect_yaml()
    by_name = {d["name"]: d for d in data["deployments"]}
    assert by_name["deadline-sweep"]["schedules"] == [{"interval": 60, "slug": "every-minute"}]
    nightly = by_name["ledger-audit"]["schedules"][0]
    _minute, hour, *rest = nightly["cron"].split()
    assert rest == ["*", "*", "*"] and 0 <= int(hour) <= 5, "once a night"
    for deployment in by_name.values():
        assert deployment["concurrency_limit"]["limit"] == 1
    # The code's location in the image is the pull step's directory.
    (step,) = data["pull"]
    directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
    assert f"WORKDIR {directory}\n" in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


@pytest.mark.prefect
def test_registration_command_creates_the_pool_and_deployments(prefect_server: Any) -> None:
    """Run compose's `register-flows` command (the k8s Job runs the same) against a real Prefect server,
    twice: it must be idempotent."""
    import asyncio

    from prefect import get_client

    compose = load_yaml(DEPLOY / "compose.yaml")
    k8s_job = next(d for d in k8s_docs() if d["metadata"]["name"] == "baton-register-flows")
    command = compose["services"]["register-flows"]["command"]
    assert command == k8s_job["spec"]["template"]["spec"]["containers"][0]["args"]
    env = dict(os.environ, PREFECT_API_URL=prefect_server.api_url,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    before = sorted(p.name for p in DEPLOY.iterdir())
    for _ in range(2):
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in DEPLOY.iterdir()) == before, "registering must not write into the repository"

    async def read() -> tuple[Any, dict[str, Any]]:
        async with get_client() as client:
            pool = await client.read_work_pool(POOL)
            return pool, {name: await client.read_deployment_by_name(f"{name}/{name}")
                          for name in ("deadline-sweep", "ledger-audit")}

    pool, deployments = asyncio.run(read())
    assert pool.type == "process"
    sweep, audit = deployments["deadline-sweep"], deployments["ledger-audit"]
    assert [s.schedule.interval for s in sweep.schedules] == [timedelta(seconds=60)]
    assert [s.schedule.timezone for s in audit.schedules] == ["Asia/Shanghai"]
    for deployment in (sweep, audit):
        assert deployment.work_pool_name == POOL
        assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}]
        assert deployment.global_concurrency_limit is not None and deployment.global_concurrency_limit.limit == 1


# -- deploy/Dockerfile -------------------------------------------------------------------------------------
def test_dockerfile_shape() -> None:
    text_ = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text_, re.M)
    users = re.findall(r"^USER (\S+)", text_, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root"), "runs as a non-root user"
    assert "pip install ." in text_
    assert re.search(r"^HEALTHCHECK .*\n?.*/api/health", text_, re.M)
    for line in re.findall(r"^COPY (?!--from=)(.+)$", text_, re.M):  # a build stage's files are not the repository's
        *sources, _target = [word for word in line.split() if not word.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    for command in ("uvicorn api.app:app --host 0.0.0.0 --port 8000 --workers 2 --no-proxy-headers", "baton worker",
                    "baton db upgrade"):
        assert command in text_, f"the Dockerfile documents `{command}`"


@pytest.mark.slow  # starts processes of its own
def test_dockerfile_builds() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no Docker engine here: the `docker` command is not installed")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        pytest.skip(f"no Docker engine here: `docker info` failed ({reason})")
    tag = "baton:deploy-test"
    build = subprocess.run([docker, "build", "-f", "deploy/Dockerfile", "-t", tag, "."], cwd=ROOT,
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    uid = subprocess.run([docker, "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True,
                         timeout=120)
    assert uid.returncode == 0 and uid.stdout.strip() != "0"
    for args in (["baton", "--help"], ["python", "-c", "import api.app, flows.maintenance, core.sharing.cap"]):
        run = subprocess.run([docker, "run", "--rm", tag, *args], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


# -- deploy/compose.yaml and .env.example -------------------------------------------------------------------
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$|AUTH", re.I)
URL_CREDENTIALS = re.compile(r"://[^/@\s:]*:(\$\{[^}]*\}|[^@\s/]+)@")
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


def compose() -> dict[str, Any]:
    data = load_yaml(DEPLOY / "compose.yaml")
    assert isinstance(data, dict)
    return data


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def assert_not_literal_secret(key: str, value: str, where: str) -> None:
    if SECRET_NAME.search(key) and value:
        assert "${" in value, f"{where}: {key} must come from a variable, not a literal"
    for password in URL_CREDENTIALS.findall(value):
        assert password.startswith("${"), f"{where}: {key} has a literal password in a URL"


def test_every_compose_service_has_an_image_and_a_command() -> None:
    services = compose()["services"]
    expected = {"postgres", "redis", "prefect-migrate", "prefect-server", "prefect-services", "migrate", "api",
                "worker", "register-flows", "maintenance-worker"}
    assert expected <= set(services)
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name}: no image or build"
        assert service.get("command"), f"{name}: no command"
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} depends on unknown {dependency}"
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert services["api"]["command"] == API_COMMAND
    assert "baton worker" in " ".join(services["worker"]["command"])
    assert services["migrate"]["command"] == ["baton", "db", "upgrade"]
    assert services["prefect-server"]["command"][:3] == ["prefect", "server", "start"]
    assert "--no-services" in services["prefect-server"]["command"]
    assert services["prefect-services"]["command"] == ["prefect", "server", "services", "start"]
    maintenance_cmd = services["maintenance-worker"]["command"]
    assert maintenance_cmd[:3] == ["prefect", "worker", "start"] and POOL in maintenance_cmd
    assert "process" in maintenance_cmd


def test_workers_run_several_replicas_and_migrations_come_first() -> None:
    services = compose()["services"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("prefect-server", "prefect-services"):
        assert services[name]["depends_on"]["prefect-migrate"]["condition"] == "service_completed_successfully"
    assert services["postgres"]["healthcheck"]["test"]
    assert services["api"].get("healthcheck", {}).get("disable") is not True, "the API keeps the image's check"
    for name in ("worker", "maintenance-worker", "migrate", "register-flows"):
        assert services[name]["healthcheck"]["disable"] is True, f"{name} has no HTTP port to check"


def test_compose_holds_no_literal_secrets_and_every_variable_is_in_env_example() -> None:
    raw = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    data = compose()
    for name, service in data["services"].items():
        for key, value in env_dict(service).items():
            assert_not_literal_secret(key, value, f"services.{name}.environment")
        command = service.get("command")
        joined = " ".join(command) if isinstance(command, list) else str(command)
        for _, value in re.findall(r"(requirepass|--password)[=\s]+(\S+)", joined):
            assert value.startswith("$"), f"{name}: literal password in its command"
    assert "PASSWORD '" not in raw, "SQL with a literal password"
    example = env_example()
    for variable in VARIABLE.findall(raw):
        assert variable in example, f"${{{variable}}} is used by compose.yaml but missing from .env.example"
    for service in data["services"].values():
        env_file = service.get("env_file")
        if env_file:
            assert env_file in (".env", [".env"])


def test_env_example_marks_every_secret_change_me_and_names_real_settings() -> None:
    example = env_example()
    tracked = subprocess.run(["git", "ls-files", "deploy/.env"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout.strip() == "", "deploy/.env holds real secrets: never commit it"
    for key, value in example.items():
        if SECRET_NAME.search(key):
            assert "change-me" in value, f"{key}: example secrets must be marked change-me"
    baton_fields = set(Settings.model_fields)
    for key in example:
        if key.startswith("BATON_"):
            assert key.removeprefix("BATON_").lower() in baton_fields, f"{key} is not a Baton setting"


def test_compose_prefect_settings_exist_in_prefect_and_use_redis() -> None:
    names = prefect_setting_names()
    services = compose()["services"]
    for name in ("prefect-server", "prefect-services", "prefect-migrate"):
        env = env_dict(services[name])
        assert services[name]["image"] == f"prefecthq/prefect:{prefect.__version__}-python3.11"
        for key in env:
            if key.startswith("PREFECT_") and not key.startswith("PREFECT_REDIS_"):  # prefect-redis's own
                assert key in names, f"{name}: {key} is not a Prefect {prefect.__version__} setting"
        assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
        assert env["PREFECT_SERVER_EVENTS_MESSAGING_BROKER"] == "prefect_redis.messaging"
        assert env["PREFECT_SERVER_EVENTS_MESSAGING_CACHE"] == "prefect_redis.messaging"
        assert env["PREFECT_SERVER_DOCKET_URL"].startswith("redis://")
        assert env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
        assert PREFECT_SERVER_TUNING.items() <= env.items(), f"{name}: tuned as flows.stack tunes its servers"
    for name in ("api", "worker", "maintenance-worker", "migrate"):
        env = env_dict(services[name])
        assert env["BATON_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        for key in env:
            if key.startswith("BATON_"):
                assert key.removeprefix("BATON_").lower() in Settings.model_fields, key


def test_postgres_init_creates_both_databases_and_pg_trgm() -> None:
    data = compose()
    mounts = data["services"]["postgres"]["configs"]
    (mount,) = mounts
    assert mount["target"].startswith("/docker-entrypoint-initdb.d/") and mount["target"].endswith(".sh")
    script = data["configs"][mount["source"]]["content"]
    assert "CREATE DATABASE baton" in script and "CREATE DATABASE prefect" in script
    assert re.search(r"\\connect prefect\s+CREATE EXTENSION IF NOT EXISTS pg_trgm", script)


# -- deploy/k8s --------------------------------------------------------------------------------------------
def k8s_docs() -> list[dict[str, Any]]:
    return load_all(DEPLOY / "k8s" / "baton.yaml")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def test_k8s_yaml_documents_parse() -> None:
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs = load_all(path)
        assert docs, path
        for doc in docs:
            assert isinstance(doc, dict), path


def test_k8s_workloads_have_resources_security_and_probes() -> None:
    docs = k8s_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "baton-api"), ("Service", "baton-api"), ("Deployment", "baton-worker"),
            ("Job", "baton-migrate"), ("ConfigMap", "baton-config")} <= kinds
    assert not any(d["kind"] == "Secret" for d in docs), "secrets are referenced, never included"
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            where = f"{doc['metadata']['name']}/{container['name']}"
            resources = container.get("resources") or {}
            assert resources.get("requests", {}).get("cpu") and resources.get("requests", {}).get("memory"), where
            assert resources.get("limits", {}).get("memory"), where
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
            refs = [ref["secretRef"]["name"] for ref in container.get("envFrom", []) if "secretRef" in ref]
            assert set(refs) <= {"baton-secrets"}, where
            assert "command" not in container and container["args"], f"{where}: keep the image's ENTRYPOINT (tini)"
            if doc["kind"] == "Deployment" and container.get("ports"):
                assert container.get("readinessProbe") and container.get("livenessProbe"), f"{where}: probes"


def test_k8s_api_workers_and_migration() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s_docs()}
    config = docs[("ConfigMap", "baton-config")]["data"]
    for key in config:
        if key.startswith("BATON_"):
            assert key.removeprefix("BATON_").lower() in Settings.model_fields, key
    names = prefect_setting_names()
    assert all(key in names for key in config if key.startswith("PREFECT_")), "unknown Prefect setting"

    api = docs[("Deployment", "baton-api")]
    (container,) = pod_spec(api)["containers"]
    assert container["args"] == API_COMMAND
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/health"
    service = docs[("Service", "baton-api")]
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()

    worker = docs[("Deployment", "baton-worker")]
    assert worker["spec"]["replicas"] == 3
    assert "baton worker" in " ".join(pod_spec(worker)["containers"][0]["args"])
    lease = float(config.get("BATON_LEASE_SECONDS", Settings().lease_seconds))
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > lease, "time to release leases on SIGTERM"

    job = docs[("Job", "baton-migrate")]
    assert pod_spec(job)["containers"][0]["args"] == ["baton", "db", "upgrade"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    workloads = [d for d in docs.values() if d["kind"] in ("Deployment", "Job")]
    images = {c["image"] for d in workloads for c in pod_spec(d)["containers"]}
    assert images == {compose()["x-baton"]["image"]}, "one Baton image everywhere"


def test_helm_values_for_prefect_server_and_worker() -> None:
    server = load_yaml(DEPLOY / "k8s" / "prefect-server-values.yaml")
    assert server["global"]["prefect"]["image"]["prefectTag"] == f"{prefect.__version__}-python3.11"
    assert server["server"]["replicaCount"] >= 2
    assert server["backgroundServices"]["runAsSeparateDeployment"] is True
    assert server["backgroundServices"]["messaging"]["broker"] == "prefect_redis.messaging"
    assert server["postgresql"]["enabled"] is False and server["redis"]["enabled"] is False
    assert server["secret"]["create"] is False and server["secret"]["name"]
    names = prefect_setting_names()
    for item in server["global"]["prefect"]["env"]:
        assert item["name"] in names, item["name"]
        assert not SECRET_NAME.search(item["name"]), "secrets go in the referenced Secrets"
    # The cluster's Prefect is tuned as the servers Baton starts itself are.
    assert PREFECT_SERVER_TUNING.items() <= {item["name"]: item["value"]
                                             for item in server["global"]["prefect"]["env"]}.items()

    def no_inline_secrets(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if "password" in str(key).lower() or key == "authString":
                    assert item in (None, "", {}), f"{where}.{key}: reference a Secret instead"
                no_inline_secrets(item, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                no_inline_secrets(item, f"{where}[{i}]")

    no_inline_secrets(server, "prefect-server-values")

    worker = load_yaml(DEPLOY / "k8s" / "prefect-worker-values.yaml")
    assert worker["worker"]["apiConfig"] == "server"
    assert worker["worker"]["config"]["workPool"] == POOL and worker["worker"]["config"]["type"] == "process"
    assert f"{worker['worker']['image']['repository']}:{worker['worker']['image']['prefectTag']}" == \
        compose()["x-baton"]["image"], "the maintenance worker runs in Baton's image"
    assert worker["worker"]["extraEnvVarsSecret"] == "baton-secrets"


# -- flows/maintenance.py ----------------------------------------------------------------------------------
def first_task(incident_id: str) -> DepartmentTask:
    drive.step(incident_id)
    return drive.open_tasks(incident_id)["rainstorm_forecast"]


def set_times(incident_id: str, task_id: str, *, assigned: timedelta, due: timedelta, woken: timedelta) -> None:
    """Move a task's clock (relative to now) as if it had been assigned long ago; no ledger row changes."""
    now = utcnow()
    with session_scope() as session:
        session.execute(update(DepartmentTask).where(col(DepartmentTask.id) == task_id)
                        .values(assigned_at=now + assigned, due_at=now + due))
        session.execute(update(Incident).where(col(Incident.id) == incident_id).values(woken_at=now + woken))


@BOTH
def test_sweep_wakes_an_incident_whose_deadline_passed_unhandled(baton: str) -> None:
    overdue, waiting = drive.open_("flood"), drive.open_("flood")
    task = first_task(overdue)
    assert task.due_at is not None
    first_task(waiting)
    before = drive.incident(overdue).woken_at
    late = task.due_at + timedelta(seconds=1)
    # At `late` the second incident's task is overdue too (same plan, same clock): move it into the future.
    with session_scope() as session:
        session.execute(update(DepartmentTask).where(col(DepartmentTask.incident_id) == waiting)
                        .values(due_at=late + timedelta(hours=2), assigned_at=late))
    assert maintenance.sweep_deadlines(now=late) == [overdue]
    assert drive.incident(overdue).woken_at > before
    # Woken after its deadline: a second sweep leaves it alone until the worker acts.
    assert maintenance.sweep_deadlines(now=late + timedelta(seconds=30)) == []
    # The worker's reconciliation escalates it; nothing is due any more.
    drive.step(overdue, now=late)
    assert drive.tasks(overdue)["rainstorm_forecast"].status == "escalated"
    with session_scope() as session:
        session.execute(update(Incident).where(col(Incident.id) == overdue).values(woken_at=task.due_at))
    assert maintenance.sweep_deadlines(now=late + timedelta(minutes=1)) == []


@BOTH
def test_sweep_wakes_for_a_passed_reminder_once(baton: str) -> None:
    incident_id = drive.open_("flood")
    task = first_task(incident_id)
    # 60 minutes to do it, 55 gone: the reminder (at 80 % of the time) is 7 minutes overdue.
    set_times(incident_id, task.id, assigned=timedelta(minutes=-55), due=timedelta(minutes=5),
              woken=timedelta(minutes=-56))
    assert maintenance.sweep_deadlines() == [incident_id]
    assert maintenance.sweep_deadlines() == []
    drive.step(incident_id)  # the flow sends the reminder
    reminded = drive.tasks(incident_id)["rainstorm_forecast"]
    assert reminded.reminded_at is not None and reminded.status == "assigned"
    with session_scope() as session:
        session.execute(update(Incident).where(col(Incident.id) == incident_id)
                        .values(woken_at=utcnow() - timedelta(hours=1)))
    assert maintenance.sweep_deadlines() == [], "reminder sent, deadline not yet passed"


def test_sweep_ignores_tasks_not_yet_due_and_closed_incidents(baton: str) -> None:
    incident_id = drive.open_("flood")
    task = first_task(incident_id)
    assert maintenance.sweep_deadlines() == []
    set_times(incident_id, task.id, assigned=timedelta(hours=-3), due=timedelta(hours=-1), woken=timedelta(hours=-4))
    with session_scope() as session:
        session.execute(update(Incident).where(col(Incident.id) == incident_id).values(status="closed"))
    assert maintenance.sweep_deadlines() == []


@pytest.mark.prefect
def test_deadline_sweep_flow_run_wakes_an_overdue_incident(prefect_server: Any, baton: str) -> None:
    incident_id = drive.open_("flood")
    task = first_task(incident_id)
    set_times(incident_id, task.id, assigned=timedelta(hours=-2), due=timedelta(hours=-1), woken=timedelta(hours=-3))
    state = maintenance.deadline_sweep(return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == {"woken": [incident_id], "instructions_overdue": []}
    woken = drive.incident(incident_id).woken_at
    assert utcnow() - woken < timedelta(minutes=1)


def tamper_with_ledger(incident_id: str) -> None:
    """Edit one entry the way an intruder with database access would: guards off, then UPDATE."""
    with session_scope() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("ALTER TABLE ledger_entry DISABLE TRIGGER USER"))
        else:
            session.execute(text("DROP TRIGGER ledger_entry_no_update"))
            session.execute(text("DROP TRIGGER ledger_entry_no_delete"))
        session.execute(update(LedgerEntry)
                        .where(col(LedgerEntry.incident_id) == incident_id, col(LedgerEntry.seq) == 2)
                        .values(actor="someone else"))


@BOTH
def test_audit_passes_on_clean_ledgers_and_names_a_tampered_one(baton: str) -> None:
    clean, tampered = drive.open_("flood"), drive.open_("typhoon")
    drive.step(clean)
    drive.step(tampered)
    assert maintenance.audit_ledgers() == (2, [])
    tamper_with_ledger(tampered)
    checked, broken = maintenance.audit_ledgers()
    assert checked == 2 and [(b.incident_id, b.first_bad_seq) for b in broken] == [(tampered, 2)]
    with pytest.raises(maintenance.LedgerBroken, match=drive.incident(tampered).code):
        maintenance.ledger_audit.fn()


@pytest.mark.prefect
def test_ledger_audit_flow_run_fails_on_a_tampered_ledger_and_passes_on_a_clean_one(
        prefect_server: Any, baton: str) -> None:
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    state = maintenance.ledger_audit(return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == {"checked": 1, "broken": 0}
    tamper_with_ledger(incident_id)
    state = maintenance.ledger_audit(return_state=True)
    assert state.is_failed()
    assert drive.incident(incident_id).code in str(state.message)
    with pytest.raises(maintenance.LedgerBroken):
        state.result()
