"""``herald serve [--config FILE] [--host 127.0.0.1] [--port 8000]``: the Reports API, portal and
admin console (uvicorn)."""

from __future__ import annotations


def register(sub) -> None:
    """Add ``herald serve``."""
    p = sub.add_parser("serve", help="serve the Reports API, the recipient portal and the admin "
                                     "console")
    p.add_argument("--config", default="herald.toml", help="configuration file (default: herald.toml)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Build the app from the configuration and serve it until interrupted (access log with
    download ids redacted, :mod:`herald.web.logs`)."""
    import uvicorn

    from herald.config import load_settings
    from herald.web.app import create_app
    from herald.web.logs import uvicorn_log_config

    app = create_app(load_settings(args.config))
    # The access log never holds a download id (/dl/<id> is a credential): see herald.web.logs.
    # proxy_headers=False: forwarding headers are honoured only from [web] trusted_proxies, by
    # the app itself (herald.web.app), never from uvicorn's default of trusting loopback.
    uvicorn.run(app, host=args.host, port=args.port, proxy_headers=False, server_header=False,
                log_level="info", log_config=uvicorn_log_config())
    return 0
