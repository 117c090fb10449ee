"""Alembic migrations of the metadata database, run by :func:`herald.store.db.upgrade`."""
