"""Fixtures shared by contract and scenario tests: the sandbox world and real clients pointed at it."""

from __future__ import annotations

import contextlib
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.cloud import run_v2
from google.oauth2.credentials import Credentials

from bot.adapters.store import Store
from bot.config import Config, load_config
from sandbox.world import World, WorldOptions
from tests import figures

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "chatops.example.yaml"


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite database migrated to the head revision per worker, copied for each test that wants a fresh one:
    a copy takes a millisecond, running every migration a third of a second."""
    path = tmp_path_factory.mktemp("migrated") / "chatops.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    store.close()
    return path


@pytest.fixture
def migrated_sqlite(tmp_path: Path, migrated_sqlite_template: Path) -> str:
    """A fresh SQLite database at the head revision, for this test alone."""
    path = tmp_path / "chatops.db"
    shutil.copyfile(migrated_sqlite_template, path)
    return f"sqlite:///{path}"


LONGEST_FIRST = (
    "scenario/test_scale_out_scenario.py", "scenario/test_real_timings_scenario.py", "model/test_engine_model.py",
    "scenario/test_real_timings_fleet_scenario.py", "scenario/test_digest_scenario.py",
    "scenario/test_kills_scenario.py", "scenario/test_demo.py", "scenario/test_faults_scenario.py",
    "scenario/test_rollout_scenario.py", "scenario/test_strict_world.py", "contract/test_image_assembly.py",
    "unit/test_properties.py", "scenario/test_restarts_scenario.py", "scenario/test_approval_queue_scenario.py",
    "contract/test_monitoring_contract.py", "unit/test_policy_matrix.py")
"""The files that take longest, measured (`dev.py test --durations=0`), slowest first. dev.py runs whole files per
worker in collection order (`--no-loadscope-reorder`), so these start first and the short ones fill in after: the
suite ends when its longest file does, not when a long file that started last does. Order only; the rest keep
theirs."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(ROOT / "tests").as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: within a file, and among the rest, the order is as collected


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, None]:
    outcome = yield
    if call.when == "teardown":
        report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]  # pluggy Result
        report.user_properties.extend(figures.take())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    totals: Counter[str] = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if isinstance(name, str) and name.startswith(figures.PREFIX):
                    totals[name.removeprefix(figures.PREFIX)] += int(value)
    if totals:
        terminalreporter.write_sep("-", "figures: what the suite put the bot through")
        for what, n in sorted(totals.items()):
            terminalreporter.write_line(f"{n:>7,}  {what}")


@pytest.fixture(scope="session")
def example_config() -> Config:
    """The example fleet without its freeze windows, so that no test deploys differently at the hour it runs; the
    tests of freezes give their own windows."""
    return load_config(EXAMPLE_CONFIG).model_copy(update={"freezes": ()})


@pytest.fixture(scope="session")
async def world(example_config: Config) -> AsyncIterator[World]:
    """One world for the session; tests that change a service use their own service or revision names."""
    sandbox = World(example_config, WorldOptions(start_ms=60, route_ms=20, slack_rate_per_s=50, slack_burst=50))
    await sandbox.start()
    yield sandbox
    await sandbox.stop()


@contextlib.contextmanager
def bot_may_not_invoke(world: World, service: str) -> Iterator[None]:
    """For a while, the bot's service account holds no role with run.routes.invoke on the service: run.viewer
    instead of run.developer at project level (run.developer includes run.routes.invoke,
    https://cloud.google.com/run/docs/reference/iam/roles), and no roles/run.invoker binding on the service."""
    iam = world.iam
    roles = list(iam.roles)
    bindings = iam.policy(iam.service_name(service)).bindings
    invokers = list(bindings.get("roles/run.invoker", []))
    iam.set_roles(["roles/run.viewer" if role == "roles/run.developer" else role for role in roles])
    bindings["roles/run.invoker"] = [member for member in invokers if member != iam.member]
    try:
        yield
    finally:
        iam.set_roles(roles)
        bindings["roles/run.invoker"] = invokers


@contextlib.contextmanager
def also_granted(world: World, *roles: str) -> Iterator[None]:
    """For a while, the bot's service account also holds these project roles: how a test plays an operator (the
    sandbox has one principal), e.g. roles/secretmanager.admin to create and rotate secrets."""
    held = list(world.iam.roles)
    world.iam.set_roles([*held, *roles])
    try:
        yield
    finally:
        world.iam.set_roles(held)


@contextlib.contextmanager
def open_to_all_users(world: World, service: str) -> Iterator[None]:
    """allUsers holds roles/run.invoker on the service (https://cloud.google.com/run/docs/authenticating/public)."""
    bindings = world.iam.policy(world.iam.service_name(service)).bindings
    invokers = list(bindings.get("roles/run.invoker", []))
    bindings["roles/run.invoker"] = [*invokers, "allUsers"]
    try:
        yield
    finally:
        bindings["roles/run.invoker"] = invokers


def client_options(endpoint: str) -> ClientOptions:
    return ClientOptions(api_endpoint=endpoint)


def google_credentials(world: World) -> Credentials:
    """An access token from the world's metadata server, the only credentials its Google APIs accept: a test
    calling them plays a caller on the bot's instance (gcloud, an operator's script)."""
    return Credentials(token=world.metadata.access_token())  # type: ignore[no-untyped-call]


def google_auth(world: World) -> dict[str, str]:
    """The same token as the header a raw REST call sends."""
    return {"Authorization": f"Bearer {world.metadata.access_token()}"}


@pytest.fixture(scope="session")
def services_client(world: World) -> run_v2.ServicesClient:
    return run_v2.ServicesClient(transport="rest", credentials=google_credentials(world),
                                 client_options=client_options(world.url("cloud_run")))


@pytest.fixture(scope="session")
def revisions_client(world: World) -> run_v2.RevisionsClient:
    return run_v2.RevisionsClient(transport="rest", credentials=google_credentials(world),
                                  client_options=client_options(world.url("cloud_run")))
