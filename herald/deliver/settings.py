"""Delivery settings: the ``[smtp]``, ``[pgp]`` and ``[mail]`` tables of the configuration file.

::

    [smtp]
    host = "relay.example.org"
    port = 587
    security = "starttls"           # "starttls" (RFC 3207), "tls" (implicit TLS, RFC 8314) or "none"
    username = "herald"
    password_env = "HERALD_SMTP_PASSWORD"   # or: password_file = "/run/secrets/smtp"
    tls_ca_file = ""                # extra CA bundle for the relay's certificate (default: system)
    rate_per_second = 5             # messages per second through this relay
    envelope_sender = "bounces@herald.example"  # RFC 5321 MAIL FROM; default [report] sender
    timeout = 60                    # seconds, per SMTP command
    max_attempts = 10               # temporary failures before a message is marked failed
    retry_base = 60                 # seconds; the n-th retry waits about base * 2**(n-1), +-50 %
    retry_max = 21600               # seconds; backoff ceiling
    unknown_outcome = "hold"        # after a crash past the end of DATA: "hold" or "resend"

    [pgp]
    gnupghome = "/var/lib/herald/gnupg"
    signing_key = "FINGERPRINT"
    passphrase_env = "HERALD_PGP_PASSPHRASE"   # or passphrase_file; none for an unprotected key

    [mail]
    digest = false                  # one message per recipient per day with all its reports
    zip_above = 1048576             # bytes; larger attachments are sent as ZIP
    attach_max = 10485760           # bytes; larger reports are not attached (download link text)
    attach = true                   # false: name each report (size, SHA-256) and where to download
                                    # it instead of attaching it; per recipient: attach = true|false
    templates = ""                  # directory of operator templates overriding the built-in ones
    language = "en"                 # default body language
    unsubscribe_url = ""            # https URL for List-Unsubscribe (RFC 8058 one-click); "{slug}"
    unsubscribe_mailto = ""         # address for List-Unsubscribe mailto (default: [report] sender)
    reporter_org = "Herald"         # X-ARF reporter organisation

Per recipient (``[[recipients]]`` table): ``xarf = true``, ``digest = true|false``,
``language = "de"``, ``attach = true|false``.  Secrets never live in the TOML file: the SMTP
password and the PGP passphrase come from an environment variable or a file (:func:`read_secret`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from herald.config import Settings, unknown_keys
from herald.errors import ConfigError

if TYPE_CHECKING:
    from herald.constituency.recipients import Recipient

SECURITY_MODES = ("starttls", "tls", "none")
UNKNOWN_OUTCOME_POLICIES = ("hold", "resend")


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the relay (RFC 5321 submission).  Times are seconds."""

    host: str = "localhost"
    port: int = 25
    security: str = "starttls"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    tls_ca_file: Path | None = None
    rate_per_second: float = 5.0
    envelope_sender: str = "herald@localhost"
    timeout: float = 60.0
    max_attempts: int = 10
    retry_base: float = 60.0
    retry_max: float = 6 * 3600.0
    unknown_outcome: str = "hold"
    configured: bool = False

    def password(self) -> str | None:
        """The relay password from ``password_env`` or ``password_file``, or ``None``.

        Raises:
            ConfigError: the variable is unset or the file unreadable.
        """
        return read_secret("smtp password", self.password_env, self.password_file)


@dataclass(frozen=True)
class PgpSettings:
    """Which GnuPG home and key sign outgoing messages (RFC 3156)."""

    gnupghome: Path | None = None
    signing_key: str | None = None
    passphrase_env: str | None = None
    passphrase_file: Path | None = None

    @property
    def enabled(self) -> bool:
        """True when a GnuPG home and a signing key are configured."""
        return self.gnupghome is not None and bool(self.signing_key)

    def passphrase(self) -> str | None:
        """The signing key's passphrase, or ``None`` (unprotected key).

        Raises:
            ConfigError: the variable is unset or the file unreadable.
        """
        return read_secret("pgp passphrase", self.passphrase_env, self.passphrase_file)


