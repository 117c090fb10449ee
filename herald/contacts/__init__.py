"""Abuse contacts from RPSL databases (issue 15): import RIR dumps, store them as range tables,
look up the abuse mailbox of addresses.  See docs/abuse-contacts.md.

Modules: :mod:`.rpsl` (streaming parser), :mod:`.values` (attribute values), :mod:`.importer`
(dumps -> resolved tables), :mod:`.store` (files under ``<data>/contacts``), :mod:`.lookup`
(vectorized lookup).
"""
