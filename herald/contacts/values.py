"""Values of the RPSL attributes Herald reads: address ranges, AS numbers, handles, e-mail addresses.

- ``inetnum`` (RIPE Database documentation, "Description of the INETNUM Object"): an inclusive
  IPv4 range ``a - b``.  LACNIC writes prefixes, sometimes with omitted trailing zero octets
  (``200.7.84/22``); a prefix or a single address is accepted too.
- ``inet6num``: an IPv6 prefix in CIDR notation (``2001:db8::/32``); a range ``a - b`` is
  accepted as well.
- ``aut-num``: ``AS`` followed by a decimal number (RFC 2622 section 6; 32-bit ASNs, RFC 6793).
- ``abuse-mailbox``: an RFC 5322 address; real objects also carry display names
  (``abuse@x <abuse@x>``), several addresses separated by commas or white space, trailing
  commas and parenthesised comments (``abuse@x (preferred)``).  :func:`parse_mailboxes` returns
  every distinct address; Herald stores them joined with ``, `` (a *mailbox text*: an RFC 5322
  address list without display names), which :func:`split_mailbox` splits again.
"""

from __future__ import annotations

import re
import socket

_V4_MAX = (1 << 32) - 1
_AS_RE = re.compile(r"^AS(\d{1,10})$", re.IGNORECASE)


def _v4(text: str) -> int:
    return int.from_bytes(socket.inet_aton(text), "big") if text.count(".") == 3 else _short_v4(text)


def _short_v4(text: str) -> int:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() and int(p) <= 255 for p in parts):
        raise ValueError(text)
    parts += ["0"] * (4 - len(parts))
    return int.from_bytes(bytes(int(p) for p in parts), "big")


def _v6(text: str) -> int:
    return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")


def parse_range(value: str, family: int) -> tuple[int, int]:
    """Inclusive bounds of an ``inetnum`` (``family`` 4) or ``inet6num`` (6) value.

    Returns:
        ``(first, last)`` as Python ints (IPv4 below 2**32, IPv6 below 2**128).

    Raises:
        ValueError: the value is not a range, prefix or address of that family, or first > last.
    """
    value = value.strip()
    conv, bits = (_v4, 32) if family == 4 else (_v6, 128)
    try:
        if "-" in value:
            a, b = (p.strip() for p in value.split("-", 1))
            first, last = conv(a), conv(b)
        else:
            addr, _, plen = value.partition("/")
            n = conv(addr.strip())
            length = int(plen) if plen else bits
            if not 0 <= length <= bits:
                raise ValueError(value)
            host = (1 << (bits - length)) - 1
            first, last = n & ~host, (n & ~host) | host
    except (OSError, ValueError):
        raise ValueError(f"not an {'inetnum' if family == 4 else 'inet6num'} value: {value!r}") from None
    if first > last:
        raise ValueError(f"range {value!r} has its first address above its last")
    return first, last


def parse_asn(value: str) -> int | None:
    """The number of ``AS64496`` (case-insensitive), or ``None`` when the value is not one."""
    m = _AS_RE.match(value.strip())
    if not m:
        return None
    n = int(m.group(1))
    return n if n < (1 << 32) else None


def handle(value: str | None) -> str | None:
    """An RPSL handle (``nic-hdl``, ``organisation``, ``abuse-c``, ``org``) normalised to upper
    case (handles are case-insensitive, RFC 2622 section 2), or ``None`` when empty."""
    if not value:
        return None
    v = value.split()[0].upper() if value.split() else ""
    return v or None


def _strip_comments(text: str) -> str:
    """Remove RFC 5322 parenthesised comments outside quoted strings."""
    out, depth, quoted, esc = [], 0, False, False
    for ch in text:
        if esc:
            esc = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            esc = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            out.append(ch)
            if ch == '"':
                quoted = False
            continue
        if ch == '"' and depth == 0:
            quoted = True
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _tokens(text: str) -> list[str]:
    """Split on commas and white space outside quoted strings and angle brackets."""
    out, cur, quoted, angle = [], [], False, False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        if not quoted and not angle and (ch == "," or ch.isspace()):
            if cur:
                out.append("".join(cur))
                cur = []
            continue
        cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def parse_mailboxes(value: str) -> list[str]:
    """Distinct e-mail addresses of an ``abuse-mailbox`` value, in order.

    ``abuse@x <abuse@x>`` gives ``["abuse@x"]``; ``a@x, b@x`` and ``a@x b@x`` give both;
    ``"abuse contact"@x`` keeps its quoted local part; comments and trailing commas are dropped.
    Domains are lower-cased (RFC 5321 section 2.4: the local part is case-sensitive).
    """
    out: list[str] = []
    for tok in _tokens(_strip_comments(value)):
        if tok.startswith("<") and tok.endswith(">"):
            tok = tok[1:-1]
        elif "<" in tok and tok.endswith(">") and not tok.startswith('"'):
            tok = tok[tok.index("<") + 1:-1]
        tok = tok.strip().rstrip(",;")
        local, at, domain = tok.rpartition("@")
        if not at or not local or not domain or "." not in domain:
            continue
        addr = f"{local}@{domain.lower()}"
        if addr not in out:
            out.append(addr)
    return out


def split_mailbox(text: str | None) -> list[str]:
    """The addresses of a stored mailbox text (``a@x.example, "abuse desk"@y.example``), in order.

    The text is what the importer (:func:`parse_mailboxes` joined with ``, ``), an override or a
    recipient's configured e-mail holds: addresses separated by commas.  It is split at commas
    outside quoted strings and each address is stripped of surrounding white space; nothing else
    is changed (no comment or display-name cleaning: the text is already clean).  Duplicates
    (compared case-insensitively) are dropped.

    Returns:
        ``[]`` for ``None`` or blank text.
    """
    out: list[str] = []
    seen: set[str] = set()
    cur: list[str] = []
    quoted = False
    for ch in (text or "") + ",":
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            addr = "".join(cur).strip()
            cur = []
            if addr and addr.lower() not in seen:
                seen.add(addr.lower())
                out.append(addr)
            continue
        cur.append(ch)
    return out
