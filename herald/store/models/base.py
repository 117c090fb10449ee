"""Shared pieces of the metadata models: the declarative base, column types, naming convention.

Every model module in :mod:`herald.store.models` builds on :class:`Base`, so one ``MetaData``
holds every table (Alembic's ``env.py`` and ``tests/store/test_db.py`` compare it with the migrations).
Conventions:

- Every timestamp is timezone-aware UTC in Python (:class:`UTCDateTime`); SQLite stores it as
  naive UTC text, PostgreSQL as ``timestamptz``.
- Closed vocabularies (kinds, states, roles) are ``VARCHAR`` plus a ``CHECK`` constraint, not a
  database enum type, so adding a value is a plain migration on both back ends.
- Constraint names follow :data:`NAMING_CONVENTION` so migrations can refer to them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, DateTime, MetaData
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

#: Deterministic constraint names, so migrations can name what they alter or drop.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)



def check_in(column: str, values: tuple[str, ...]) -> str:
    """SQL text of a ``CHECK`` that ``column`` is one of ``values`` (a closed vocabulary)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator):
    """A ``DateTime`` that accepts only aware datetimes and always returns aware UTC ones.

    Raises:
        ValueError: on binding a naive datetime (its time zone would be a guess).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        """An aware time to the database's form: UTC (naive UTC text on SQLite).

        Raises:
            ValueError: ``value`` is naive.
        """
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Herald stores timezone-aware UTC times")
        value = value.astimezone(timezone.utc)
        # SQLite has no time-zone type; store naive UTC text so string comparisons (the audit
        # triggers, range queries) order correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        """A stored time back as an aware UTC ``datetime``."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


#: JSON documents: ``JSONB`` on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONDoc = JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of every Herald table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
