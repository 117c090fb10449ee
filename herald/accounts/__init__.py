"""Accounts: portal users (:mod:`herald.accounts.users`) and Reports API keys
(:mod:`herald.accounts.apikeys`), the services both the web application and the CLI call."""
