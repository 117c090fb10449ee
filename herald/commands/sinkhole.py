"""``herald sinkhole dns|http``: run a sinkhole sensor until SIGTERM/SIGINT (see docs/sinkhole.md)."""

from __future__ import annotations

import sys

from herald.config import load_settings
from herald.errors import ConfigError


def register(sub) -> None:
    """Add ``herald sinkhole dns`` and ``herald sinkhole http``."""
    p = sub.add_parser("sinkhole", help="run a DNS or HTTP(S) sinkhole sensor")
    ss = p.add_subparsers(dest="sensor", metavar="SENSOR", required=True)
    for name, helptext in (("dns", "authoritative DNS sinkhole (UDP and TCP)"),
                           ("http", "HTTP and HTTPS sinkhole")):
        q = ss.add_parser(name, help=helptext)
        q.add_argument("--config", "-c", required=True, help="TOML configuration file ([sinkhole] section)")
        q.add_argument("--listen", action="append", metavar="HOST:PORT",
                       help="override the configured listen address(es) (plain HTTP for 'http')")
        q.set_defaults(func=run)


def run(args) -> int:
    """Start the sensor; prints ``listening <protocol> <host> <port>`` lines to stdout when ready and a
    summary line on exit.  SIGHUP reloads the sinkholed domains.  Returns 0 after a clean shutdown
    (everything flushed).

    Raises:
        ConfigError: bad configuration, no listener configured.
        StoreError: the inbox cannot be written.
    """
    # Imported here so that other commands do not need dnspython.
    from herald.sensors.batch import EventBatcher
    from herald.sensors.config import load_sinkhole_config, load_sinkhole_domains, parse_listen
    from herald.sensors.runtime import run_forever

    settings = load_settings(args.config)
    cfg = load_sinkhole_config(settings)
    if args.listen:
        addrs = [parse_listen(a, "--listen") for a in args.listen]
        if args.sensor == "dns":
            cfg.dns_listen = addrs
        else:
            cfg.http_listen, cfg.https_listen = addrs, []
    if args.sensor == "dns":
        from herald.sensors.sinkhole_dns import DnsSinkhole

        if not cfg.dns_listen:
            raise ConfigError(f"{settings.path}: sinkhole.dns_listen is not set")
        batcher = EventBatcher(cfg.inbox, f"{cfg.sensor_name}_dns", cfg.batch_rows, cfg.batch_seconds)
        server = DnsSinkhole(cfg, batcher)
    else:
        from herald.sensors.sinkhole_http import HttpSinkhole

        if not cfg.http_listen and not cfg.https_listen:
            raise ConfigError(f"{settings.path}: neither sinkhole.http_listen nor https_listen is set")
        batcher = EventBatcher(cfg.inbox, f"{cfg.sensor_name}_http", cfg.batch_rows, cfg.batch_seconds)
        server = HttpSinkhole(cfg, batcher)
    if not cfg.domains:
        print("herald: warning: no sinkholed domains configured", file=sys.stderr)

    def ready(bound):
        for proto, host, port in bound:
            print(f"listening {proto} {host} {port}", flush=True)

    def reload():
        # SIGHUP: read the domains again (TOML file and registered providers, e.g. operations).
        domains = load_sinkhole_domains(load_settings(args.config))
        server.set_domains(domains)
        print(f"reloaded {len(domains)} sinkholed domains", flush=True)

    run_forever([server], batcher, ready, reload)
    print(f"stopped: {batcher.rows_written} rows written, {server.stats}", flush=True)
    return 0
