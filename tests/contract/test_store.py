"""The store on both databases it supports: SQLite (the embedded default) and PostgreSQL (several instances).

PostgreSQL is required, not optional: each test gets a fresh schema in CHATOPS_TEST_POSTGRES_URL's database
and drops it afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from bot.adapters.store import (
    AuditEntry,
    Store,
    StoreUnavailable,
    alembic_config,
    default_url,
    migrate_command,
    redact,
)
from bot.adapters.tables import Base
from tests.contract.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[2]
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
UNREACHABLE = "postgresql+psycopg://chatops:s3cret-Pa55@127.0.0.1:1/chatops"


def entry(**fields: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "user_id": "U0ANN", "user_name": "ann", "channel_id": "C0OPS", "command": "/deploy",
        "text": "api gcr.io/acme/api:v2", "action": "deploy", "service": "api", "outcome": "accepted",
    }
    return AuditEntry(**(values | fields))


def test_migrate_creates_audit_table_and_is_idempotent(database_url: str) -> None:
    store = Store(database_url)
    try:
        assert store.revision() is None
        store.migrate()
        store.migrate()
        assert store.revision() == HEAD == "0010_held"
        engine = create_engine(database_url, poolclass=NullPool)
        schema = inspect(engine)
        assert {"alembic_version", "audit"} <= set(schema.get_table_names())
        assert {ix["name"]: ix["column_names"] for ix in schema.get_indexes("audit")} == {
            "ix_audit_service_at": ["service", "at"], "ix_audit_at": ["at"],
        }
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        engine.dispose()
    finally:
        store.close()


def test_models_match_the_migrations(store: Store, database_url: str) -> None:
    """A model change without a revision (or the reverse) fails here, not on someone's database."""
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
    engine.dispose()


def test_an_accepted_request_is_finished_once(store: Store) -> None:
    saved = store.record(entry())
    assert saved.id is not None
    store.finish(saved.id, "failed", "ref 1a2b: Cloud Run refused")
    store.finish(saved.id, "ok")
    assert [(e.outcome, e.detail) for e in store.audit()] == [("failed", "ref 1a2b: Cloud Run refused")]
    with pytest.raises(ValueError, match="ends ok or failed"):
        store.finish(saved.id, "accepted")


def test_record_and_audit_round_trip_in_utc(store: Store) -> None:
    before = datetime.now(UTC)
    saved = store.record(entry(detail="canary 5%"))
    assert saved.id is not None and saved.at is not None
    assert saved.at.tzinfo is UTC and before <= saved.at <= datetime.now(UTC)
    assert saved == entry(detail="canary 5%", at=saved.at, id=saved.id)
    assert store.audit() == [saved]

    in_paris = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    later = store.record(entry(service=None, command="/health", action="health", outcome="ok", at=in_paris))
    assert later.at == in_paris and later.at is not None and later.at.tzinfo is UTC
    assert later.at.hour == 10
    newest = store.audit(limit=1)[0]
    assert newest == later and newest.at is not None and newest.at.tzinfo is UTC


def test_audit_is_newest_first_and_filters(store: Store) -> None:
    start = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    recorded_out_of_order = [(2, "api", "U1"), (0, "web", "U1"), (4, "api", "U2"), (1, "web", "U2"), (3, None, "U1")]
    for minute, service, user in recorded_out_of_order:
        store.record(entry(at=start + timedelta(minutes=minute), service=service, user_id=user, detail=f"m{minute}"))
    store.record(entry(at=start + timedelta(minutes=4), service="api", user_id="U1", detail="m4 again"))

    def details(**query: Any) -> list[str]:
        return [found.detail for found in store.audit(**query)]

    assert details() == ["m4 again", "m4", "m3", "m2", "m1", "m0"]  # same time: the later record first
    assert details(limit=2) == ["m4 again", "m4"]
    assert details(service="api") == ["m4 again", "m4", "m2"]
    assert details(user_id="U2") == ["m4", "m1"]
    assert details(service="api", user_id="U1") == ["m4 again", "m2"]
    assert details(service="nope") == []
    with pytest.raises(ValueError, match="at least 1"):
        store.audit(limit=0)


