"""Reading TOML documents (TOML 1.0, https://toml.io/en/v1.0.0): Herald's one TOML reader.

:func:`loads` parses with ``rtoml`` (a Rust TOML parser) and, when that fails, again with the
standard library's :mod:`tomllib`, whose error is the one raised: so a bad document gets the
same message (with its line and column) whichever parser is installed.  ``rtoml`` is used for
speed alone: on the benchmark constituency (``bench/generate.py``, 2,000 recipients, 193,062
CIDRs in 11 MB of TOML) ``tomllib.loads`` takes 0.61 s and ``rtoml.loads`` 0.074 s; on 983k
CIDRs, 2 s against 0.3 s.  Both give the same ``dict`` for every document Herald reads (tested
in ``tests/test_tomlfile.py``); the one difference is that ``rtoml`` also accepts the two string
escapes of TOML 1.1 (``\\e``, ``\\xHH``).  Without ``rtoml`` importable, :mod:`tomllib` alone is
used.
"""

from __future__ import annotations

import tomllib
from typing import Any

try:
    import rtoml as _rtoml
except ImportError:  # pragma: no cover - rtoml is a dependency; tomllib alone still works
    _rtoml = None

#: The error :func:`loads` raises for a document that is not TOML.
TOMLDecodeError = tomllib.TOMLDecodeError


def loads(text: str) -> dict[str, Any]:
    """The TOML document ``text`` as a ``dict`` (tables as ``dict``, arrays as ``list``, dates and
    times as :mod:`datetime` values).

    Raises:
        TOMLDecodeError: ``text`` is not a TOML document (:mod:`tomllib`'s message: what is wrong,
            at which line and column).
    """
    if _rtoml is not None:
        try:
            return _rtoml.loads(text)
        except ValueError:
            pass  # tomllib's error below names the line and column the same way every time
    return tomllib.loads(text)
