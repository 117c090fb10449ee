"""Offline IP -> ASN, AS name and country data: the bundled table and loaders for user data.

The bundled table (``herald/enrich/data/ipdata.npz`` + ``ipdata.json``) is built by
``scripts/build_ipdata.py`` from the npm packages ``@ip-location-db/asn`` and
``@ip-location-db/asn-country`` (CC BY 4.0; RouteViews, the five RIRs' statistics via the NRO, and
DB-IP; see ``data/ATTRIBUTION.md``).  Operators can add their own data, which wins where it has a
value (:meth:`IPData.combine`):

- pyasn ``IPASN`` files (:meth:`IPData.load_ipasn`), as written by pyasn's ``pyasn_util_convert.py``
  (https://github.com/hadiasghari/pyasn): comment lines starting with ``;``, then
  ``<prefix>/<length><TAB><asn>`` lines.  Nested prefixes: the longest match wins.  ASN only.
- RIR delegated-extended statistics files (:meth:`IPData.load_rir_delegated`), format of the NRO
  "RIR statistics exchange format" (https://www.nro.net/wp-content/uploads/nro-extended-stats-readme5.txt).
  Country only: the file's ``asn`` records give the country of an AS *number*, not which AS
  announces which addresses, so they do not map addresses to ASNs.

An :class:`IPData` holds two :class:`~herald.enrich.iprange.RangeTable` objects: one whose payload
indexes a sorted table of ASNs (with their names), one whose payload indexes a sorted list of
country codes.  ASN 0 ("not routed", RFC 7607) is reported as unknown (null).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.enrich.datafiles import (
    data_lines, date_from, ipasn_original_name, malformed_lines, read_text, text_lines,
)
from herald.enrich.iprange import THREAD_CHUNK, RangeTable, join_tables, unique_inverse
from herald.enrich.ranges import parse_prefixes, prefix_masks
from herald.errors import ConfigError, InputError
from herald.fsutil import atomic_write, atomic_writer
from herald.ipaddr import ParsedIPs, parse_ips

#: Days after which :meth:`IPData.info` warns that the data is stale.
MAX_AGE_DAYS = 90

#: Output schema of :meth:`IPData.lookup`.
LOOKUP_SCHEMA = pa.schema([("asn", pa.int64()), ("as_name", pa.string()), ("cc", pa.string())])

#: Version tag of the ``.npz`` layout written by :meth:`IPData.save`.
FORMAT = "herald-ipdata/1"

_ASN_MAX = (1 << 32) - 1


def _strings_to_arrays(prefix: str, values: pa.Array) -> dict[str, np.ndarray]:
    values = values.cast(pa.string())
    items = values.to_pylist()
    valid = np.array([v is not None for v in items], dtype=bool)
    blobs = [(v or "").encode("utf-8") for v in items]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return {f"{prefix}_blob": np.frombuffer(b"".join(blobs), dtype=np.uint8),
            f"{prefix}_offsets": offsets, f"{prefix}_valid": valid}


def _strings_from_arrays(prefix: str, arrays) -> pa.Array:
    blob = np.ascontiguousarray(arrays[f"{prefix}_blob"], dtype=np.uint8)
    offsets = np.ascontiguousarray(arrays[f"{prefix}_offsets"], dtype=np.int64)
    valid = np.asarray(arrays[f"{prefix}_valid"], dtype=bool)
    n = len(valid)
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(blob.tobytes()),
                                           bitmap, n - int(valid.sum()))
    return arr.cast(pa.string())


class IPData:
    """IP -> ASN, AS name and country data.

    Build with :meth:`default` (the bundled table), :meth:`load` (a table saved by :meth:`save`),
    :meth:`load_ipasn` or :meth:`load_rir_delegated`; merge with :meth:`combine`; query with
    :meth:`lookup`.  Instances are immutable and safe to share between threads.

    Attributes:
        asn_ranges: :class:`RangeTable` whose payload indexes :attr:`asns`.
        asns: ``int64[A]`` sorted distinct AS numbers.
        as_names: Arrow ``string[A]`` AS names aligned with :attr:`asns` (null where unknown).
        cc_ranges: :class:`RangeTable` whose payload indexes :attr:`ccs`.
        ccs: Arrow ``string[C]`` sorted distinct two-letter country codes (ISO 3166-1 alpha-2, plus
            the RIRs' ``EU``/``AP`` where a source uses them).
        meta: provenance: ``source``, ``version``, ``date`` (``YYYY-MM-DD`` or ``None``),
            ``licence``, ``url``, and ``components`` (one such dict per merged data set).
    """

    def __init__(self, asn_ranges: RangeTable, asns: np.ndarray, as_names: pa.Array,
                 cc_ranges: RangeTable, ccs: pa.Array, meta: dict[str, Any]) -> None:
        self.asn_ranges = asn_ranges
        self.asns = np.asarray(asns, dtype=np.int64)
        self.as_names = as_names.cast(pa.string())
        self.cc_ranges = cc_ranges
        self.ccs = ccs.cast(pa.string())
        self.meta = dict(meta)
        self.meta.setdefault("components", [{k: v for k, v in meta.items() if k != "components"}])
        if len(self.as_names) != len(self.asns):
            raise ValueError("IPData: as_names must align with asns")
        if len(self.asns) > 1 and (np.diff(self.asns) <= 0).any():
            raise ValueError("IPData: asns must be sorted and distinct")
        for name, table, n in (("asn", asn_ranges, len(self.asns)), ("cc", cc_ranges, len(self.ccs))):
            for p in (table.v4_payload, table.v6_payload):
                if len(p) and p.max() >= n:
                    raise ValueError(f"IPData: {name} range payload out of bounds")
        # Lookup output: payload -> asn with ASN 0 (RFC 7607) as unknown.
        self._asn_out = np.where(self.asns == 0, -1, self.asns)

    # ----------------------------------------------------------------------------------------------
    @staticmethod
    def default() -> "IPData":
        """The bundled table (loaded once per process and cached).

        Raises:
            InputError: the bundled files are missing or damaged (a broken install).
        """
        return _default()

    @classmethod
    def empty(cls, meta: dict[str, Any] | None = None) -> "IPData":
        """A data set with no ranges."""
        return cls(RangeTable(), np.zeros(0, np.int64), pa.array([], pa.string()), RangeTable(),
                   pa.array([], pa.string()), meta or {"source": "empty", "date": None})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "IPData":
        """Load a table written by :meth:`save`: ``<name>.npz`` and its ``<name>.json`` metadata.

        Raises:
            InputError: a file is missing, not in the :data:`FORMAT` layout, or inconsistent.
        """
        path = Path(path)
        meta_path = path.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read IP data metadata: {exc}", str(meta_path)) from exc
        if meta.get("format") != FORMAT:
            raise InputError(f"not a {FORMAT} metadata file (format {meta.get('format')!r})", str(meta_path))
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            return cls(RangeTable.from_arrays(arrays, "asn_"), arrays["asns"],
                       _strings_from_arrays("as_names", arrays), RangeTable.from_arrays(arrays, "cc_"),
                       _strings_from_arrays("ccs", arrays), meta)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise InputError(f"cannot read IP data table: {exc}", str(path)) from exc

    def save(self, path: str | os.PathLike, extra_meta: dict[str, Any] | None = None) -> None:
        """Write the table to ``path`` (``.npz``, zip-deflated) and metadata to ``path`` with suffix
        ``.json``, each atomically (temp file, then rename).  Byte-identical for identical data:
        zip entries carry a fixed date."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {"asns": self.asns}
        arrays.update(self.asn_ranges.to_arrays("asn_"))
        arrays.update(self.cc_ranges.to_arrays("cc_"))
        arrays.update(_strings_to_arrays("as_names", self.as_names))
        arrays.update(_strings_to_arrays("ccs", self.ccs))

        def write_npz(fh) -> None:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
                for name in sorted(arrays):
                    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    buf = io.BytesIO()
                    np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                    zf.writestr(info, buf.getvalue(), compresslevel=9)

        meta = {k: v for k, v in self.meta.items() if k != "components"}
        meta.update(extra_meta or {})
        meta["format"] = FORMAT
        meta["counts"] = self._counts()
        with atomic_writer(path) as fh:
            write_npz(fh)
        text = json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write(path.with_suffix(".json"), text.encode("utf-8"))

    def _counts(self) -> dict[str, int]:
        return {"asn_ranges_v4": self.asn_ranges.n_v4, "asn_ranges_v6": self.asn_ranges.n_v6,
                "cc_ranges_v4": self.cc_ranges.n_v4, "cc_ranges_v6": self.cc_ranges.n_v6,
                "asns": len(self.asns), "ccs": len(self.ccs)}

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def load_ipasn(cls, path: str | os.PathLike, strict: bool = True) -> "IPData":
        """Load a pyasn ``IPASN`` file (plain or gzip): IP prefix -> ASN, IPv4 and IPv6.

        Format (pyasn ``pyasn_util_convert.py``, "IP-ASN32-DAT"): lines starting with ``;`` (or
        ``#``) are comments, blank lines are ignored; every other line is ``<prefix><TAB><asn>``
        (any white space accepted), e.g. ``1.0.0.0/24\\t15169`` or ``2001:200::/32\\t2500``.
        Host bits below the prefix length are cleared (pyasn's radix tree does the same).
        Overlapping prefixes: the longest match wins; the same prefix twice: the later line wins.
        There are no AS names (after :meth:`combine` with the default data, names come from it).
        The data date is the first ``YYYYMMDD`` in the ``Original file`` comment, else in the file
        name, else unknown.

        Args:
            path: the file.
            strict: ``True`` (default): a malformed line raises :class:`InputError`.  ``False``:
                malformed lines are skipped; ``meta["skipped_lines"]`` counts them and
                ``meta["skipped_examples"]`` lists up to 5 as ``"path:line: reason"``.

        Raises:
            InputError: unreadable file, or (strict) a malformed line, naming file and line.
        """
        path = Path(path)
        text = read_text(path)
        lines = text_lines(text)
        data_idx, data = data_lines(lines, r"^[;#]")
        parts = pc.extract_regex(data, r"^(?P<prefix>[^\s]+)\s+(?P<asn>[^\s]+)$")
        prefix = pc.struct_field(parts, "prefix")
        asn_txt = pc.struct_field(parts, "asn")
        shape_ok = pc.is_valid(parts).to_numpy(zero_copy_only=False)
        version, sh, sl, eh, el = parse_prefixes(prefix)
        asn_ok = pc.fill_null(pc.match_substring_regex(asn_txt, r"^\d{1,10}$"), False).to_numpy(zero_copy_only=False)
        asn = pc.fill_null(pc.cast(pc.if_else(pa.array(asn_ok), asn_txt, pa.nulls(len(data), pa.string())),
                                   pa.int64()), -1).to_numpy(zero_copy_only=False)
        asn_ok &= asn <= _ASN_MAX
        reasons = np.full(len(data), "", dtype=object)
        reasons[~asn_ok] = "AS number is not an integer in 0..4294967295"
        reasons[(version < 0)] = "not an IP prefix (expected e.g. 192.0.2.0/24)"
        reasons[~shape_ok] = "expected '<prefix><TAB><asn>'"
        bad = ~(shape_ok & (version > 0) & asn_ok)
        meta = {"source": f"pyasn ipasn file {path.name}", "path": str(path), "version": None,
                "date": date_from(ipasn_original_name(text)) or date_from(path.name),
                "licence": "user-supplied", "url": None}
        meta.update(malformed_lines(path, data_idx, bad, reasons, data, strict))
        keep = ~bad
        asns, payload = unique_inverse(asn[keep])
        table = RangeTable.from_bounds(version[keep], sh[keep], sl[keep], eh[keep], el[keep], payload)
        meta["records"] = int(keep.sum())
        return cls(table, asns, pa.nulls(len(asns), pa.string()), RangeTable(), pa.array([], pa.string()), meta)

    @classmethod
    def load_rir_delegated(cls, path: str | os.PathLike, strict: bool = True) -> "IPData":
        """Load an RIR delegated(-extended) statistics file (plain or gzip): range -> country.

        Format (NRO "RIR statistics exchange format", also the non-extended files of each RIR):
        ``#`` comment lines; a version line ``version|registry|serial|records|startdate|enddate|
        UTCoffset``; summary lines ``registry|*|type|*|count|summary``; records
        ``registry|cc|type|start|value|date|status[|opaque-id[|extensions]]`` where ``type`` is
        ``asn``, ``ipv4`` or ``ipv6``; for ``ipv4`` ``value`` is the number of addresses (not
        necessarily a power of two), for ``ipv6`` the prefix length.

        Rules (counted in ``meta``):

        - ``ipv4``/``ipv6`` records with status ``allocated`` or ``assigned`` and a country code give
          the range's country.  Codes are upper-cased; ``ZZ`` (unknown) gives no country.
        - ``available`` and ``reserved`` records, and those without a country, are skipped
          (``meta["unassigned_records"]``).
        - ``asn`` records are skipped (``meta["asn_records"]``): they give the country of an AS
          number, not of an address range, so this loader provides countries only.
        - Overlapping records: the smaller range wins.

        The data date is the version line's ``enddate`` (else ``serial``, for files that put a date
        there), else the first ``YYYYMMDD`` in the file name.

        Args:
            path: the file.
            strict: as for :meth:`load_ipasn`.

        Raises:
            InputError: unreadable file, or (strict) a malformed line, naming file and line.
        """
        path = Path(path)
        text = read_text(path)
        lines = text_lines(text)
        idx, rows = data_lines(lines, r"^#")
        fields = pc.split_pattern(rows, "|")
        nf = pc.list_value_length(fields).to_numpy(zero_copy_only=False)

        def col(i: int) -> pa.Array:
            ok = pa.array(nf > i)
            return pc.list_element(pc.if_else(ok, fields, pa.nulls(len(rows), fields.type)), i) if len(rows) \
                else pa.array([], pa.string())

        typ = col(2)
        is_summary = pc.fill_null(pc.equal(col(5), "summary"), False).to_numpy(zero_copy_only=False)
        is_version = np.zeros(len(rows), dtype=bool)
        date = None
        head = fields[0].as_py() if len(rows) else []
        if len(rows) and not is_summary[0] and re.match(r"^\d+(\.\d+)?$", head[0]):
            is_version[0] = True
            date = (date_from(head[5]) if len(head) > 5 else None) or date_from(head[2] if len(head) > 2 else "")
        tvals = pc.fill_null(typ, "").to_numpy(zero_copy_only=False).astype(str)
        record = ~is_summary & ~is_version
        reasons = np.full(len(rows), "", dtype=object)
        reasons[record & (nf < 7)] = "expected at least 7 '|'-separated fields"
        known = np.isin(tvals, ["asn", "ipv4", "ipv6"])
        reasons[record & (nf >= 7) & ~known] = "type must be asn, ipv4 or ipv6"
        is_asn = record & (nf >= 7) & (tvals == "asn")
        is_ip = record & (nf >= 7) & np.isin(tvals, ["ipv4", "ipv6"])

        status = pc.utf8_lower(pc.fill_null(col(6), "")).to_numpy(zero_copy_only=False).astype(str)
        cc = pc.utf8_upper(pc.fill_null(col(1), "")).to_numpy(zero_copy_only=False).astype(str)
        cc_ok = pc.fill_null(pc.match_substring_regex(pc.utf8_upper(col(1)), r"^[A-Z]{2}$"),
                             False).to_numpy(zero_copy_only=False)
        used = is_ip & np.isin(status, ["allocated", "assigned"]) & cc_ok & (cc != "ZZ")
        unassigned = is_ip & ~used

        start_txt = col(3)
        value_txt = col(4)
        parsed = parse_ips(start_txt)
        val_ok = pc.fill_null(pc.match_substring_regex(value_txt, r"^\d{1,10}$"), False).to_numpy(zero_copy_only=False)
        value = pc.fill_null(pc.cast(pc.if_else(pa.array(val_ok), value_txt, pa.nulls(len(rows), pa.string())),
                                     pa.int64()), 0).to_numpy(zero_copy_only=False)
        v4 = is_ip & (tvals == "ipv4")
        v6 = is_ip & (tvals == "ipv6")
        addr_bad = (v4 & (parsed.version != 4)) | (v6 & (parsed.version != 6))
        v4_end = parsed.v4.astype(np.int64) + value - 1
        value_bad = is_ip & ~val_ok
        value_bad |= v4 & ((value < 1) | (v4_end > (1 << 32) - 1))
        value_bad |= v6 & (value > 128)
        reasons[is_ip & value_bad] = "bad value (ipv4: address count >= 1 within IPv4; ipv6: prefix length 0..128)"
        reasons[is_ip & addr_bad] = "start is not an address of the record's type"
        bad = reasons != ""
        meta = {"source": f"RIR delegated statistics {path.name}", "path": str(path), "version": None,
                "date": date or date_from(path.name), "licence": "user-supplied (RIR statistics)",
                "url": None, "asn_records": int(is_asn.sum()),
                "unassigned_records": int((unassigned & ~bad).sum())}
        meta.update(malformed_lines(path, idx, bad, reasons, rows, strict))
        use = used & ~bad
        u4 = use & v4
        u6 = use & v6
        codes, payload = np.unique(cc[use], return_inverse=True)
        pay = np.zeros(len(rows), dtype=np.int64)
        pay[use] = payload
        # IPv6: the record's start must be the prefix's first address; clear host bits anyway, as
        # for ipasn files.
        L = np.clip(value[u6], 0, 128)
        mh = prefix_masks(np.clip(L, 0, 64))
        ml = prefix_masks(np.clip(L - 64, 0, 64))
        hi = parsed.v6_hi[u6] & mh
        lo = parsed.v6_lo[u6] & ml
        table = RangeTable.from_ranges(parsed.v4[u4], v4_end[u4], pay[u4], hi, lo, hi | ~mh, lo | ~ml, pay[u6])
        meta["records"] = int(use.sum())
        return cls(RangeTable(), np.zeros(0, np.int64), pa.array([], pa.string()), table,
                   pa.array(codes.tolist(), pa.string()), meta)

    @classmethod
    def from_specs(cls, specs: Iterable[dict[str, str]], base: "IPData | None" = None) -> "IPData":
        """The default data (or ``base``) combined with user data sets, later ones winning.

        Args:
            specs: dicts ``{"format": "ipasn" | "rir-delegated", "path": ...}`` as in the
                ``[enrich] ipdata`` setting (:mod:`herald.config`).

        Raises:
            ConfigError: an unknown format.  InputError: from the loaders.
        """
        data = base if base is not None else cls.default()
        for spec in specs:
            fmt = spec.get("format", "").lower().replace("_", "-")
            if fmt in ("ipasn", "pyasn"):
                data = data.combine(cls.load_ipasn(spec["path"]))
            elif fmt in ("rir-delegated", "rir", "delegated"):
                data = data.combine(cls.load_rir_delegated(spec["path"]))
            else:
                raise ConfigError(f"unknown IP data format {spec.get('format')!r} for {spec.get('path')}; "
                                  "use 'ipasn' or 'rir-delegated'")
        return data

    # ----------------------------------------------------------------------------------------------
    def combine(self, other: "IPData") -> "IPData":
        """Merge: ``other`` wins wherever it has a value, ``self`` fills the rest.

        ASN and country are merged separately, so an ASN-only data set (ipasn) keeps this data's
        countries and a country-only one (RIR) keeps its ASNs.  AS names are per AS number:
        ``other``'s name where it has one, else ours (so user ipasn data gets the default names).

        Returns:
            A new :class:`IPData`; ``meta["components"]`` lists both sides' components.
        """
        asns = np.union1d(self.asns, other.asns).astype(np.int64)
        names_self = _align(self.asns, self.as_names, asns)
        names_other = _align(other.asns, other.as_names, asns)
        names = pc.coalesce(names_other, names_self)
        map_self = np.searchsorted(asns, self.asns)
        map_other = np.searchsorted(asns, other.asns)
        asn_ranges = self.asn_ranges.map_payload(map_self).overlay(other.asn_ranges.map_payload(map_other)) \
            if len(other.asn_ranges) else self.asn_ranges.map_payload(map_self)

        cc_self = np.asarray(self.ccs.to_pylist(), dtype=object)
        cc_other = np.asarray(other.ccs.to_pylist(), dtype=object)
        ccs = np.union1d(cc_self.astype(str), cc_other.astype(str)) if len(cc_self) + len(cc_other) \
            else np.zeros(0, dtype=str)
        m_self = np.searchsorted(ccs, cc_self.astype(str)) if len(cc_self) else np.zeros(0, np.int64)
        m_other = np.searchsorted(ccs, cc_other.astype(str)) if len(cc_other) else np.zeros(0, np.int64)
        cc_ranges = self.cc_ranges.map_payload(m_self)
        if len(other.cc_ranges):
            cc_ranges = cc_ranges.overlay(other.cc_ranges.map_payload(m_other))

        comps = list(self.meta.get("components", [])) + list(other.meta.get("components", []))
        dates = [c.get("date") for c in comps]
        meta = {
            "source": " + ".join(str(c.get("source")) for c in comps),
            "version": " + ".join(str(c.get("version")) for c in comps if c.get("version")) or None,
            "licence": " + ".join(dict.fromkeys(str(c.get("licence")) for c in comps)),
            "url": self.meta.get("url"),
            # The oldest part decides how stale the answers can be.
            "date": min((d for d in dates if d), default=None),
            "components": comps,
        }
        return IPData(asn_ranges, asns, names, cc_ranges, pa.array(ccs.tolist(), pa.string()), meta)

    # ----------------------------------------------------------------------------------------------
    def lookup(self, values: pa.Array | pa.ChunkedArray | ParsedIPs | Iterable[str],
               threads: int | None = None,
               columns: Sequence[str] = ("asn", "as_name", "cc")) -> pa.Table:
        """ASN, AS name and country of each address.

        Args:
            values: N IP address strings (Arrow array, or a Python sequence), or the
                :class:`~herald.ipaddr.ParsedIPs` of them.  Empty and invalid values give nulls.
            threads: threads for inputs of more than 2**21 rows, each taking a share of the rows
                (default: CPU count, at most 4; 1 for none).
            columns: the columns wanted, in order (skipping ``as_name`` saves copying N strings).

        Returns:
            Arrow table of :data:`LOOKUP_SCHEMA` (or the chosen ``columns``) with N rows: ``asn``
            (``int64``, null if unknown), ``as_name`` (``string``), ``cc`` (``string``, two
            letters, upper case).

        Raises:
            ValueError: an unknown name in ``columns``.
        """
        if isinstance(values, ParsedIPs):
            parsed = values
        else:
            if not isinstance(values, (pa.Array, pa.ChunkedArray)):
                values = pa.array(list(values), type=pa.string())
            parsed = parse_ips(values)
        unknown_cols = set(columns) - set(LOOKUP_SCHEMA.names)
        if unknown_cols:
            raise ValueError(f"IPData.lookup: unknown columns {sorted(unknown_cols)}")
        schema = pa.schema([LOOKUP_SCHEMA.field(c) for c in columns])
        n = len(parsed)
        threads = threads or min(os.cpu_count() or 1, 4)
        chunks = min(threads, n // THREAD_CHUNK) if threads > 1 else 1
        if chunks <= 1:
            return pa.Table.from_batches([self._lookup_batch(parsed, columns, schema)], schema=schema)
        # Whole rows split over threads: the range lookup, the gathers and Arrow's take all run
        # without the GIL.
        edges = np.linspace(0, n, chunks + 1).astype(np.int64)
        with ThreadPoolExecutor(chunks) as ex:
            parts = list(ex.map(lambda ab: self._lookup_batch(_slice(parsed, ab[0], ab[1]), columns, schema),
                                zip(edges[:-1], edges[1:])))
        return pa.Table.from_batches(parts, schema=schema)

    def _lookup_batch(self, parsed: ParsedIPs, columns: Sequence[str], schema: pa.Schema) -> pa.RecordBatch:
        joined, asn_ext, ai_ext, ci_ext = self._joined
        j = joined.lookup(parsed, threads=1)
        # Index -1 (no range) picks the last element of each *_ext array, which is -1.
        asn = asn_ext[j]
        ai = ai_ext[j]
        ci = ci_ext[j]
        out = []
        unknown = asn < 0
        for name in columns:
            if name == "asn":
                out.append(pa.array(asn, type=pa.int64(), mask=unknown))
            elif name == "as_name":
                out.append(self.as_names.take(pa.array(ai, type=pa.int64(), mask=unknown))
                           if len(self.asns) else pa.nulls(len(ai), pa.string()))
            else:
                out.append(self.ccs.take(pa.array(ci, type=pa.int64(), mask=ci < 0))
                           if len(self.ccs) else pa.nulls(len(ci), pa.string()))
        return pa.RecordBatch.from_arrays(out, schema=schema)

    def prepare(self) -> "IPData":
        """Build the joined lookup table now instead of at the first :meth:`lookup`; returns self.

        The table includes the IPv4 block table (:meth:`RangeTable.index_blocks`).  A run calls it
        before forking its workers, so that each worker inherits the table instead of building its
        own (the bundled data: 0.15–0.2 s of CPU per process on the bench machine, see
        ``bench/README.md``).
        """
        self._joined  # noqa: B018 - the property builds and caches the table
        return self

    @cached_property
    def _joined(self) -> tuple[RangeTable, np.ndarray, np.ndarray, np.ndarray]:
        """ASN and country tables joined (built on first lookup), so one sort serves both.

        Returns ``(table, asn, asn index, cc index)``: per joined payload, the AS number (-1 for
        unknown or AS 0), the index into :attr:`asns`/:attr:`as_names` (-1 likewise) and the index
        into :attr:`ccs` (-1 for none); each array has one extra trailing -1 for payload -1.
        """
        joined, asn_of, cc_of = join_tables(self.asn_ranges, self.cc_ranges)
        joined.index_blocks()
        asn = np.where(asn_of >= 0, self._asn_out[np.maximum(asn_of, 0)], -1) if len(self.asns) \
            else np.full(len(asn_of), -1, np.int64)
        ai = np.where(asn >= 0, asn_of, -1)
        return joined, np.append(asn, -1), np.append(ai, -1), np.append(cc_of, -1)

    def info(self, today: dt.date | None = None) -> dict[str, Any]:
        """Provenance and size of the data.

        Args:
            today: the reference day (default: today in UTC).

        Returns:
            dict with ``date``, ``source``, ``version``, ``licence``, ``url``, ``ranges_v4`` and
            ``ranges_v6`` (ASN ranges + country ranges of the family), ``asn_ranges_v4``,
            ``asn_ranges_v6``, ``cc_ranges_v4``, ``cc_ranges_v6``, ``asns``, ``ccs``,
            ``age_days`` (``None`` when the date is unknown), ``components``, and ``warning`` (only
            when the data, or the oldest dated part of a combination, is older than
            :data:`MAX_AGE_DAYS` days, or when a part's date is unknown).
        """
        today = today or dt.datetime.now(dt.timezone.utc).date()
        counts = self._counts()
        out: dict[str, Any] = {
            "date": self.meta.get("date"),  # of a combination: the oldest known date
            "source": self.meta.get("source"),
            "version": self.meta.get("version"),
            "licence": self.meta.get("licence"),
            "url": self.meta.get("url"),
            "ranges_v4": counts["asn_ranges_v4"] + counts["cc_ranges_v4"],
            "ranges_v6": counts["asn_ranges_v6"] + counts["cc_ranges_v6"],
            **counts,
            "age_days": None,
            "components": self.meta.get("components", []),
        }
        warnings = []
        if out["date"]:
            out["age_days"] = (today - dt.date.fromisoformat(out["date"])).days
            if out["age_days"] > MAX_AGE_DAYS:
                warnings.append(f"IP data of {out['date']} is {out['age_days']} days old (more than "
                                f"{MAX_AGE_DAYS}); ASN and country answers may be out of date: rebuild it "
                                "(scripts/build_ipdata.py) or add current data ([enrich] ipdata)")
        undated = [str(c.get("source")) for c in out["components"] if not c.get("date")]
        if undated:
            warnings.append(f"the date of {', '.join(undated)} is unknown; cannot tell whether it is current")
        if warnings:
            out["warning"] = "; ".join(warnings)
        return out

    def __repr__(self) -> str:
        return (f"IPData({self.meta.get('source')!r}, date={self.meta.get('date')}, "
                f"asn={self.asn_ranges!r}, cc={self.cc_ranges!r})")


def _slice(p: ParsedIPs, a: int, b: int) -> ParsedIPs:
    """Rows ``a:b`` of parsed addresses (views, no copies)."""
    return ParsedIPs(p.version[a:b], p.v4[a:b], p.v6_hi[a:b], p.v6_lo[a:b],
                     None if p.text is None else p.text.slice(a, b - a))


def _align(keys: np.ndarray, values: pa.Array, target: np.ndarray) -> pa.Array:
    """``values`` (aligned with sorted ``keys``) re-aligned to sorted ``target`` (nulls where absent)."""
    if not len(keys):
        return pa.nulls(len(target), pa.string())
    pos = np.searchsorted(keys, target)
    pos_c = np.minimum(pos, len(keys) - 1)
    found = keys[pos_c] == target
    return values.take(pa.array(pos_c, type=pa.int64(), mask=~found))


@lru_cache(maxsize=1)
def _default() -> IPData:
    ref = resources.files("herald.enrich").joinpath("data", "ipdata.npz")
    with resources.as_file(ref) as p:
        if not Path(p).is_file():
            raise InputError("the bundled IP data is missing; reinstall Herald or run "
                             "scripts/build_ipdata.py", str(p))
        return IPData.load(p)
