"""IntelMQ export: Herald's normalized tables as IntelMQ events.

:func:`to_intelmq` turns each row of a normalized report table (from
:func:`herald.sources.shadowserver_csv.read_file`) into one IntelMQ event: a flat dict whose keys
are IntelMQ *harmonization* field names (``source.ip``, ``classification.taxonomy``,
``extra.http_code``).  The aim is the output of IntelMQ 3.5.0's ``ShadowserverParserBot`` for the
same CSV file, so that Herald can feed an existing IntelMQ installation and so that
``tests/schema/test_intelmq_conformance.py`` can check Herald against IntelMQ's own output.

Sources of the rules (this module is an independent implementation; it does not use IntelMQ):

- the mapping of a report type's columns, with conversion-function names, is the type's entry of
  Shadowserver's ``intelmq.json`` (``required_fields``, ``optional_fields``, ``constant_fields``,
  ``feed_name``, ``url``), bundled as ``herald/schema/data/intelmq.json``;
- the meaning of the conversion functions (``convert_int``, ``validate_ip``, ...) and the order in
  which fields are applied are those documented for IntelMQ 3.5.0's Shadowserver parser;
- every value put in a harmonization field is *sanitized* and *validated* by the field's type, as
  IntelMQ 3.5.0's ``harmonization.conf`` and ``lib/harmonization.py`` define them (types
  ``String``, ``DateTime``, ``IPAddress``, ``FQDN``, ``ASN``, ... with the ``length`` and ``regex``
  limits of :data:`HARMONIZATION`).  An optional field whose value is invalid for its type is
  not lost: its column goes to ``extra`` with the raw text, as IntelMQ does.

Deliberate differences (documented in ``docs/intelmq.md``): Herald never drops a row in the
export.  Where IntelMQ rejects a whole row (a required column missing from an older file, a
conversion function that raises, a required value invalid for its field), Herald emits the event
without that field and keeps the raw text in ``extra`` when it is not empty.  Dates are parsed by
a strict parser of the formats found in Shadowserver data instead of ``dateutil``'s fuzzy parser,
so an empty ``convert_date_utc`` column gives no value (IntelMQ gives midnight of the day it runs).

The package, one module a concept: :mod:`.harmonization` (the fields, their types, sanitation),
:mod:`.datetimes` (date parsing), :mod:`.functions` (intelmq.json's conversion functions),
:mod:`.mapping` (the generic mapping of Herald's own types) and :mod:`.export` (:func:`to_intelmq`).
"""

from herald.schema.intelmq.datetimes import parse_datetime
from herald.schema.intelmq.export import to_intelmq
from herald.schema.intelmq.functions import FUNCTIONS
from herald.schema.intelmq.harmonization import HARMONIZATION, InvalidKey, InvalidValue, sanitize_value

__all__ = ["to_intelmq", "HARMONIZATION", "FUNCTIONS", "sanitize_value", "parse_datetime", "InvalidValue",
           "InvalidKey"]
