"""controller.fabric's snapshot mapping of the dual-stack fields (the contract
with the model: a network's ipv6Subnet/ipv6Gateway, an endpoint's ipAddress[1])."""
from controller.fabric import _v6_addr, _v6_net, endpoint_of_record


def record(addrs):
    return {"endpointID": "e1", "tenantName": "t", "networkName": "n", "groupName": "",
            "ipAddress": addrs, "macAddress": "02:00:00:00:00:01", "homingHost": "h1",
            "intfName": "vport1"}


def test_endpoint_ip6_is_the_second_address_in_canonical_form():
    assert endpoint_of_record(record(["10.0.0.2", "2001:DB8:1:0::2"])).ip6 == "2001:db8:1::2"
    assert endpoint_of_record(record(["10.0.0.2", "2001:db8:1::2/64"])).ip6 == "2001:db8:1::2"


def test_endpoint_without_v6_has_empty_ip6():
    assert endpoint_of_record(record(["10.0.0.2"])).ip6 == ""
    assert endpoint_of_record(record(["10.0.0.2", ""])).ip6 == ""


def test_network_v6_fields_canonical():
    assert _v6_net("2001:0db8:0001:0000::/64") == "2001:db8:1::/64"
    assert _v6_net("") == _v6_net(None) == ""
    assert _v6_addr("2001:db8:1:0:0:0:0:1") == "2001:db8:1::1"
