"""Alembic environment: run through `siloport control migrate` (see shared.db.migrate)."""

from shared.db.migrate import run_env

run_env()
