"""model.ipam: Subnet.overlaps (integer bounds, cached parse) answers as ipaddress does."""
import itertools

from model.ipam import parse_subnet

SUBNETS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.3.0/24", "10.1.2.128/25", "10.1.2.0/25",
           "192.168.0.0/16", "10.1.2.0/31", "10.1.2.4-10.1.2.9/24", "10.255.255.254/31", "11.0.0.0/8"]


def test_overlaps_agrees_with_ipaddress():
    for a, b in itertools.product(SUBNETS, SUBNETS):
        assert parse_subnet(a).overlaps(parse_subnet(b)) == parse_subnet(a).network.overlaps(
            parse_subnet(b).network), (a, b)


def test_refused_text_is_refused_every_time():
    for _ in range(2):                       # an error is not cached as a result
        try:
            parse_subnet("10.1.2.20-10.1.2.10/24")
        except ValueError:
            continue
        raise AssertionError("a range ending before it starts was accepted")