@dataclass(frozen=True)
class MailSettings:
    """Message composition options."""

    sender: str = "herald@localhost"
    digest: bool = False
    zip_above: int = 1 << 20
    #: reports (CSV) above this many bytes are not attached; relays refuse messages above
    #: 10-25 MB and base64 adds a third.
    attach_max: int = 10 << 20
    #: ``False``: reports are named (size, SHA-256, where to download them), not attached, so the
    #: outbox does not hold a second, base64 copy of every report (per recipient: ``attach``).
    attach: bool = True
    templates: Path | None = None
    language: str = "en"
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    reporter_org: str = "Herald"
    default_tlp: str = "AMBER"


@dataclass(frozen=True)
class DeliverySettings:
    """Everything delivery reads from :class:`herald.config.Settings`."""

    smtp: SmtpSettings
    pgp: PgpSettings
    mail: MailSettings
    #: spool directory of built messages (``<data>/mail``).
    spool: Path
    #: recipient name -> its ``[[recipients]]`` table (for ``xarf``, ``digest``, ``language``).
    recipient_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def option(self, recipient: str, key: str, default: Any = None) -> Any:
        """A per-recipient option (``xarf``, ``digest``, ``language``), else ``default``."""
        return self.recipient_options.get(recipient, {}).get(key, default)

    def attaches(self, recipient: Recipient, size: int) -> bool:
        """Whether a report of ``size`` bytes (CSV) is attached to ``recipient``'s message: not
        above ``[mail] attach_max``, and not when the recipient's ``attach`` option (default
        ``[mail] attach``) is false.  Automatic abuse contacts (kind ``abuse_contact``) have no
        account to download with, so ``attach = false`` does not apply to them."""
        if size > self.mail.attach_max:
            return False
        if recipient.kind == "abuse_contact":
            return True
        return bool(self.option(recipient.name, "attach", self.mail.attach))


def read_secret(what: str, env: str | None, path: Path | None) -> str | None:
    """Read a secret from the environment variable ``env`` or the file ``path`` (first line).

    Raises:
        ConfigError: the variable is named but unset, or the file cannot be read.
    """
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{what}: environment variable {env} is not set")
        return value
    if path:
        try:
            return path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
    return None


def _path(base: Path, value: Any, where: str) -> Path | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a path string")
    return (base / value).expanduser().resolve()


def _num(table: dict, key: str, default: float, where: str, minimum: float = 0) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{where}.{key} must be a number >= {minimum}")
    return float(value)


#: Keys of the delivery tables (``password`` and ``passphrase`` are refused with their own message).
SMTP_KEYS = frozenset({"host", "port", "security", "username", "password_env", "password_file",
                       "tls_ca_file", "rate_per_second", "envelope_sender", "timeout",
                       "max_attempts", "retry_base", "retry_max", "unknown_outcome"})
PGP_KEYS = frozenset({"gnupghome", "signing_key", "passphrase_env", "passphrase_file"})
MAIL_KEYS = frozenset({"digest", "zip_above", "attach_max", "attach", "templates", "language",
                       "unsubscribe_url", "unsubscribe_mailto", "reporter_org"})


