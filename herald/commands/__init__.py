"""Sub-commands of the ``herald`` command line.

Each module here has ``register(subparsers)``, which adds its one sub-command with argparse and
sets ``func`` to a function ``(args) -> int`` (the exit status).  :mod:`herald.cli` lists them
(``COMMANDS``): the module ``herald.commands.<name>`` registers the sub-command ``<name>``, and a
command imports only its own module.
"""
