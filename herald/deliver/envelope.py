"""The envelope addresses of an outbox message, each with its own delivery state (issue 15).

A recipient's contact may name several addresses: an RPSL ``abuse-mailbox`` value lists them
(``abuse@x.example, noc@x.example``) and a role may carry several ``abuse-mailbox`` lines; the
importer keeps them all, joined with ``, `` (docs/abuse-contacts.md).  Such a contact gets **one
message** with every address in its ``To`` header (an RFC 5322 address list) and **one**
``RCPT TO`` per address (RFC 5321 section 4.1.1.3: a forward-path names one mailbox).

Each address of a message is a row of ``outbox_addresses``
(:class:`herald.store.db.OutboxAddressRow`) with its own state:

- ``queued``: the next attempt sends to it;
- ``sent``: the relay accepted it at ``RCPT`` and took the message (end-of-data ``250``);
- ``failed``: refused permanently (``5yz`` to its ``RCPT``, or to the message), or still refused
  temporarily after ``[smtp] max_attempts``;
- ``held`` (``hold_reason = 'bouncing'``): the address is past ``[abuse_contacts]
  bounce_threshold`` (:func:`herald.deliver.bounces.hold_bouncing`); it is left out of the
  envelope until ``herald bounces --reset``.

The message's own state follows from its addresses (:func:`message_state`): ``queued`` while one
is queued (a temporary refusal is retried for that address only, with the usual backoff), else
``sent`` when one was delivered, else ``held`` (``bouncing``) when one is held, else ``failed``.
So a ``5yz`` for one address never loses the others, and a message is held only when every
address not yet done is held.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from herald.contacts.values import split_mailbox
from herald.deliver.smtp import Attempt, Outcome, RcptResult
from herald.store.db import OutboxAddressRow

#: ``hold_reason`` of an address (and of a message all of whose open addresses are) held while
#: it bounces.
BOUNCING = "bouncing"


def envelope_addresses(to: str | None) -> list[str]:
    """The envelope recipients of a ``To`` text: each distinct address, in order.

    ``a@x.example, b@y.example`` gives both; a single address gives itself; a quoted local part
    stays quoted (:func:`herald.contacts.values.split_mailbox`: the text is the clean list the
    RPSL import, an override or the configuration wrote; it is split, not re-interpreted, so the
    addresses are exactly those of ``To`` and of the bounce records).

    Args:
        to: the recipient's contact text (``Recipient.email``, ``outbox.rcpt_to``).

    Returns:
        addresses (``[]`` for empty text).
    """
    return split_mailbox(to)


def new_rows(outbox_id: int, to: str | None, now: datetime) -> list[OutboxAddressRow]:
    """The ``queued`` address rows of a message being queued (one per :func:`envelope_addresses`)."""
    return [OutboxAddressRow(outbox_id=outbox_id, address=a, state="queued", updated_at=now)
            for a in envelope_addresses(to)]


def queued(s: Session, outbox_id: int) -> list[str]:
    """The addresses of a message the next attempt sends to (state ``queued``), in order."""
    return list(s.scalars(sa.select(OutboxAddressRow.address).where(
        OutboxAddressRow.outbox_id == outbox_id, OutboxAddressRow.state == "queued")
        .order_by(OutboxAddressRow.id)))


def states(s: Session, outbox_id: int) -> Counter:
    """``Counter`` of a message's address states."""
    return Counter(dict(s.execute(sa.select(OutboxAddressRow.state, sa.func.count())
                                  .where(OutboxAddressRow.outbox_id == outbox_id)
                                  .group_by(OutboxAddressRow.state)).all()))


def message_state(counts: Counter) -> tuple[str, str | None]:
    """``(outbox state, hold_reason)`` of a message no attempt is running for, from its address
    states (see the module docstring)."""
    if counts["queued"]:
        return "queued", None
    if counts["sent"]:
        return "sent", None
    if counts["held"]:
        return "held", BOUNCING
    return "failed", None


def describe(r: RcptResult) -> str:
    """One address's result as a sentence (``recipient refused (permanent): 550 ...``)."""
    return Attempt(r.outcome, r.stage, r.reply).describe()


def problems(results: tuple[RcptResult, ...] | list[RcptResult]) -> str | None:
    """The addresses an attempt did not deliver to, as a sentence for ``outbox.last_error``:
    one description when every address had the same result, else ``address: description`` for
    each, separated by ``; ``.  ``None`` when every address was delivered."""
    bad = [r for r in results if r.outcome is not Outcome.SENT]
    if not bad:
        return None
    if len(bad) == len(results) and len({(r.outcome, r.stage, r.reply) for r in bad}) == 1:
        return describe(bad[0])
    return "; ".join(f"{r.address}: {describe(r)}" for r in bad)


def record(s: Session, outbox_id: int, attempt: Attempt, *, give_up: bool, keep_unknown: bool,
           attempts: int, now: datetime) -> tuple[Counter, list[str]]:
    """Record each address's result of one attempt (only rows still ``queued`` change).

    ``SENT`` -> ``sent``; ``FAILED`` -> ``failed``; ``RETRY`` (and ``UNKNOWN`` unless
    ``keep_unknown``) stays ``queued`` with the reply, or becomes ``failed`` when ``give_up``
    (``[smtp] max_attempts`` reached); ``UNKNOWN`` with ``keep_unknown`` stays ``queued`` (the
    operator decides about the message).

    Returns:
        ``(the message's address states afterwards, the addresses that failed now)``.
    """
    failed_now: list[str] = []
    for r in attempt.recipients:
        state, reply = "queued", r.reply
        if r.outcome is Outcome.SENT:
            state = "sent"
        elif r.outcome is Outcome.FAILED:
            state = "failed"
        elif give_up and not (r.outcome is Outcome.UNKNOWN and keep_unknown):
            state, reply = "failed", f"gave up after {attempts} attempts; last: {describe(r)}"
        done = s.execute(sa.update(OutboxAddressRow).where(
            OutboxAddressRow.outbox_id == outbox_id, OutboxAddressRow.address == r.address,
            OutboxAddressRow.state == "queued").values(state=state, smtp_reply=reply,
                                                      updated_at=now)).rowcount
        if done and state == "failed":
            failed_now.append(r.address)
    return states(s, outbox_id), failed_now
