"""Sensors that observe infected machines directly: the DNS and HTTP(S) sinkholes.

- :mod:`herald.sensors.config`: ``[sinkhole]`` settings, :func:`~herald.sensors.config.load_sinkhole_domains`
  and the provider hook for domains kept elsewhere (law-enforcement operations in the database);
- :mod:`herald.sensors.batch`: buffered, atomic Parquet files in the daily inbox;
- :mod:`herald.sensors.sinkhole_dns`, :mod:`herald.sensors.sinkhole_http`: the servers;
- :mod:`herald.sensors.runtime`: signals, flush timer, background runner.

See docs/sinkhole.md.
"""
