"""Sources: one module per input format, each turning a file into a typed table of one report type.

- :mod:`herald.sources.shadowserver_csv`: Shadowserver-format CSV reports, with its helpers
  :mod:`~herald.sources.csv_records` (record boundaries, row-exact fallback reader),
  :mod:`~herald.sources.csv_timestamps` (timestamp typing) and :mod:`~herald.sources.quarantine`
  (the quarantine of every source).
- :mod:`herald.sources.abusech`, :mod:`~herald.sources.spamhaus`, :mod:`~herald.sources.cymru`,
  :mod:`~herald.sources.ctip`, :mod:`~herald.sources.blocklists`, :mod:`~herald.sources.shodan`:
  the feeds CERTs receive besides Shadowserver (docs/feeds.md).
- :mod:`herald.sources.urlhaus`, :mod:`~herald.sources.threatfox`, :mod:`~herald.sources.sslbl`
  (abuse.ch dumps, read with :mod:`~herald.sources.abusech_csv`), :mod:`~herald.sources.phishtank`,
  :mod:`~herald.sources.openphish`, :mod:`~herald.sources.turris`,
  :mod:`~herald.sources.dshield_domains`: URL, IOC and domain feeds; :mod:`herald.sources.urls`
  splits their URLs into the host, address and port columns routing reads.
- :mod:`herald.sources.intelmq_json`: IntelMQ events; :mod:`herald.sources.generic_csv`: any
  delimited file with a TOML mapping.
- :mod:`herald.sources.detect`: :func:`~herald.sources.detect.detect_format` and
  :func:`~herald.sources.detect.parse_any`, the entry point for every inbox file.
"""
