"""Databases for the store's tests: a fresh SQLite file, or a fresh schema in the test PostgreSQL."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from bot.adapters.store import Store, redact

POSTGRES_URL = os.environ.get("CHATOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Engine]:
    """An autocommit connection to the test server, for creating and dropping per-test schemas."""
    engine = create_engine(
        make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"),
        poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3},
    )
    try:
        with engine.connect():
            reason = ""
    except OperationalError as exc:
        reason = " ".join(str(exc.orig).split())
    if reason:
        pytest.fail(
            f"the store tests need PostgreSQL at {redact(POSTGRES_URL)} ({reason}). Run them with `python3 dev.py "
            f"test`, which starts a throwaway server when none answers there, or start one with\n"
            f"    {START_POSTGRES}\nor set CHATOPS_TEST_POSTGRES_URL to a server that trusts the test user.",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a fresh SQLite file, or a fresh PostgreSQL schema first on the search_path."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chatops.db'}"
        return
    admin: Engine = request.getfixturevalue("postgres")
    schema = f"chatops_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def store(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[Store]:
    """A store at the head revision: a copy of the worker's migrated SQLite file, or a schema migrated now."""
    sqlite = database_url.startswith("sqlite")
    if sqlite:  # database_url's file, not yet created
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_template"), tmp_path / "chatops.db")
    migrated = Store(database_url)
    if not sqlite:
        migrated.migrate()
    yield migrated
    migrated.close()


