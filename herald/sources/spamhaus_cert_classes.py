"""Classification of Spamhaus CERT Insight Portal rows by their ``botname``.

The CERT feed mixes infected hosts with other abuse (open relays, SSH brute force, WordPress
scanners, spam): its ``botname`` column says which.  This is IntelMQ 3.5.0's table
(``intelmq.bots.parsers.spamhaus.parser_cert``), so that Herald's events classify as IntelMQ's do:

=====================================  =====================  ===========================  ===========
botname                                classification type    identifier                   application
=====================================  =====================  ===========================  ===========
openrelay                              vulnerable-system      openrelay                    smtp
sshauth / telnetauth / smtpauth        brute-force            ssh / telnet / smtp          same
iotscan, iotuser                       scanner                telnet (remote port 23,      telnet
                                                              2323), else scanner-generic
wpscanner / w_wplogin                  scanner                wordpress-vulnerabilities /  http
                                                              wordpress-login
l_spamlink                             spam                   spamlink                     –
pop, imap                              brute-force            the botname                  the botname
smb, rdp, iotrdp, iotmicrosoftds       scanner                without ``iot``              same
proxyget                               other                  proxyget                     –
iotlogin, iotcmd                       system-compromise      iot                          –
iotmirai                               infected-system        mirai (malware ``mirai``)    –
ioturl                                 c2-server              malware-generic              –
automatedtest                          brute-force            lookup-captcha               –
authspoofbadehlo                       brute-force            authentication-spoof         smtp
extortion / misc                       spam                   extortion / spam             smtp when
                                                                                           remote port 25
anything else (a bot)                  infected-system        –  (malware = botname,       –
                                                              ``auto`` -> ``s_other``)
=====================================  =====================  ===========================  ===========

The taxonomy follows the type (:mod:`herald.sources.rsit`, IntelMQ's taxonomy expert).  IntelMQ's event
descriptions are copied too.
"""

from __future__ import annotations

from herald.sources import rsit

_FIXED: dict[str, tuple[str, str, str, str]] = {
    # botname: (type, identifier, application, description)
    "openrelay": ("vulnerable-system", "openrelay", "smtp", ""),
    "sshauth": ("brute-force", "ssh", "ssh", ""),
    "telnetauth": ("brute-force", "telnet", "telnet", ""),
    "smtpauth": ("brute-force", "smtp", "smtp", ""),
    "wpscanner": ("scanner", "wordpress-vulnerabilities", "http", "scanning for wordpress vulnerabilities"),
    "w_wplogin": ("scanner", "wordpress-login", "http", "scanning for wordpress login pages"),
    "l_spamlink": ("spam", "spamlink", "", "The URL appeared in a spam email sent by extra.spam_ip."),
    "pop": ("brute-force", "pop", "pop", ""),
    "imap": ("brute-force", "imap", "imap", ""),
    "smb": ("scanner", "smb", "smb", ""),
    "rdp": ("scanner", "rdp", "rdp", ""),
    "iotrdp": ("scanner", "rdp", "rdp", ""),
    "iotmicrosoftds": ("scanner", "microsoftds", "microsoftds", ""),
    "proxyget": ("other", "proxyget", "", "The malicious client used a honeypot as proxy."),
    "iotlogin": ("system-compromise", "iot", "", "The infected iot device logged in to a honeypot."),
    "iotcmd": ("system-compromise", "iot", "",
               "The infected iot device logged in to a honeypot and issued malicious commands."),
    "iotmirai": ("infected-system", "mirai", "", ""),
    "ioturl": ("c2-server", "malware-generic", "", ""),
    "automatedtest": ("brute-force", "lookup-captcha", "",
                      "The device automatically brute-forced the Spamhaus CBL lookup."),
    "authspoofbadehlo": ("brute-force", "authentication-spoof", "smtp",
                         "The device spoofed SMTP authentication with a bad EHLO."),
    "extortion": ("spam", "extortion", "", "This device sent extortion mails."),
    "misc": ("spam", "spam", "", "This device is sending spam as part of a botnet. "
                                 "See abuseat.org for more details."),
}
_IOT_SCAN = ("scanner", "", "", "The possibly infected IoT device scanned for other vulnerable IoT devices.")


def classify(botname: str, remote_port: str) -> dict[str, str]:
    """Classification columns of one row: ``taxonomy``, ``classification_type``,
    ``classification_identifier``, ``application``, ``description`` and ``infection`` (the malware,
    only where IntelMQ names one: infected systems and ``iotmirai``; empty otherwise).

    Args:
        botname: the row's ``botname`` (any case); remote_port: its ``remote_port`` text.
    """
    name = botname.strip().lower()
    infection = ""
    if name in ("iotscan", "iotuser"):
        ctype, _, app, desc = _IOT_SCAN
        ident, app = ("telnet", "telnet") if remote_port in ("23", "2323") else ("scanner-generic", "")
    elif name in _FIXED:
        ctype, ident, app, desc = _FIXED[name]
        if name in ("extortion", "misc") and remote_port == "25":
            app = "smtp"
        if name == "iotmirai":
            infection = "mirai"
    else:
        ctype, ident, app, desc = "infected-system", "", "", ""
        infection = "s_other" if name == "auto" else name
    return {"taxonomy": rsit.taxonomy(ctype), "classification_type": ctype, "classification_identifier": ident,
            "application": app, "description": desc, "infection": infection}
