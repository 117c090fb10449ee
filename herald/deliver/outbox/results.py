"""What the outbox operations return: :class:`SendResult` of a send pass, :class:`OutboxEntry` of a
row, and :class:`OutboxError`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from herald.errors import HeraldError



class OutboxError(HeraldError):
    """An outbox operation is not possible (unknown id, wrong state)."""


@dataclass
class SendResult:
    """What one :func:`send_due` pass did (outbox ids in each list).

    Attributes:
        sent: accepted by the relay (``250``).
        retried: temporary failure, queued again with a later ``next_attempt_at``.
        failed: permanent failure (``5yz``) or too many attempts.
        held: held in this pass (unknown outcome, key unusable).
        requeued: found ``sending`` from a dead sender before the end of data, queued again.
        released: held for a key problem, now built and queued.
        errors: problems not tied to one message (relay unreachable, lock busy).
        busy: another sender holds the lock; nothing was done.
    """

    sent: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    busy: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox row, as ``herald outbox`` shows it (times aware UTC)."""

    id: int
    message_id: str
    state: str
    recipient: str
    rcpt_to: str | None
    day: date | None
    report_type: str | None
    subject: str | None
    tlp: str | None
    protection: str | None
    attempts: int
    next_attempt_at: datetime | None
    hold_reason: str | None
    last_error: str | None
    smtp_reply: str | None
    envelope_sender: str
    sent_at: datetime | None
    path: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (dates as ISO text)."""
        return {k: (v.isoformat() if isinstance(v, (date, datetime)) else v)
                for k, v in asdict(self).items()}

