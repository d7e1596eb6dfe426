"""Docker's pool ids and the Docker network netplugin wants for an IPv4-only and a dual-stack
netweave network (the driver's calls themselves run against a real dockerd in
tests/e2e/test_docker.py)."""
import pytest

from agent import docker_plugin as dp

V4 = {"tenantName": "default", "networkName": "n", "subnet": "10.1.6.0/24", "gateway": "10.1.6.1",
      "encap": "vxlan"}
DUAL = dict(V4, ipv6Subnet="fd00:15::/64", ipv6Gateway="fd00:15::1")


def test_pool_ids_name_the_family():
    assert dp.parse_pool_id("t/n/g") == ["t", "n", "g", False]
    assert dp.parse_pool_id("t/n//v6") == ["t", "n", "", True]
    for bad in ("t/n", "t/n/g/v4", "/n/g", "", None):
        with pytest.raises(dp.DriverError, match="not a netweave pool"):
            dp.parse_pool_id(bad)


def test_endpoint_ipv6_with_prefix_length():
    assert dp.with_len6({"ipAddress": ["10.1.6.2", "fd00:15::2"], "prefixLen6": 64}) == "fd00:15::2/64"
    assert dp.with_len6({"ipAddress": ["10.1.6.2", ""]}) == ""
    assert dp.with_len6({"ipAddress": ["10.1.6.2"]}) == ""
    with pytest.raises(dp.DriverError, match="not an IPv6 address"):
        dp._ip6("10.1.6.2")


def test_dual_stack_network_is_made_with_ipv6():
    nets = dp.DockerNetworks(None, None, "h1")
    v4, dual = nets._spec(V4, "n", ""), nets._spec(DUAL, "n", "")
    assert v4["EnableIPv6"] is False and len(v4["IPAM"]["Config"]) == 1
    assert dual["EnableIPv6"] is True
    assert dual["IPAM"]["Config"] == [{"Subnet": "10.1.6.0/24", "Gateway": "10.1.6.1"},
                                      {"Subnet": "fd00:15::/64", "Gateway": "fd00:15::1"}]
    # what dockerd reports back for it is the same network; one made by an older netplugin
    # (without --ipv6) is not, and is made again
    cur = {"Options": dual["Options"], "EnableIPv6": True, "IPAM": dual["IPAM"]}
    assert nets._same(cur, dual)
    assert not nets._same(dict(cur, EnableIPv6=False), dual)
    assert not nets._same({"Options": v4["Options"], "EnableIPv6": False, "IPAM": v4["IPAM"]}, dual)
    assert nets._same({"Options": v4["Options"], "IPAM": v4["IPAM"]}, v4)
