"""deploy/chatops-service.yaml, the bot's own Cloud Run service, read as `gcloud run services replace` would take it
once docs/deploy.md has filled its placeholders.

"The YAML maps directly to the V1 API (see the v1 schema)" (https://cloud.google.com/run/docs/reference/yaml/v1), so
it is held to run.googleapis.com's v1 discovery document, whose field descriptions carry Cloud Run's own limits.
"""

from __future__ import annotations

import re
import secrets
from string import Template
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from bot.adapters.store import Store, StoreUnavailable
from bot.environment import VARIABLES
from sandbox.iam import DEFAULT_ROLES
from tests.conftest import ROOT
from tests.contract.schemas import assert_google, discovery
from tests.throwaway_postgres import throwaway_server

SPEC = ROOT / "deploy" / "chatops-service.yaml"
GUIDE = ROOT / "docs" / "deploy.md"
FILLED = {"PROJECT_ID": "nba-props-platform", "PROJECT_NUMBER": "123456789012", "REGION": "us-west2",
          "SQL_INSTANCE": "chatops-db", "IMAGE": "us-west2-docker.pkg.dev/nba-props-platform/chatops/chatops:v1"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(Template(SPEC.read_text()).substitute(FILLED))
    return document


def container(spec: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = spec["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container(spec)["env"]}


def test_the_guide_fills_every_placeholder_and_no_other() -> None:
    """docs/deploy.md runs envsubst with an explicit list, so a placeholder it misses would reach Cloud Run as text."""
    placeholders = set(re.findall(r"\$\{(\w+)\}", SPEC.read_text()))
    lists = re.findall(r"envsubst '([^']*)'", GUIDE.read_text())
    assert lists, "the guide fills the spec with envsubst"
    for names in lists:
        assert {name.lstrip("$") for name in names.split()} == placeholders == set(FILLED)


def test_it_is_a_cloud_run_admin_api_v1_service(spec: dict[str, Any]) -> None:
    """Every field is one the v1 Service schema has (unknown ones are refused), of the type it says."""
    assert spec["apiVersion"] == "serving.knative.dev/v1"
    assert spec["kind"] == "Service"
    assert_google("run.v1", "Service", spec)


def accepted_annotations() -> dict[str, set[str]]:
    """ObjectMeta.annotations in the v1 discovery document: "* `run.googleapis.com/cpu-throttling`: Revision." """
    description = discovery("run.v1")["schemas"]["ObjectMeta"]["properties"]["annotations"]["description"]
    return {name: {kind.strip(" .,") for kind in kinds.split(",") if kind.strip(" .,")}
            for name, kinds in re.findall(r"\* `([^`]+)`: ([^*]+)", description)}


def test_every_annotation_is_one_cloud_run_accepts_where_it_stands(spec: dict[str, Any]) -> None:
    """'annotations with run.googleapis.com/ and autoscaling.knative.dev are restricted, and the accepted annotations
    will be different depending on the resource type' (v1 ObjectMeta.annotations)."""
    accepted = accepted_annotations()
    for name in spec["metadata"]["annotations"]:
        assert "Service" in accepted.get(name, set()), f"{name} is not a Service annotation"
    for name in spec["spec"]["template"]["metadata"]["annotations"]:
        assert "Revision" in accepted.get(name, set()), f"{name} is not a Revision annotation"


def test_an_instance_is_always_there_and_keeps_its_cpu_between_requests(spec: dict[str, Any]) -> None:
    """The reconciler, sweeps and digests run in the background. Minimum instances keep one up
    (https://cloud.google.com/run/docs/configuring/min-instances); instance-based billing, "previously called CPU
    always allocated", gives it CPU outside requests (https://cloud.google.com/run/docs/configuring/billing-settings),
    and needs at least 1 vCPU: below it "the billing settings must be set to request-based billing"
    (https://cloud.google.com/run/docs/configuring/services/cpu)."""
    annotations = spec["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["autoscaling.knative.dev/minScale"]) >= 1
    assert annotations["run.googleapis.com/cpu-throttling"] == "false"
    assert float(container(spec)["resources"]["limits"]["cpu"]) >= 1
    assert spec["spec"]["traffic"] == [{"percent": 100, "latestRevision": True}]


def test_startup_and_liveness_probes_ask_healthz_within_cloud_runs_limits(spec: dict[str, Any]) -> None:
    """v1 Probe: periodSeconds "Maximum value for liveness probe is 3600. Maximum value for startup probe is 240";
    timeoutSeconds "Must be smaller than period_seconds" (https://cloud.google.com/run/docs/configuring/healthchecks).
    /healthz answers once the bot has read its secrets and migrated, which tests/contract/test_image_assembly.py
    waits for."""
    probes = {kind: container(spec)[kind] for kind in ("startupProbe", "livenessProbe")}
    port = container(spec)["ports"][0]["containerPort"]
    for kind, probe in probes.items():
        assert probe["httpGet"] == {"path": "/healthz", "port": port}, kind
        assert probe["timeoutSeconds"] < probe["periodSeconds"], kind
    assert probes["startupProbe"]["periodSeconds"] <= 240
    assert probes["startupProbe"].get("initialDelaySeconds", 0) <= 240
    assert probes["livenessProbe"]["periodSeconds"] <= 3600


def test_its_environment_is_what_the_bot_reads_and_holds_no_secret(spec: dict[str, Any]) -> None:
    """Every name is one bot/environment.py reads, except PGPASSWORD, which libpq reads ("PGPASSWORD behaves the same
    as the password connection parameter", https://www.postgresql.org/docs/current/libpq-envars.html). PORT and K_*
    are Cloud Run's own ("reserved", https://cloud.google.com/run/docs/configuring/services/overview-environment-variables).
    The password comes from Secret Manager, pinned to a version as Google advises for secrets in environment
    variables (https://cloud.google.com/run/docs/configuring/services/secrets); no plain value holds one."""
    env = env_of(spec)
    assert set(env) - {"PGPASSWORD"} <= set(VARIABLES.values())
    assert not set(env) & {"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}
    password = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password["name"] == "chatops-db-password"
    assert password["key"].isdigit(), "pinned to a version, not latest"
    assert all("valueFrom" not in variable for name, variable in env.items() if name != "PGPASSWORD")

    database = make_url(env["CHATOPS_DATABASE_URL"]["value"])
    assert database.drivername == "postgresql+psycopg"
    assert database.password is None
    instance = spec["spec"]["template"]["metadata"]["annotations"]["run.googleapis.com/cloudsql-instances"]
    assert database.query["host"] == f"/cloudsql/{instance}", "the socket of the instance Cloud Run mounts"


def test_its_public_url_is_the_services_deterministic_url(spec: dict[str, Any]) -> None:
    """"https://[TAG---]SERVICE_NAME-PROJECT_NUMBER.REGION.run.app" (https://cloud.google.com/run/docs/triggering/
    https-request#deterministic): known before the first deploy, so runbook links point at the service."""
    public = env_of(spec)["CHATOPS_PUBLIC_URL"]["value"]
    assert public == f"https://{spec['metadata']['name']}-{FILLED['PROJECT_NUMBER']}.{FILLED['REGION']}.run.app"
    assert spec["metadata"]["labels"]["cloud.googleapis.com/location"] == FILLED["REGION"]


def test_its_service_account_gets_the_bots_roles_in_the_sandbox_and_cloud_sql_client(spec: dict[str, Any]) -> None:
    """The guide's grants to the bot's service account are the roles the sandbox models as the bot's (sandbox/iam.py)
    and "Cloud SQL Client (preferred)" for the database (https://cloud.google.com/sql/docs/postgres/connect-run)."""
    guide = GUIDE.read_text().replace("\\\n", " ")
    member = r'--member="serviceAccount:\$\{SA\}"'
    granted = set(re.findall(rf"{member}\s+--role=(roles/[\w.]+)", guide))
    assert granted == {*DEFAULT_ROLES, "roles/cloudsql.client"}
    account = spec["spec"]["template"]["spec"]["serviceAccountName"]
    assert account == f"chatops@{FILLED['PROJECT_ID']}.iam.gserviceaccount.com"


def test_the_database_url_and_pgpassword_open_a_server_that_demands_the_password(
        spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Cloud Run: the spec's URL (user, database, a socket directory, no password) and PGPASSWORD from the
    secret. A server that asks for the password (scram-sha-256) refuses the URL alone and accepts it with PGPASSWORD,
    so the bot's store migrates without a password ever being in its configuration."""
    password = secrets.token_urlsafe(24)
    with throwaway_server(database="chatops") as server:
        server.psql(f"CREATE ROLE chatops LOGIN PASSWORD '{password}'; ALTER DATABASE chatops OWNER TO chatops;")
        (server.pgdata / "pg_hba.conf").write_text("local all all scram-sha-256\n")
        server.psql("SELECT pg_reload_conf();")
        socket_dir = make_url(server.url).query
        url = make_url(env_of(spec)["CHATOPS_DATABASE_URL"]["value"]).update_query_dict(
            {"host": socket_dir["host"], "port": socket_dir["port"]}).render_as_string(hide_password=False)

        monkeypatch.delenv("PGPASSWORD", raising=False)
        refused = Store(url)
        with pytest.raises(StoreUnavailable):
            refused.migrate()
        refused.close()

        monkeypatch.setenv("PGPASSWORD", password)
        store = Store(url)
        store.migrate()
        assert store.revision() is not None
        store.close()
