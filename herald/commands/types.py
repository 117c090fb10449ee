"""``herald types``: list the known report types."""

from __future__ import annotations

from herald.schema import default_registry


def register(sub) -> None:
    """Add ``herald types``."""
    p = sub.add_parser("types", help="list known report types")
    p.add_argument("name", nargs="?", help="show one type's columns")
    p.set_defaults(func=run)


def run(args) -> int:
    """Print one line per type, or one type's columns."""
    reg = default_registry()
    if args.name:
        t = reg.get(args.name)
        print(f"{t.name}: {t.title} (taxonomy {t.taxonomy}, default severity {t.default_severity})")
        for c, typ in t.column_types.items():
            print(f"  {c}\t{typ}")
        return 0
    for t in reg:
        print(f"{t.name}\t{t.default_severity}\t{t.title}")
    return 0
