"""A fresh schema in the test PostgreSQL for scenarios whose bot instances share one database: tests running side
by side on the one server never see each other's rows."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

POSTGRES_URL = os.environ.get("CHATOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def fresh_schema(prefix: str) -> Iterator[str]:
    """The database URL that puts a new schema first on the search path, so every instance (and the test's own
    reads) use it; the schema is dropped afterwards."""
    admin: Engine = create_engine(make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"), poolclass=NullPool,
                                  isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        pytest.fail(f"this scenario needs PostgreSQL at {POSTGRES_URL}: {exc.orig}", pytrace=False)
    try:
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