def test_two_stores_on_one_database_see_each_other(store: Store, database_url: str) -> None:
    other = Store(database_url)
    try:
        other.migrate()
        first = store.record(entry(user_id="U1"))
        assert other.audit() == [first]
        second = other.record(entry(user_id="U2", at=first.at and first.at + timedelta(seconds=1)))
        assert store.audit() == [second, first]

        def write(target: Store, user: str) -> None:
            for _ in range(15):
                target.record(entry(user_id=user))

        with ThreadPoolExecutor(4) as pool:  # concurrent writers wait for each other instead of failing
            for done in [pool.submit(write, target, f"W{n}") for n, target in enumerate([store, other] * 2)]:
                done.result()
        assert len(store.audit(limit=100)) == 62
    finally:
        other.close()


def test_concurrent_migrate_from_threads(database_url: str) -> None:
    stores = [Store(database_url) for _ in range(4)]
    ready = threading.Barrier(len(stores))

    def migrate(target: Store) -> None:
        ready.wait()
        target.migrate()

    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            for done in [pool.submit(migrate, target) for target in stores]:
                done.result()
        assert {target.revision() for target in stores} == {HEAD}
    finally:
        for target in stores:
            target.close()


def test_concurrent_migrate_from_processes(database_url: str) -> None:
    """Instances starting together: the database lock, not the in-process one, keeps them apart."""
    script = "import sys; from bot.adapters.store import Store; Store(sys.argv[1]).migrate()"
    procs = [
        subprocess.Popen([sys.executable, "-c", script, database_url], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outcomes = [(proc.communicate(timeout=30)[1], proc.returncode) for proc in procs]
    assert [code for _, code in outcomes] == [0, 0, 0], outcomes
    store = Store(database_url)
    assert store.revision() == HEAD
    assert store.audit() == []
    store.close()


def test_ping_reaches_the_database(store: Store) -> None:
    store.ping()


def test_ping_unreachable_postgres_names_url_without_password() -> None:
    store = Store(UNREACHABLE)
    with pytest.raises(StoreUnavailable) as raised:
        store.ping()
    message = str(raised.value)
    assert "s3cret-Pa55" not in message and "\n" not in message
    assert "postgresql+psycopg://chatops:***@127.0.0.1:1/chatops" in message
    assert "check that PostgreSQL is running" in message
    store.close()


def test_unusable_sqlite_path_says_what_to_check(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'chatops.db'}"
    with pytest.raises(StoreUnavailable, match="directory exists") as raised:
        Store(url).migrate()
    assert url in str(raised.value)


def test_unparseable_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(StoreUnavailable, match="does not parse") as raised:
        Store("chatops:s3cret-Pa55@db")
    assert "s3cret-Pa55" not in str(raised.value)


def test_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    """WAL lets `chatops migrate` or a second process read while the bot writes."""
    store = Store(f"sqlite:///{tmp_path / 'chatops.db'}")
    store.ping()
    store.close()
    with sqlite3.connect(tmp_path / "chatops.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_memory_database_is_shared_between_threads() -> None:
    """`asyncio.to_thread` runs calls on whichever worker thread is free; they must see one database."""
    store = Store("sqlite://")
    store.migrate()
    with ThreadPoolExecutor(1) as pool:
        saved = pool.submit(store.record, entry()).result()
    assert store.audit() == [saved]
    store.close()


def test_entries_refuse_unknown_outcomes_and_naive_times() -> None:
    with pytest.raises(ValueError, match="not one of ok, accepted, refused, invalid, failed"):
        entry(outcome="done")
    with pytest.raises(ValueError, match="timezone-aware"):
        entry(at=datetime(2025, 1, 1))


def test_migrate_command_reports_the_revision(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate_command(database_url) == 0
    assert migrate_command(database_url) == 0
    line = f"database at {redact(database_url)} is at revision {HEAD}\n"
    assert capsys.readouterr() == (line * 2, "")


def test_migrate_command_unreachable_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate_command(UNREACHABLE) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("database at postgresql+psycopg://chatops:***@127.0.0.1:1/chatops is unavailable: ")
    assert "s3cret-Pa55" not in err and err.count("\n") == 1


def test_default_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHATOPS_DATABASE_URL", raising=False)
    assert default_url() == f"sqlite:///{tmp_path / 'chatops.db'}"
    monkeypatch.setenv("CHATOPS_DATABASE_URL", POSTGRES_URL)
    assert default_url() == POSTGRES_URL
