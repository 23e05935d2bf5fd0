"""Alembic revisions for the bot's database, applied by `Store.migrate()` (`chatops migrate`).

Configured in code (`bot.adapters.store.alembic_config`), so the bot needs no alembic.ini. To change
the schema, change the models in `bot/adapters/store.py` and add one file to `versions/`: copy the
newest revision, name it `NNNN_<what>.py`, set `revision = "NNNN_<what>"` (at most 32 characters,
the width of alembic_version) and `down_revision` to the previous one; the test that compares models
with migrations fails until both agree. Write changes SQLite can't make in place inside
`op.batch_alter_table(...)`. Revisions are forward-only: during a deploy two versions of the bot share
one database, so a change is made compatible in steps (add, backfill, then drop) rather than undone.
"""
