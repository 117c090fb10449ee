"""SMTP client for one relay (RFC 5321), with STARTTLS (RFC 3207) or implicit TLS (RFC 8314),
AUTH (RFC 4954), a per-relay rate limit and a hook before the end of the message data.

:meth:`Relay.send` runs one mail transaction (``MAIL``, ``RCPT``, ``DATA``) on a connection that
is opened on demand and reused for the next message.  The message data is written *without* its
terminating ``<CRLF>.<CRLF>`` first; then the caller's ``before_eod`` hook runs (the outbox
records the phase ``eod`` in the database), and only then is the terminator sent.  A relay takes
responsibility for a message only once it has the terminator and has answered ``250``, and a
connection that ends earlier cancels the transaction (RFC 5321 sections 3.3 and 3.8) — so a crash
*before* the hook can be resent safely, and only a crash *after* it leaves an unknown outcome.

Replies are classified (RFC 5321 section 4.2.1): ``2yz`` sent, ``4yz`` temporary (retry),
``5yz`` permanent (failed).  A refused or lost connection is temporary.  A connection lost after
the terminator was sent, or no reply to it, is :attr:`Outcome.UNKNOWN`.

A message to several addresses (an RPSL ``abuse-mailbox`` list) is one transaction with one
``RCPT TO:<address>`` per address (RFC 5321 sections 3.3 and 4.1.1.3: a forward-path is one
mailbox).  Each address gets its own result (:class:`RcptResult`): an address the relay refuses
at ``RCPT`` keeps that reply, the others go on to ``DATA``, and the end-of-data reply decides for
every accepted address.  Only when no address is accepted is the transaction abandoned.
"""

from __future__ import annotations

import enum
import re
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from herald.deliver.settings import SmtpSettings


class Outcome(enum.Enum):
    """What became of one delivery attempt."""

    SENT = "sent"
    RETRY = "retry"          # temporary: 4yz, refused or lost connection before the end of data
    FAILED = "failed"        # permanent: 5yz
    UNKNOWN = "unknown"      # the end of data was sent, no reply was recorded


@dataclass(frozen=True)
class RcptResult:
    """What became of one envelope recipient in one :meth:`Relay.send` transaction.

    Attributes:
        address: the address as given in ``RCPT TO:<address>``.
        outcome: :attr:`Outcome.SENT` (the relay took the message for it), ``RETRY`` (a ``4yz``
            reply to its ``RCPT``, or the transaction failed temporarily), ``FAILED`` (a ``5yz``
            reply to its ``RCPT``, or the message was refused permanently), ``UNKNOWN`` (accepted
            at ``RCPT``, no reply to the end of data).
        stage: the step that decided it (``RCPT`` when refused there, else as
            :attr:`Attempt.stage`).
        reply: the reply that decided it.
    """

    address: str
    outcome: Outcome
    stage: str
    reply: str


@dataclass(frozen=True)
class Attempt:
    """The result of :meth:`Relay.send`.

    Attributes:
        outcome: see :class:`Outcome`: the transaction's result for the addresses the relay
            accepted at ``RCPT``; when it accepted none, ``RETRY`` if one refusal was temporary,
            else ``FAILED``.
        stage: the SMTP step that decided it (``connect``, ``MAIL``, ``RCPT``, ``DATA``,
            ``end of data``).
        reply: the relay's reply (``"550 5.1.1 no such user"``) or the connection error; when
            several addresses were refused at ``RCPT`` and none accepted, ``address: reply``
            for each, separated by ``; ``.
        relay_error: the relay itself is unusable (cannot connect, TLS or AUTH failed): the
            caller should stop this batch.
        recipients: one :class:`RcptResult` per address, in the order given.
    """

    outcome: Outcome
    stage: str
    reply: str
    relay_error: bool = False
    recipients: tuple[RcptResult, ...] = ()

    def describe(self) -> str:
        """A sentence for ``herald outbox``."""
        what = {"RCPT": "recipient refused", "MAIL": "sender refused", "DATA": "DATA refused",
                "end of data": "message refused", "connect": "relay unavailable"}.get(self.stage, self.stage)
        if self.outcome is Outcome.SENT:
            return f"accepted: {self.reply}"
        if self.outcome is Outcome.UNKNOWN:
            return f"outcome unknown after end of data: {self.reply}"
        kind = "temporary" if self.outcome is Outcome.RETRY else "permanent"
        return f"{what} ({kind}): {self.reply}"


