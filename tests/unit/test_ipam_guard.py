"""Address ranges answered from what is used, and the body guards, without a server."""
import pytest

from model import ipam
from rest import guard


def test_free_runs_are_the_gaps_between_used_addresses():
    lo, hi = ipam.ip_int("10.0.0.1"), ipam.ip_int("10.255.255.254")
    used = {ipam.ip_int(a) for a in ("10.0.0.1", "10.0.0.2", "10.0.0.9", "10.255.255.254", "11.0.0.1")}
    assert ipam.runs_text(ipam.free_runs(lo, hi, used)) == "10.0.0.3-10.0.0.8, 10.0.0.10-10.255.255.253"
    assert ipam.free_runs(5, 5, {5}) == []
    assert ipam.free_runs(5, 9, set()) == [(5, 9)]
    # the same answer as walking the range, on a small one
    small_used = {3, 4, 8, 12}
    walked = ipam.runs(a for a in range(1, 13) if a not in small_used)
    assert ipam.free_runs(1, 12, small_used) == walked


@pytest.mark.parametrize("doc,deep", [
    (b"[" * 33 + b"]" * 33, True),
    (b"[" * 32 + b"]" * 32, False),
    (b'{"a": "' + b"[" * 100 + b'"}', False),               # brackets inside a string
    (b'{"a": "\\"' + b"{" * 100 + b'"}', False),            # after an escaped quote, still a string
])
def test_depth_is_counted_outside_strings(doc, deep):
    assert guard._depth_exceeds(doc, guard.MAX_DEPTH) is deep


def test_origin_must_be_this_server():
    env = {"HTTP_HOST": "127.0.0.1:9999", "wsgi.url_scheme": "http"}
    guard.check_origin(dict(env, HTTP_ORIGIN="http://127.0.0.1:9999"), "POST")
    guard.check_origin(dict(env, HTTP_ORIGIN="http://evil.example"), "GET")
    for origin in ("http://127.0.0.1:9998", "https://127.0.0.1:9999", "http://localhost:9999", "null"):
        with pytest.raises(guard.HTTPError) as exc:
            guard.check_origin(dict(env, HTTP_ORIGIN=origin), "DELETE")
        assert exc.value.status == 403 and "Origin" in str(exc.value)
