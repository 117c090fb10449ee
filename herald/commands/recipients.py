"""``herald recipients add|set|list|show|verify|reject|disable|enable|import|conflicts``.

Recipients and their filters in the metadata database (see herald/constituency/repository.py).
Every change is recorded in the audit log with ``--actor`` (default ``cli:<login name>``).
"""

from __future__ import annotations

import argparse
from herald import tomlfile
from pathlib import Path

from herald.commands.db import actor_of, add_action, open_from_args
from herald.constituency import repository as repo
from herald.errors import ConfigError
from herald.store.db import FILTER_KINDS

#: Command-line option of each filter kind.
_FILTER_OPTIONS = {"asn": "--asn", "cidr": "--cidr", "country": "--country", "domain": "--domain",
                   "report_type": "--report-type", "min_severity": "--min-severity"}


def register(sub) -> None:
    """Add ``herald recipients`` and its actions."""
    p = sub.add_parser("recipients", help="recipients and their filters in the metadata database")
    rsub = p.add_subparsers(dest="recipients_command", metavar="ACTION", required=True)

    a = add_action(rsub, "add", run_add, actor=True,
                   help="create a recipient, or request filters for an existing one")
    a.add_argument("name")
    a.add_argument("--email", help="report address (required for a new recipient)")
    a.add_argument("--kind", default="network_owner",
                   choices=["network_owner", "national_cert", "law_enforcement"])
    a.add_argument("--tlp", help="TLP label overriding [report] tlp")
    a.add_argument("--pgp-fingerprint")
    a.add_argument("--renotify-days", type=_days, metavar="DAYS",
                   help="re-notification window: an event reported to it is not reported again "
                        "within DAYS days (0: off)")
    for kind, opt in _FILTER_OPTIONS.items():
        a.add_argument(opt, dest=f"f_{kind}", action="append", default=[], metavar="VALUE",
                       help=f"{kind} filter (repeatable)" if kind != "min_severity"
                       else "minimum severity filter")
    a.add_argument("--verified", action="store_true",
                   help="store the filters as verified (you checked the claim); default pending")
    a.add_argument("--reason", help="why, for the audit log")

    st = add_action(rsub, "set", run_set, actor=True, help="change a recipient's settings (audited)")
    st.add_argument("name", help="name, file slug or id")
    st.add_argument("--renotify-days", type=_days, metavar="DAYS|none", required=True,
                    help="re-notification window in days (0: off; 'none': no window of its own)")
    st.add_argument("--reason", help="why, for the audit log")

    ls = add_action(rsub, "list", run_list,
                    help="list recipients (or, with --pending, filters awaiting review)")
    ls.add_argument("--pending", action="store_true", help="list pending filters instead")
    ls.add_argument("--enabled", action="store_true", help="only enabled recipients")

    sh = add_action(rsub, "show", run_show, help="one recipient with contacts and every filter")
    sh.add_argument("name", help="name, file slug or id")

    v = add_action(rsub, "verify", run_verify, actor=True,
                   help="verify pending filters (by id; see 'show' or 'list --pending')")
    v.add_argument("filter_ids", nargs="+", type=int, metavar="FILTER_ID")
    v.add_argument("--reason", help="how the claim was checked, for the audit log")

    rj = add_action(rsub, "reject", run_reject, actor=True,
                    help="reject filters (by id); a reason is required")
    rj.add_argument("filter_ids", nargs="+", type=int, metavar="FILTER_ID")
    rj.add_argument("--reason", required=True)

    d = add_action(rsub, "disable", run_disable, actor=True,
                   help="stop sending to a recipient (kept in the database)")
    d.add_argument("name")
    d.add_argument("--reason", required=True)

    e = add_action(rsub, "enable", run_enable, actor=True,
                   help="send to a disabled recipient again")
    e.add_argument("name")
    e.add_argument("--reason")

    im = add_action(rsub, "import", run_import, actor=True,
                    help="import [[recipients]] tables of a TOML file (default: the "
                         "configuration file's own); idempotent")
    im.add_argument("file", nargs="?", help="TOML file with [[recipients]] tables")
    im.set_defaults(actor=None)

    c = add_action(rsub, "conflicts", run_conflicts,
                   help="list overlapping claims of network owners")
    c.add_argument("--ipdata", action="store_true",
                   help="also find CIDRs originated by an ASN another recipient claims "
                        "(bundled IP data plus [enrich] ipdata)")
    c.add_argument("--verified-only", action="store_true", help="ignore pending filters")


