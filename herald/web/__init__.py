"""Herald web: Reports API, recipient portal and admin console (see herald.web.app)."""
