"""Classification of Team Cymru CAP rows by their category, as IntelMQ 3.5.0 does.

Source: ``intelmq.bots.parsers.cymru.parser_cap_program`` (``MAPPING_STATIC`` for the new layout, the
per-report branches of ``parse_line_old`` for the old one).  Per category: classification type,
identifier and application; then, from the row's information, ``family`` makes the identifier
(lower case), and a bare service word of ``bruteforce`` (``ssh;``) or a proxy type of ``proxy``
(``socks4-61039``, ``proxy_type: http-34320``) makes identifier and application as IntelMQ does.
A category IntelMQ does not know (it rejects the line) is classified ``other``; the row is kept.
"""

from __future__ import annotations

import re

from herald.sources import rsit

#: category -> (classification type, identifier, application).
CATEGORIES: dict[str, tuple[str, str, str]] = {
    "bot": ("infected-system", "", ""), "bots": ("infected-system", "", ""),
    "bruteforce": ("brute-force", "", ""),
    "controller": ("c2-server", "", ""),
    "darknet": ("scanner", "darknet", ""),
    "phishing": ("phishing", "phishing", ""),
    "proxy": ("proxy", "openproxy", ""),
    "honeypot": ("scanner", "", ""),
    "openresolvers": ("vulnerable-system", "dns-open-resolver", "dns"),
    "openresolver": ("vulnerable-system", "dns-open-resolver", "dns"),
    "scanner": ("scanner", "scanner", ""), "scanners": ("scanner", "scanner", ""),
    "spam": ("spam", "spam", ""),
    "conficker": ("infected-system", "conficker", ""),
    "tor": ("tor", "tor", ""),
    "defacement": ("unauthorised-information-modification", "defacement", ""),
    "fastflux": ("system-compromise", "fastflux", ""),
    "malwareurl": ("malware-distribution", "malwareurl", ""),
    "routers": ("system-compromise", "", ""),
    "spreaders": ("malware-distribution", "spreader", ""),
    # Old-layout reports named after a worm: the report is the malware.
    **{w: ("infected-system", w, "") for w in ("beagle", "blaster", "dameware", "dipnet", "mydoom", "nachi",
                                               "phatbot", "sinit", "slammer", "toxbot")},
}

_WORD = re.compile(r"^[a-z0-9]+$")


def classify(category: str, row: dict[str, str]) -> dict[str, str]:
    """Columns ``taxonomy``, ``classification_type``, ``classification_identifier``, ``application``
    (and ``family`` for worm reports) of one CAP row.

    Args:
        category: the row's category/report word; row: the columns parsed so far (``family``,
            ``tag``: the bare service word or proxy type).
    """
    cat = category.strip().lower()
    ctype, ident, app = CATEGORIES.get(cat, ("other", "", ""))
    out = {}
    family = row.get("family", "")
    if family:
        ident = family.lower()
    elif ident and cat in CATEGORIES and CATEGORIES[cat][0] == "infected-system" and cat not in ("bot", "bots"):
        out["family"] = ident
    tag = row.get("tag", "").lower()
    if cat == "bruteforce" and _WORD.match(tag):
        ident = app = tag
    elif cat == "proxy" and _WORD.match(tag):
        app = tag
    out.update(taxonomy=rsit.taxonomy(ctype), classification_type=ctype, classification_identifier=ident,
               application=app)
    return out