def _days(text: str) -> int | None:
    """``--renotify-days``: a whole number of days >= 0, or ``none``."""
    if text.strip().lower() == "none":
        return None
    if not (text.strip().isascii() and text.strip().isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (0 or more) or 'none'")
    return int(text)


def _window(days: int | None) -> str:
    """A window for people: ``7 days``, ``off`` (0), ``-`` (none of its own)."""
    return "-" if days is None else "off" if days == 0 else f"{days} day{'s' if days != 1 else ''}"


def _filters_of(args) -> list[tuple[str, str]]:
    return [(kind, v) for kind in FILTER_KINDS for v in getattr(args, f"f_{kind}")]


def run_add(args) -> int:
    """Create the recipient (when ``--email`` is given) and add the filters."""
    _, db = open_from_args(args)
    actor = actor_of(args)
    filters = _filters_of(args)
    # Validate every filter before changing anything.
    for kind, value in filters:
        repo.normalize_filter(kind, value)
    if args.email:
        info = repo.add_recipient(db, args.name, args.email, actor, kind=args.kind, tlp=args.tlp,
                                  pgp_fingerprint=args.pgp_fingerprint, reason=args.reason,
                                  renotify_days=args.renotify_days)
        print(f"added recipient {info.id} {info.name!r} ({info.kind}, slug {info.slug})")
    elif args.renotify_days is not None:
        raise ConfigError(f"recipients add {args.name!r}: --renotify-days needs --email (a new "
                          f"recipient); change an existing one with 'herald recipients set'")
    elif not filters:
        raise ConfigError(f"recipients add {args.name!r}: give --email to create a recipient, "
                          f"or filters (--asn, --cidr, ...) to add to an existing one")
    for kind, value in filters:
        f = repo.add_filter(db, args.name, kind, value, actor, verified=args.verified,
                            reason=args.reason)
        print(f"filter {f.id}: {f.kind} {f.value} {f.state}")
    return 0


def run_set(args) -> int:
    """Set the recipient's re-notification window."""
    _, db = open_from_args(args)
    ref = int(args.name) if args.name.isdigit() else args.name
    info = repo.set_renotify_days(db, ref, args.renotify_days, actor_of(args), args.reason)
    print(f"recipient {info.id} {info.name!r}: re-notification window {_window(info.renotify_days)}")
    return 0


def _fmt_time(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"


def run_list(args) -> int:
    """One line per recipient: id, state, kind, verified/pending filter counts, re-notification
    window, e-mail, name."""
    _, db = open_from_args(args)
    if args.pending:
        for f in repo.list_filters(db, state="pending"):
            print(f"{f.id}\t{f.recipient}\t{f.kind}\t{f.value}\trequested by {f.requested_by} "
                  f"{_fmt_time(f.requested_at)}")
        return 0
    for r in repo.list_recipients(db, include_disabled=not args.enabled):
        verified = sum(f.state == "verified" for f in r.filters)
        pending = sum(f.state == "pending" for f in r.filters)
        state = "disabled" if r.disabled else "enabled"
        print(f"{r.id}\t{state}\t{r.kind}\t{verified} verified, {pending} pending\t"
              f"renotify {_window(r.renotify_days)}\t{r.email}\t{r.name}")
    return 0


def run_show(args) -> int:
    """The recipient's fields, contacts and filters (with ids for verify/reject)."""
    _, db = open_from_args(args)
    name = int(args.name) if args.name.isdigit() else args.name
    r = repo.get_recipient(db, name)
    print(f"recipient {r.id}: {r.name}")
    print(f"  slug:     {r.slug}")
    print(f"  kind:     {r.kind}")
    print(f"  state:    {'disabled' if r.disabled else 'enabled'}")
    print(f"  tlp:      {r.tlp or '(default)'}")
    print(f"  renotify: {_window(r.renotify_days)}"
          + (" ([abuse_contacts] renotify_days)" if r.kind == "abuse_contact" else ""))
    print(f"  created:  {_fmt_time(r.created_at)}")
    for email, pgp, primary in r.contacts:
        print(f"  contact:  {email}{' (primary)' if primary else ''}"
              f"{f' pgp {pgp}' if pgp else ''}")
    print("  filters:" if r.filters else "  filters:  none")
    for f in r.filters:
        decided = (f" by {f.decided_by} {_fmt_time(f.decided_at)}" if f.decided_by else "")
        reason = f" ({f.reason})" if f.reason else ""
        print(f"    {f.id:>5}  {f.kind:<12} {f.value:<40} {f.state}{decided}{reason}")
    return 0


def run_verify(args) -> int:
    """Verify each filter id."""
    return _decide(args, repo.verify_filter)


def run_reject(args) -> int:
    """Reject each filter id."""
    return _decide(args, repo.reject_filter)


def _decide(args, decide) -> int:
    """``decide(db, filter id, actor, reason)`` for each filter id; prints each filter's state."""
    _, db = open_from_args(args)
    for fid in args.filter_ids:
        f = decide(db, fid, actor_of(args), args.reason)
        print(f"filter {f.id} ({f.recipient}: {f.kind} {f.value}): {f.state}")
    return 0


def run_disable(args) -> int:
    """Disable the recipient."""
    _, db = open_from_args(args)
    r = repo.disable_recipient(db, args.name, actor_of(args), args.reason)
    print(f"recipient {r.id} {r.name!r}: disabled")
    return 0


def run_enable(args) -> int:
    """Enable the recipient."""
    _, db = open_from_args(args)
    r = repo.enable_recipient(db, args.name, actor_of(args), args.reason)
    print(f"recipient {r.id} {r.name!r}: enabled")
    return 0


def run_import(args) -> int:
    """Import a TOML file's [[recipients]]; the actor defaults to ``config``."""
    settings, db = open_from_args(args)
    if args.file:
        path = Path(args.file)
        try:
            specs = tomlfile.loads(path.read_text(encoding="utf-8")).get("recipients", [])
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except tomlfile.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    else:
        specs = settings.recipients_spec
    if not isinstance(specs, list):
        raise ConfigError("[[recipients]] must be an array of tables")
    result = repo.import_recipients(db, specs, actor=args.actor or "config")
    print(f"{len(result.added)} added, {len(result.updated)} updated, {len(result.unchanged)} "
          f"unchanged; {result.filters_verified} filter(s) verified, "
          f"{result.filters_rejected} rejected")
    for name in result.added:
        print(f"  added:   {name}")
    for name in result.updated:
        print(f"  updated: {name}")
    return 0


def run_conflicts(args) -> int:
    """Print each conflict; exit 1 when there is any (usable as a check)."""
    settings, db = open_from_args(args)
    ipdata = None
    if args.ipdata:
        from herald.enrich.ipdata import IPData

        ipdata = IPData.from_specs(settings.ipdata)
    states = ("verified",) if args.verified_only else ("verified", "pending")
    found = repo.conflicts(db, ipdata=ipdata, states=states)
    for c in found:
        ids = ", ".join(f"filter {x.filter_id} {x.state}" for x in c.claims)
        print(f"{c.kind}\t{c.detail}\t[{ids}]")
    if not found:
        print("no conflicts")
    return 1 if found else 0
