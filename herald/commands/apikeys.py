"""``herald apikeys create|list|revoke|rotate RECIPIENT``: Reports API keys.

``create`` and ``rotate`` print the secret once; it is stored only encrypted with the server key
(``HERALD_SECRET_KEY`` / ``HERALD_SECRET_KEY_FILE`` / ``<data>/secret.key``), so run them with the
same server key as ``herald serve``.
"""

from __future__ import annotations

from datetime import timedelta

from herald.commands.users import actor
from herald.errors import ConfigError


def register(sub) -> None:
    """Add ``herald apikeys``."""
    p = sub.add_parser("apikeys", help="Reports API keys of a recipient")
    s = p.add_subparsers(dest="apikeys_command", metavar="ACTION", required=True)
    for name, fn, text in (("create", create, "create a key (prints the secret once)"),
                           ("list", list_, "list the recipient's keys"),
                           ("revoke", revoke, "revoke a key (--key, or every key)"),
                           ("rotate", rotate, "give a key a new secret; the old one stays valid "
                                              "for the grace period")):
        a = s.add_parser(name, help=text)
        a.add_argument("recipient", help="recipient name, slug or id")
        a.add_argument("--config", default="herald.toml", help="configuration file")
        if name == "create":
            a.add_argument("--label", help="a note on what the key is for")
            a.add_argument("--replay-protection", action="store_true",
                           help="require a fresh timestamp and a new nonce in every request")
            a.add_argument("--expires-days", type=float, default=None,
                           help="the key stops working after this many days (default: never)")
        if name in ("revoke", "rotate"):
            a.add_argument("--key", help="the key id (default: the recipient's only active key)")
        if name == "rotate":
            a.add_argument("--grace-days", type=float, default=None,
                           help="how long the old secret stays valid (default [web] "
                                "rotation_grace_days, 7)")
        if name == "revoke":
            a.add_argument("--reason", default=None)
        a.set_defaults(func=fn)


def _ctx(args):
    from herald.config import load_settings
    from herald.crypto import ServerKey
    from herald.store.db import open_db
    from herald.web.state import WebConfig

    settings = load_settings(args.config)
    return (open_db(settings.database_url), ServerKey.load(settings.paths.data),
            WebConfig.from_settings(settings))


def create(args) -> int:
    """Create a key and print ``key`` and ``secret``."""
    from herald.accounts.apikeys import create_key

    db, sk, _ = _ctx(args)
    from herald.store.db import utcnow

    expires = utcnow() + timedelta(days=args.expires_days) if args.expires_days else None
    new = create_key(db, sk, args.recipient, actor(), label=args.label,
                     replay_protection=args.replay_protection, expires_at=expires)
    print(f"key    {new.key_id}\nsecret {new.secret}\n(recipient {new.info.recipient}; the secret "
          f"is not shown again)")
    return 0


def list_(args) -> int:
    """Print the recipient's keys."""
    from herald.accounts.apikeys import list_keys

    db, _, _ = _ctx(args)
    for k in list_keys(db, args.recipient):
        print(f"{k.key_id}  {k.state:<8} fp {k.fingerprint}  created "
              f"{k.created_at:%Y-%m-%d}  replay {'on' if k.replay_protection else 'off'}"
              f"{'  old secret valid until ' + format(k.rotating_until, '%Y-%m-%d %H:%M') if k.rotating_until else ''}"
              f"  {k.label or ''}")
    return 0


def _pick(db, args) -> list[str]:
    from herald.accounts.apikeys import list_keys

    keys = [k for k in list_keys(db, args.recipient) if k.state == "active"]
    if args.key:
        if args.key not in {k.key_id for k in list_keys(db, args.recipient)}:
            raise ConfigError(f"{args.recipient} has no key {args.key}")
        return [args.key]
    if len(keys) != 1:
        raise ConfigError(f"{args.recipient} has {len(keys)} active keys: name one with --key")
    return [keys[0].key_id]


def revoke(args) -> int:
    """Revoke the key."""
    from herald.accounts.apikeys import revoke_key

    db, _, _ = _ctx(args)
    for key_id in _pick(db, args):
        revoke_key(db, key_id, actor(), args.reason)
        print(f"key {key_id} revoked")
    return 0


def rotate(args) -> int:
    """Rotate the key and print the new secret."""
    from herald.accounts.apikeys import rotate_key

    db, sk, cfg = _ctx(args)
    days = args.grace_days if args.grace_days is not None else cfg.rotation_grace_days
    for key_id in _pick(db, args):
        new = rotate_key(db, sk, key_id, actor(), timedelta(days=days))
        until = new.info.rotating_until
        print(f"key    {new.key_id}\nsecret {new.secret}\n" + (
            f"(the previous secret stays valid until {until:%Y-%m-%d %H:%M} UTC)" if until
            else "(the previous secret is no longer valid)"))
    return 0
