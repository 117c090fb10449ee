"""The taxonomy of each classification type (RSIT, with IntelMQ's extensions).

Source: IntelMQ 3.5.0 ``intelmq.bots.experts.taxonomy.expert.TAXONOMY``, which follows the
Reference Security Incident Taxonomy (https://github.com/enisaeu/Reference-Security-Incident-Taxonomy-Task-Force/).
Feed parsers that classify per row (Spamhaus CERT, Team Cymru CAP) derive the taxonomy from it.
"""

from __future__ import annotations

#: classification type -> taxonomy.
TAXONOMY: dict[str, str] = {
    "spam": "abusive-content", "harmful-speech": "abusive-content", "violence": "abusive-content",
    "ddos": "availability", "dos": "availability", "outage": "availability", "sabotage": "availability",
    "misconfiguration": "availability",
    "copyright": "fraud", "masquerade": "fraud", "phishing": "fraud", "unauthorized-use-of-resources": "fraud",
    "unauthorised-information-access": "information-content-security",
    "unauthorised-information-modification": "information-content-security",
    "data-loss": "information-content-security", "data-leak": "information-content-security",
    "scanner": "information-gathering", "sniffing": "information-gathering",
    "social-engineering": "information-gathering",
    "brute-force": "intrusion-attempts", "exploit": "intrusion-attempts", "ids-alert": "intrusion-attempts",
    "application-compromise": "intrusions", "burglary": "intrusions", "privileged-account-compromise": "intrusions",
    "system-compromise": "intrusions", "unprivileged-account-compromise": "intrusions",
    "c2-server": "malicious-code", "infected-system": "malicious-code", "malware-configuration": "malicious-code",
    "malware-distribution": "malicious-code",
    "dga-domain": "other", "blacklist": "other", "other": "other", "undetermined": "other", "malware": "other",
    "proxy": "other", "tor": "other",
    "test": "test",
    "ddos-amplifier": "vulnerable", "information-disclosure": "vulnerable",
    "potentially-unwanted-accessible": "vulnerable", "vulnerable-system": "vulnerable", "weak-crypto": "vulnerable",
}


def taxonomy(classification_type: str) -> str:
    """The taxonomy of ``classification_type`` (``other`` for a type not in :data:`TAXONOMY`)."""
    return TAXONOMY.get(classification_type, "other")