def _reply(code: int, msg: bytes | str) -> str:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    return f"{code} {' '.join(text.split())}".strip()


def _classify(code: int) -> Outcome:
    if 200 <= code < 300:
        return Outcome.SENT
    if 400 <= code < 500:
        return Outcome.RETRY
    return Outcome.FAILED


def _refused(code: int) -> Outcome:
    """The outcome of a reply that is not the expected one (an odd 1yz-3yz code: retry)."""
    return _classify(code) if code >= 400 else Outcome.RETRY


_DOT_RE = re.compile(rb"^\.", re.MULTILINE)


def dot_stuff(data: bytes) -> bytes:
    """Message data for ``DATA`` (RFC 5321 section 4.5.2): CRLF line endings, lines starting with
    ``.`` doubled, ending with CRLF; the terminating ``.<CRLF>`` is *not* included."""
    data = re.sub(rb"\r?\n", b"\r\n", data)
    data = _DOT_RE.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


class RateLimiter:
    """At most ``rate`` message starts per second (0: unlimited); :meth:`wait` sleeps as needed."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self.next = 0.0

    def wait(self) -> None:
        """Block until the next message may start."""
        now = self.clock()
        if now < self.next:
            self.sleep(self.next - now)
            now = self.next
        self.next = now + self.interval


class RelayUnavailable(Exception):
    """Connecting, TLS or AUTH failed (carries the reply or error text)."""


class Relay:
    """A connection to the configured relay, opened on demand and reused.

    Args:
        settings: the ``[smtp]`` table.
        password: the relay password (from the environment or a file), or ``None``.
    """

    def __init__(self, settings: SmtpSettings, password: str | None = None) -> None:
        self.settings = settings
        self.password = password
        self.conn: smtplib.SMTP | None = None
        self.limiter = RateLimiter(settings.rate_per_second)

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(
            cafile=str(self.settings.tls_ca_file) if self.settings.tls_ca_file else None)
        return ctx

    def connect(self) -> smtplib.SMTP:
        """Open, secure and authenticate the connection (if not open yet).

        Raises:
            RelayUnavailable: connection refused or lost, TLS failure, STARTTLS not offered, AUTH
                refused.
        """
        if self.conn is not None:
            return self.conn
        s = self.settings
        conn: smtplib.SMTP | None = None
        try:
            if s.security == "tls":
                conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._context())
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            conn.ehlo()
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise RelayUnavailable(f"{s.host}:{s.port} does not offer STARTTLS; refusing "
                                           f"to send in clear text (security = \"starttls\")")
                code, msg = conn.starttls(context=self._context())
                conn.ehlo()
            if s.username:
                if s.security == "none" and s.host not in ("localhost", "127.0.0.1", "::1"):
                    # RFC 4954 section 4: AUTH PLAIN/LOGIN over a clear connection exposes the
                    # password to anyone on the path.
                    raise RelayUnavailable(f"refusing to send the password to {s.host} without TLS "
                                           f"(security = \"none\"); use \"starttls\" or \"tls\"")
                if self.password is None:
                    raise RelayUnavailable("smtp.username is set but no password "
                                           "(password_env or password_file)")
                conn.login(s.username, self.password)
        except RelayUnavailable:
            _close(conn)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _close(conn)
            raise RelayUnavailable(f"authentication failed: {_reply(exc.smtp_code, exc.smtp_error)}") from None
        except smtplib.SMTPResponseException as exc:
            _close(conn)
            raise RelayUnavailable(_reply(exc.smtp_code, exc.smtp_error)) from None
        except ssl.SSLError as exc:
            _close(conn)
            raise RelayUnavailable(f"TLS failed with {s.host}:{s.port}: {exc}") from None
        except (OSError, smtplib.SMTPException) as exc:
            _close(conn)
            raise RelayUnavailable(f"cannot connect to {s.host}:{s.port}: {exc}") from None
        self.conn = conn
        return conn

    def close(self) -> None:
        """``QUIT`` and close (errors ignored)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                _close(conn)

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        _close(conn)

    def _reset(self) -> None:
        """``RSET`` after a refused transaction, so the connection can carry the next one."""
        if self.conn is None:
            return
        try:
            code, _ = self.conn.rset()
            if code != 250:
                self._drop()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def send(self, mail_from: str, rcpt_to: str | Sequence[str], data: bytes,
             before_eod: Callable[[], None] = lambda: None) -> Attempt:
        """One mail transaction: ``MAIL FROM:<mail_from>``, one ``RCPT TO:<address>`` per
        address, ``DATA``.

        Args:
            mail_from: envelope sender (RFC 5321 reverse-path; bounces go there).
            rcpt_to: the envelope recipients: one address (a ``str`` is never split), or a
                sequence of addresses, each sent as written (a quoted local part stays quoted).
            data: the message, CRLF line endings.
            before_eod: called after the data and before its terminator; if it raises, the
                connection is dropped without the terminator (the relay discards the transaction)
                and the exception propagates.

        Returns:
            the :class:`Attempt`, with one :class:`RcptResult` per address.

        Raises:
            ValueError: no address.
        """
        rcpts = [rcpt_to] if isinstance(rcpt_to, str) else list(rcpt_to)
        if not rcpts:
            raise ValueError("no envelope recipient")
        self.limiter.wait()
        try:
            conn = self.connect()
        except RelayUnavailable as exc:
            return _for_all(rcpts, Attempt(Outcome.RETRY, "connect", str(exc), relay_error=True))
        stage = "MAIL"
        refused: dict[str, RcptResult] = {}
        accepted: list[str] = []
        try:
            code, msg = conn.mail(mail_from)
            if code != 250:
                self._reset()
                return _for_all(rcpts, Attempt(_refused(code), stage, _reply(code, msg)))
            stage = "RCPT"
            for addr in rcpts:
                # Not smtplib's rcpt(): its quoteaddr() re-parses the path and drops the quotes
                # of a quoted local part ("abuse desk"@example.net).
                code, msg = conn.docmd("RCPT", f"TO:<{addr}>")
                if code in (250, 251):
                    accepted.append(addr)
                else:
                    refused[addr] = RcptResult(addr, _refused(code), stage, _reply(code, msg))
            if not accepted:
                self._reset()
                results = tuple(refused[a] for a in rcpts)
                outcome = (Outcome.RETRY if any(r.outcome is Outcome.RETRY for r in results)
                           else Outcome.FAILED)
                reply = (results[0].reply if len(results) == 1
                         else "; ".join(f"{r.address}: {r.reply}" for r in results))
                return Attempt(outcome, stage, reply, recipients=results)
            stage = "DATA"
            code, msg = conn.docmd("DATA")
            if code != 354:
                self._reset()
                return self._done(rcpts, refused, Attempt(_refused(code), stage, _reply(code, msg)))
            conn.send(dot_stuff(data))
        except (OSError, smtplib.SMTPException) as exc:
            # Before the terminator: the relay cancels the transaction (RFC 5321 section 3.8).
            self._drop()
            return self._done(rcpts, refused, Attempt(Outcome.RETRY, stage, f"connection lost: {exc}"))
        try:
            before_eod()
        except BaseException:
            self._drop()
            raise
        stage = "end of data"
        try:
            conn.send(b".\r\n")
            code, msg = conn.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return self._done(rcpts, refused, Attempt(Outcome.UNKNOWN, stage,
                                                      f"no reply to the end of data: {exc}"))
        if code != 250:
            self._reset()
            return self._done(rcpts, refused, Attempt(_refused(code), stage, _reply(code, msg)))
        return self._done(rcpts, refused, Attempt(Outcome.SENT, stage, _reply(code, msg)))

    @staticmethod
    def _done(rcpts: list[str], refused: dict[str, RcptResult], attempt: Attempt) -> Attempt:
        """``attempt`` with its per-address results: the refused addresses keep their ``RCPT``
        reply, the accepted ones get the attempt's outcome."""
        return Attempt(attempt.outcome, attempt.stage, attempt.reply, attempt.relay_error, tuple(
            refused.get(a) or RcptResult(a, attempt.outcome, attempt.stage, attempt.reply)
            for a in rcpts))


def _for_all(rcpts: list[str], attempt: Attempt) -> Attempt:
    """``attempt`` with the same result for every address (the transaction failed for all)."""
    return Relay._done(rcpts, {}, attempt)


def with_recipients(rcpts: Sequence[str], attempt: Attempt) -> Attempt:
    """``attempt`` itself when it has per-address results, else with the attempt's result for
    each of ``rcpts`` (an :class:`Attempt` made without them, e.g. by a stand-in relay)."""
    return attempt if attempt.recipients else _for_all(list(rcpts), attempt)


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except OSError:
        pass


def local_hostname() -> str:
    """This host's name for ``EHLO``."""
    return socket.getfqdn()
