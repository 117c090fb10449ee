"""The outbox: report messages queued in the metadata database and delivered exactly once.

Life of a message (``outbox.state``)::

    enqueue_reports ──> queued ──claim──> sending ──250──> sent
                          ^  │               │ 4yz / lost connection before end of data
                          │  │               ├──────────────> queued (retry later, backoff)
                          │  │               │ 5yz / too many attempts
                          │  │               ├──────────────> failed
                          │  │               │ no reply after end of data (unknown outcome)
                          │  │               └──────────────> held (operator decides)
                          │  └─ key missing/expired ───────> held (retried by every send)
                          └──────────── herald outbox --release ──┘

Exactly once:

- **Enqueue is idempotent.**  The ``Message-ID`` is derived from the recipient, report type, day
  and the report's SHA-256 (:func:`herald.deliver.compose.message_id`) and is unique in the table;
  re-running the day finds the row and queues nothing.
- **One sender at a time.**  :func:`send_due` takes an exclusive lock (``flock`` on
  ``<data>/mail/send.lock``, and a PostgreSQL advisory lock on PostgreSQL); a second ``herald send``
  returns at once (``busy``).  A message is claimed with a conditional
  ``UPDATE ... WHERE state = 'queued'``.
- **Record before and after.**  The claim commits ``sending`` (phase ``smtp``) before connecting;
  after the message data and *before* its terminating ``.`` the phase ``eod`` is committed; the
  relay's reply is committed right after it arrives.
- **Crash policy.**  A row found in ``sending`` when the lock is taken belongs to a sender that
  died.  Phase ``smtp``: the terminator was never sent, the relay discarded the transaction
  (RFC 5321 section 3.8), so the message is queued again and will arrive once.  Phase ``eod``: the
  relay may or may not have accepted it; resending could deliver it twice (RFC 1047), so the
  message is ``held`` with ``hold_reason = 'outcome_unknown'`` and a reason that tells the
  operator to check the relay's log for the ``Message-ID`` and then ``herald outbox --mark-sent``
  or ``--release`` it (``[smtp] unknown_outcome = "resend"`` chooses at-least-once instead).  The
  same applies when the relay drops the connection after the terminator without replying.

Built messages are spooled under ``<data>/mail/<day>/``: ``<key>.hdr`` (top-level headers),
``<key>.entity`` (the unprotected MIME content) and ``<key>.eml`` (the exact bytes that are sent,
signed and possibly encrypted; its SHA-256 is in ``outbox.sha256`` and is checked before sending).

The package, one module a concept: :mod:`.results` (what the operations return), :mod:`.spool`
(built messages on disk, OpenPGP protection), :mod:`.enqueue`, :mod:`.send` (the sender) and
:mod:`.actions` (the operator's view and actions).
"""

from herald.deliver.outbox.actions import list_outbox, mark_sent, release
from herald.deliver.outbox.enqueue import TLP_ORDER, enqueue_reports
from herald.deliver.outbox.results import OutboxEntry, OutboxError, SendResult
from herald.deliver.outbox.send import recover, send_due, sender_lock

__all__ = ["TLP_ORDER", "OutboxEntry", "OutboxError", "SendResult", "enqueue_reports", "list_outbox", "mark_sent",
           "recover", "release", "send_due", "sender_lock"]
