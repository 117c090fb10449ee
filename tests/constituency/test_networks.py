"""Networks (compact CIDR lists) against Python's ipaddress, and in recipients and routing."""

from __future__ import annotations

import ipaddress
import pickle

import pytest
from hypothesis import given, settings, strategies as st

from herald.constituency.networks import Networks
from herald.constituency.recipients import recipient_from_dict
from herald.errors import ConfigError

_v4 = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
_v6 = st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i)))
_text = st.one_of(
    st.tuples(_v4, st.integers(0, 34)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.tuples(_v6, st.integers(0, 130)).map(lambda t: f"{t[0]}/{t[1]}"),
    # networks with host bits clear (the common case)
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
        lambda t: str(ipaddress.IPv4Network((t[0] >> (32 - t[1]) << (32 - t[1]) if t[1] else 0, t[1])))),
    st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)).map(
        lambda t: str(ipaddress.IPv6Network((t[0] >> (128 - t[1]) << (128 - t[1]) if t[1] else 0, t[1])))),
    st.sampled_from(["10.0.0.1", "10.0.0.0/255.0.0.0", "010.0.0.0/8", "10.0.0.0/08", " 10.0.0.0/8 ",
                     "1.2.3/24", "x/3", "", "/24", "10.0.0.0/", "::ffff:1.2.3.0/120", "fe80::/10",
                     "2001:db8::/32", "2001:DB8::/32", "1.2.3.4/-1"]),
)


def _reference(t: str):
    try:
        return ipaddress.ip_network(t.strip(), strict=True)
    except ValueError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(_text, max_size=30))
def test_parse_agrees_with_ipaddress(texts):
    nets, ok = Networks.parse(texts)
    assert len(nets) == len(texts) == len(ok)
    for i, t in enumerate(texts):
        ref = _reference(t)
        if ok[i]:
            # decoded here: exactly what ipaddress makes of it
            assert ref is not None, t
            assert nets[i] == ref, t
        # anything ipaddress rejects is never decoded here
        if ref is None:
            assert not ok[i], t


@settings(max_examples=200, deadline=None)
@given(st.lists(_text, max_size=20))
def test_from_texts_equals_ipaddress_or_raises(texts):
    refs = [_reference(t) for t in texts]
    if any(r is None for r in refs):
        with pytest.raises(ValueError):
            Networks.from_texts(texts)
        return
    nets = Networks.from_texts(texts)
    assert nets == refs
    assert [str(n) for n in nets] == [str(r) for r in refs]
    assert pickle.loads(pickle.dumps(nets)) == nets


def test_recipient_cidrs_compact_and_errors_name_the_value():
    r = recipient_from_dict({"name": "Owner", "email": "a@example.net",
                             "cidrs": ["192.0.2.0/24", "10.0.0.1", "2001:db8::/32", "10.0.0.0/255.0.0.0"]})
    assert isinstance(r.cidrs, Networks)
    assert r.cidrs == [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("10.0.0.1/32"),
                       ipaddress.ip_network("2001:db8::/32"), ipaddress.ip_network("10.0.0.0/8")]
    with pytest.raises(ConfigError, match=r"'10.0.0.1/8'.*host bits set: did you mean 10.0.0.0/8"):
        recipient_from_dict({"name": "O", "email": "a@example.net", "cidrs": ["192.0.2.0/24", "10.0.0.1/8"]})
    with pytest.raises(ConfigError, match="whole address space"):
        recipient_from_dict({"name": "O", "email": "a@example.net", "cidrs": ["::/0"]})
    # the first bad value in list order is the one named
    with pytest.raises(ConfigError, match="'bogus'"):
        recipient_from_dict({"name": "O", "email": "a@example.net", "cidrs": ["bogus", "0.0.0.0/0"]})


def test_router_same_assignment_from_networks_and_lists():
    import random

    import numpy as np
    import pyarrow as pa

    from herald.constituency.recipients import Recipient
    from herald.route import Router
    from herald.schema import default_registry

    rnd = random.Random(3)
    rtype = default_registry().get("scan_http")
    lists = []
    for i in range(40):
        nets = []
        for _ in range(rnd.randint(0, 30)):
            if rnd.random() < 0.8:
                plen = rnd.randint(8, 32)
                nets.append(ipaddress.IPv4Network((rnd.getrandbits(32) >> (32 - plen) << (32 - plen), plen)))
            else:
                plen = rnd.randint(16, 128)
                nets.append(ipaddress.IPv6Network((rnd.getrandbits(128) >> (128 - plen) << (128 - plen), plen)))
        lists.append(Recipient(name=f"r{i}", email=f"r{i}@example.net", cidrs=nets))
    compact = [Recipient(name=r.name, email=r.email, cidrs=Networks.from_networks(r.cidrs)) for r in lists]
    ips = []
    for r in lists:
        for n in r.cidrs[:5]:
            ips.append(str(n.network_address + rnd.randint(0, n.num_addresses - 1)))
    ips += [str(ipaddress.IPv4Address(rnd.getrandbits(32))) for _ in range(200)]
    table = pa.table({"ip": pa.array(ips, pa.string())})
    a = Router(lists).route(table, rtype)
    b = Router(compact).route(table, rtype)
    assert len(a.event) > 100
    assert np.array_equal(a.event, b.event) and np.array_equal(a.recipient, b.recipient)
