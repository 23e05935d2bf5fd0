"""`python3 dev.py test` on a machine without PostgreSQL: it tells a closed address from a listening one, and the
throwaway server it starts then holds the bot's schema and is gone afterwards."""

from __future__ import annotations

import socket

from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

import dev
from bot.adapters.store import Store
from tests.throwaway_postgres import throwaway_server


def test_the_fallback_is_chosen_by_whether_the_configured_address_answers() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        url = f"postgresql+psycopg://postgres@127.0.0.1:{listening.getsockname()[1]}/test"
        assert dev.postgres_reachable(url)
    assert not dev.postgres_reachable(url), "closed now: the test command would start its own server"


def test_the_throwaway_server_holds_the_schema_and_leaves_nothing_behind() -> None:
    with throwaway_server() as server:
        assert dev.postgres_reachable(server.url), "through its Unix socket"
        store = Store(server.url)
        store.migrate()
        store.close()
        engine = create_engine(server.url, poolclass=NullPool)
        assert {"alembic_version", "rollouts"} <= set(inspect(engine).get_table_names())
        engine.dispose()
    assert not dev.postgres_reachable(server.url)
    assert not server.pgdata.exists()
