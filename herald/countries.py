"""ISO 3166-1 alpha-2 country codes: the values a country-code column may hold.

Source of :data:`ASSIGNED`: the officially assigned codes of ISO 3166-1, as published by the ISO
3166 Maintenance Agency and kept by Debian's ``iso-codes`` package (version 4.15.0,
``iso_3166-1.json``, 249 codes; https://salsa.debian.org/iso-codes-team/iso-codes).  Reserved and
user-assigned codes: ISO 3166-1:2020 section 8 (reserved code elements) and section 8.1.3
(user-assigned code elements ``AA``, ``QM``-``QZ``, ``XA``-``XZ``, ``ZZ``); Shadowserver writes
``ZZ`` (unknown), ``XX`` and ``AA`` (anonymised samples) and ``UK`` (exceptionally reserved for the
United Kingdom), ``EU`` (exceptionally reserved) is what GeoIP databases write for Europe-wide
networks, ``XK`` (user-assigned) is the widely used code for Kosovo.
"""

from __future__ import annotations

#: The 249 officially assigned ISO 3166-1 alpha-2 codes (upper case).
ASSIGNED: frozenset[str] = frozenset("""
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
    GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
    KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
    TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
    ZW
""".split())

#: Exceptionally reserved codes (ISO 3166-1 section 8.1.2): ``UK``, ``EU``, ``UN``, ...
EXCEPTIONALLY_RESERVED: frozenset[str] = frozenset(
    "AC CP CQ DG EA EU EZ FX IC SU TA UK UN".split())

#: User-assigned codes (ISO 3166-1 section 8.1.3): ``AA``, ``QM``..``QZ``, ``XA``..``XZ``, ``ZZ``.
USER_ASSIGNED: frozenset[str] = frozenset(
    ["AA", "ZZ"] + ["Q" + chr(c) for c in range(ord("M"), ord("Z") + 1)]
    + ["X" + chr(c) for c in range(ord("A"), ord("Z") + 1)])

#: Every code a country-code column may hold after ingest (upper case).
VALID: frozenset[str] = ASSIGNED | EXCEPTIONALLY_RESERVED | USER_ASSIGNED


def is_country_column(name: str) -> bool:
    """True for the schema's country-code columns: ``geo`` and any ``*_geo`` (``src_geo``,
    ``dst_geo``, ``http_referer_geo``, ...)."""
    return name == "geo" or name.endswith("_geo")