def delivery_settings(settings: Settings) -> DeliverySettings:
    """Parse the delivery tables ``[smtp]``, ``[pgp]`` and ``[mail]`` of ``settings``.

    Raises:
        ConfigError: a password or passphrase written into the TOML file, an unknown key (naming
            the section and the key), an unknown security mode, wrong types.
    """
    base = settings.path.parent if settings.path else Path.cwd()
    where = settings.where
    smtp_raw = settings.section("smtp")
    pgp_raw = settings.section("pgp")
    mail_raw = settings.section("mail")
    for key in ("password", "passphrase"):
        for name, table in (("smtp", smtp_raw), ("pgp", pgp_raw)):
            if key in table:
                raise ConfigError(f"{where}: [{name}] {key} must not be written in the configuration "
                                  f"file; use {key}_env (an environment variable) or {key}_file")
    for name, table, known in (("smtp", smtp_raw, SMTP_KEYS), ("pgp", pgp_raw, PGP_KEYS),
                               ("mail", mail_raw, MAIL_KEYS)):
        unknown_keys(where, name, table, known)
    security = str(smtp_raw.get("security", "starttls")).lower()
    if security not in SECURITY_MODES:
        raise ConfigError(f"{where}: smtp.security {security!r} must be one of {', '.join(SECURITY_MODES)}")
    unknown = str(smtp_raw.get("unknown_outcome", "hold")).lower()
    if unknown not in UNKNOWN_OUTCOME_POLICIES:
        raise ConfigError(f"{where}: smtp.unknown_outcome must be one of "
                          f"{', '.join(UNKNOWN_OUTCOME_POLICIES)}")
    default_port = {"starttls": 587, "tls": 465, "none": 25}[security]
    port = smtp_raw.get("port", default_port)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{where}: smtp.port must be an integer 1..65535")
    rate = _num(smtp_raw, "rate_per_second", 5.0, f"{where}: smtp", 0)
    smtp = SmtpSettings(
        host=str(smtp_raw.get("host", "localhost")),
        port=port,
        security=security,
        username=smtp_raw.get("username") or None,
        password_env=smtp_raw.get("password_env") or None,
        password_file=_path(base, smtp_raw.get("password_file"), f"{where}: smtp.password_file"),
        tls_ca_file=_path(base, smtp_raw.get("tls_ca_file"), f"{where}: smtp.tls_ca_file"),
        rate_per_second=rate,
        envelope_sender=str(smtp_raw.get("envelope_sender") or settings.sender),
        timeout=_num(smtp_raw, "timeout", 60.0, f"{where}: smtp", 0.1),
        max_attempts=int(_num(smtp_raw, "max_attempts", 10, f"{where}: smtp", 1)),
        retry_base=_num(smtp_raw, "retry_base", 60.0, f"{where}: smtp", 0),
        retry_max=_num(smtp_raw, "retry_max", 6 * 3600.0, f"{where}: smtp", 0),
        unknown_outcome=unknown,
        configured="host" in smtp_raw,
    )
    pgp = PgpSettings(
        gnupghome=_path(base, pgp_raw.get("gnupghome"), f"{where}: pgp.gnupghome"),
        signing_key=(str(pgp_raw["signing_key"]).replace(" ", "").upper()
                     if pgp_raw.get("signing_key") else None),
        passphrase_env=pgp_raw.get("passphrase_env") or None,
        passphrase_file=_path(base, pgp_raw.get("passphrase_file"), f"{where}: pgp.passphrase_file"),
    )
    if bool(pgp.gnupghome) != bool(pgp.signing_key):
        raise ConfigError(f"{where}: [pgp] needs both gnupghome and signing_key")
    attach = mail_raw.get("attach", True)
    if not isinstance(attach, bool):
        raise ConfigError(f"{where}: mail.attach must be true or false")
    mail = MailSettings(
        sender=settings.sender,
        attach=attach,
        digest=bool(mail_raw.get("digest", False)),
        zip_above=int(_num(mail_raw, "zip_above", 1 << 20, f"{where}: mail", 0)),
        attach_max=int(_num(mail_raw, "attach_max", 10 << 20, f"{where}: mail", 0)),
        templates=_path(base, mail_raw.get("templates"), f"{where}: mail.templates"),
        language=str(mail_raw.get("language", "en")),
        unsubscribe_url=mail_raw.get("unsubscribe_url") or None,
        unsubscribe_mailto=mail_raw.get("unsubscribe_mailto") or None,
        reporter_org=str(mail_raw.get("reporter_org", "Herald")),
        default_tlp=settings.tlp,
    )
    options = {}
    for spec in settings.recipients_spec:
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            if not isinstance(spec.get("attach", True), bool):
                raise ConfigError(f"{where}: recipient {spec['name'].strip()!r}: attach must be "
                                  "true or false")
            options[spec["name"].strip()] = spec
    return DeliverySettings(smtp=smtp, pgp=pgp, mail=mail, spool=settings.paths.data / "mail",
                            recipient_options=options)
