"""The metadata database's ORM models, by area; importing this package registers every table
on :data:`Base.metadata <herald.store.models.base.Base>`.

:mod:`herald.store.db` re-exports these names, so ``from herald.store.db import RecipientRow``
keeps working.
"""

from herald.store.models.accounts import USER_ROLES, ApiKeyRow, ApiNonceRow, UserRow
from herald.store.models.audit import AUDIT_MIN_RETENTION_DAYS, AuditRow
from herald.store.models.base import (
    NAMING_CONVENTION, Base, JSONDoc, UTCDateTime, check_in, utcnow,
)
from herald.store.models.constituency import (
    FILTER_KINDS, FILTER_STATES, RECIPIENT_KINDS, ContactRow, FilterRow, InhibitionRow,
    OperationPartnerRow, OperationRow, RecipientRow,
)
from herald.store.models.contacts import BounceReportRow, BounceRow, ContactOverrideRow
from herald.store.models.ledger import RUN_STATES, ReportRow, RunInputRow, RunRow
from herald.store.models.outbox import ADDRESS_STATES, OUTBOX_STATES, OutboxAddressRow, OutboxRow

__all__ = [
    "ADDRESS_STATES", "AUDIT_MIN_RETENTION_DAYS", "FILTER_KINDS", "FILTER_STATES", "NAMING_CONVENTION",
    "OUTBOX_STATES", "RECIPIENT_KINDS", "RUN_STATES", "USER_ROLES",
    "ApiKeyRow", "ApiNonceRow", "AuditRow", "Base", "BounceReportRow", "BounceRow",
    "ContactOverrideRow", "ContactRow", "FilterRow", "InhibitionRow", "JSONDoc", "OperationPartnerRow",
    "OperationRow", "OutboxAddressRow", "OutboxRow", "RecipientRow", "ReportRow", "RunInputRow", "RunRow", "UTCDateTime",
    "UserRow", "check_in", "utcnow",
]
