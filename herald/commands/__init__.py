"""Sub-commands of the ``herald`` command line.

Each module here has ``register(subparsers)``, which adds its sub-command(s) with argparse and sets
``func`` to a function ``(args) -> int`` (the exit status).  :mod:`herald.cli` lists the modules.
"""
