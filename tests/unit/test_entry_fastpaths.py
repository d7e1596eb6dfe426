"""The fast paths of entry construction (flows/fields.py) give exactly what the plain way gives.

- canon_match (cache lookups in C, a plan per match shape) against _canon_match_ref
  (each field through _canon_field_slow, prerequisites added, sorted), on random
  canonical matches, messy spellings of them, matches missing the prerequisites
  they imply, and matches naming a field twice; with cold caches and warm ones;
- a MAC already lower case with ':' is taken as it is (no parse), and any other
  spelling of a MAC goes the slow way;
- equal fields from different producers come back as one shared tuple (the cache
  interns them), and an entry built from canonical parts keeps them.

Run:  .venv/bin/python -m pytest tests/unit/test_entry_fastpaths.py -q
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows import fields
from flows.entry import FlowEntry
from tests.unit.test_ofcodec import entries, messy

CASES = 150                 # per property; bounded for make test's budget


def _cold():
    fields._FIELD_CACHE.clear()
    fields._PLAN_CACHE.clear()


def _same_outcome(match):
    """canon_match and the reference agree: the same tuple, or both refuse."""
    try:
        want = fields._canon_match_ref(match)
    except fields.EntryError:
        with pytest.raises(fields.EntryError):
            fields.canon_match(match)
        return
    got = fields.canon_match(match)
    assert got == want and type(got) is tuple
    assert all(type(f) is tuple for f in got)


@settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_canon_match_is_the_reference(data):
    e = data.draw(entries())
    match, _acts = data.draw(messy(e))
    # drop fields some others imply (eth_type, ip_proto, icmpv6_type), or name one twice
    how = data.draw(st.sampled_from(["as is", "drop implied", "twice"]))
    if how == "drop implied":
        match = tuple(f for f in match if f[0] not in ("eth_type", "ip_proto", "icmpv6_type"))
    elif how == "twice" and match:
        match = match + (data.draw(st.sampled_from(match)),)
    for cold in (True, False, False):      # a miss, then hits (the plan and the fields cached)
        if cold:
            _cold()
        _same_outcome(e.match)
        _same_outcome(match)
        _same_outcome(list(match))
    assert fields.canon_match(e.match) is e.match      # canonical and ours: kept as it is


@settings(max_examples=CASES, deadline=None)
@given(st.integers(0, (1 << 48) - 1), st.lists(st.booleans(), min_size=12, max_size=12),
       st.sampled_from([":", "-"]), st.sampled_from(["eth_src", "eth_dst", "arp_sha", "nd_tll"]))
def test_mac_taken_as_is_only_when_canonical(x, upper, sep, name):
    canon = x.to_bytes(6, "big").hex(":")
    digits = [c.upper() if u else c for c, u in zip(canon.replace(":", ""), upper)]
    text = sep.join("".join(digits[i:i + 2]) for i in range(0, 12, 2))
    _cold()
    f = (name, text, None)
    assert fields.canon_field(f) == fields._canon_field_slow(f) == (name, canon, None)
    assert fields._is_mac(text) == (text == canon)
    if text == canon:
        assert fields.canon_field(f) is f


def test_equal_fields_are_shared_and_bad_ones_still_refused():
    _cold()
    a = FlowEntry(0, 1, (("eth_dst", "02:00:00:00:00:01", None), ("reg6", 7, None)), ())
    b = FlowEntry(1, 2, (("eth_dst", "02:00:00:00:00:" + "01", None), ("reg6", 3 + 4, None)), ())
    assert a.match == b.match and all(x is y for x, y in zip(a.match, b.match))
    for bad in [(("reg6", 1 << 32, None),), (("eth_dst", "02:00:00:00:00", None),),
                (("reg6", 1, None), ("reg6", 1, None))]:
        for _ in range(2):                 # a refusal is never cached as an answer
            with pytest.raises(fields.EntryError):
                FlowEntry(0, 1, bad, ())
