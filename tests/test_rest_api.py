"""The REST API over real HTTP against a real netmaster process: CRUD of every
object, Contiv's semantic rules, and bad input with exact status and message."""
import pytest

NET = {"encap": "vxlan", "gateway": "10.1.2.1", "networkName": "contiv-net", "nwType": "data",
       "subnet": "10.1.2.0/24", "tenantName": "default", "link-sets": {}, "links": {"Tenant": {}}}


def ok(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def refused(r, status, message):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body == {"error": message}, body
    assert r.reason == message[:400]          # Contiv's client shows only the status line
    return body


def test_defaults_exist_from_first_start(netmaster):
    assert ok(netmaster.get("/api/v1/tenants/default/"))["tenantName"] == "default"
    g = ok(netmaster.get("/api/v1/globals/global/"))
    assert (g["fwdMode"], g["arpMode"], g["vlans"], g["vxlans"], g["pvtSubnet"]) == \
        ("bridge", "proxy", "1-4094", "1-10000", "172.19.0.0/16")


def test_network_lifecycle_and_overlap_rules(netmaster):
    nm = netmaster
    created = ok(nm.post("/api/v1/networks/default:contiv-net/", NET))
    assert created["key"] == "default:contiv-net"
    assert created["links"] == {"Tenant": {"type": "tenant", "key": "default"}}
    assert [n["key"] for n in ok(nm.get("/api/v1/networks/"))] == ["default:contiv-net"]
    # without the trailing slash too
    assert ok(nm.get("/api/v1/networks/default:contiv-net"))["subnet"] == "10.1.2.0/24"
    ins = ok(nm.get("/api/v1/inspect/networks/default:contiv-net/"))
    assert ins["Config"]["networkName"] == "contiv-net"
    assert ins["Oper"]["pktTag"] == 1 and ins["Oper"]["externalPktTag"] == 1
    assert ins["Oper"]["numEndpoints"] == 0
    assert ins["Oper"]["allocatedIPAddresses"] == "10.1.2.1"
    assert ins["Oper"]["availableIPAddresses"] == "10.1.2.2-10.1.2.254"
    # same name and subnet in another tenant: accepted
    ok(nm.post("/api/v1/tenants/blue/", {"tenantName": "blue", "link-sets": {}}))
    ok(nm.post("/api/v1/networks/blue:contiv-net/", dict(NET, tenantName="blue")))
    assert ok(nm.get("/api/v1/inspect/networks/blue:contiv-net/"))["Oper"]["pktTag"] == 2
    # an overlapping subnet in the same tenant: refused, nothing stored
    refused(nm.post("/api/v1/networks/default:other/", dict(NET, networkName="other", subnet="10.1.0.0/16")),
            409, "subnet: 10.1.0.0/16 overlaps network contiv-net (10.1.2.0/24) in tenant default")
    refused(nm.get("/api/v1/networks/default:other/"), 404, "network default:other not found")
    # identical re-POST succeeds and changes nothing; a changed immutable field is a 409
    assert ok(nm.post("/api/v1/networks/default:contiv-net/", NET)) == created
    refused(nm.post("/api/v1/networks/default:contiv-net/", dict(NET, gateway="10.1.2.254")),
            409, "gateway: cannot change after the network is created (is '10.1.2.1', asked '10.1.2.254')")
    # tenant in use
    refused(nm.delete("/api/v1/tenants/blue/"), 409, "tenant blue: cannot delete, it has 1 networks")
    assert ok(nm.delete("/api/v1/networks/blue:contiv-net/")) == "blue:contiv-net"
    assert ok(nm.delete("/api/v1/tenants/blue/")) == "blue"
    refused(nm.delete("/api/v1/tenants/blue/"), 404, "tenant blue not found")


def test_pkt_tags_allocated_without_collision_and_released(netmaster):
    nm = netmaster
    ok(nm.post("/api/v1/networks/default:a/", dict(NET, networkName="a", subnet="10.2.0.0/24", gateway="",
                                                     pktTag=7)))
    refused(nm.post("/api/v1/networks/default:b/", dict(NET, networkName="b", subnet="10.3.0.0/24", gateway="",
                                                          pktTag=7)),
            409, "pktTag: vxlan 7 is already in use by network default:a")
    refused(nm.post("/api/v1/networks/default:b/", dict(NET, networkName="b", subnet="10.3.0.0/24", gateway="",
                                                          pktTag=20000)),
            400, "pktTag: 20000 is outside the global vxlans range 1-10000")
    ok(nm.post("/api/v1/networks/default:v/", dict(NET, networkName="v", subnet="10.4.0.0/24", gateway="",
                                                     encap="vlan", pktTag=7)))   # vlan 7 is another space
    ok(nm.delete("/api/v1/networks/default:a/"))
    ok(nm.post("/api/v1/networks/default:b/", dict(NET, networkName="b", subnet="10.3.0.0/24", gateway="",
                                                     pktTag=7)))
    g = ok(nm.get("/api/v1/inspect/globals/global/"))["Oper"]
    assert g["vxlansInUse"] == "7" and g["vlansInUse"] == "7" and g["numNetworks"] == 2


@pytest.mark.parametrize("body,status,message", [
    (dict(NET, subnet="10.1.2.0/33"), 400,
     "subnet: 10.1.2.0/33 is not a valid CIDR (a.b.c.d/len or a.b.c.d-e.f.g.h/len, len 1-31)"),
    (dict(NET, gateway="10.9.9.1"), 400, "gateway: 10.9.9.1 is not a host address inside 10.1.2.0/24"),
    (dict(NET, encap="gre"), 400, "encap: gre is not vlan or vxlan"),
    (dict(NET, pktTag="5"), 400, "pktTag: expected an integer, got '5'"),
    (dict(NET, pktTag=16777217), 400, "pktTag: 16777217 is above the maximum 16777216"),
    ({k: v for k, v in NET.items() if k != "subnet"}, 400, "subnet: is required"),
    (dict(NET, networkName="other"), 400, "networkName: the body says 'other' but the path says 'contiv-net'"),
    (dict(NET, tenantName="nosuch"), 400, "tenantName: the body says 'nosuch' but the path says 'default'"),
    (dict(NET, cfgdTag="x" * 129), 400, "cfgdTag: longer than 128 characters"),
    (dict(NET, subnet="10.0.0.0/7"), 400, "subnet: /7 is too large (8 to 31)"),
    (dict(NET, ipv6Subnet="2001:db8::/129"), 400, "ipv6Subnet: 2001:db8::/129 is not empty or a valid IPv6 CIDR"),
    (dict(NET, ipv6Subnet="2001:db8::/48"), 400, "ipv6Subnet: /48 is outside /64 to /126"),
    (dict(NET, ipv6Subnet="2001:db8::/127"), 400, "ipv6Subnet: /127 is outside /64 to /126"),
    (dict(NET, ipv6Subnet="fe80::/64"), 400, "ipv6Subnet: fe80::/64 is a link-local, multicast or "
     "loopback range"),
    (dict(NET, ipv6Gateway="2001:db8::1"), 400, "ipv6Gateway: needs an ipv6Subnet"),
    (dict(NET, ipv6Subnet="2001:db8::/64", ipv6Gateway="2001:db9::1"), 400,
     "ipv6Gateway: 2001:db9::1 is not a host address inside 2001:db8::/64"),
    (dict(NET, ipv6Subnet="2001:db8::/64", ipv6Gateway="2001:db8::"), 400,
     "ipv6Gateway: 2001:db8:: is not a host address inside 2001:db8::/64"),
])
def test_network_bad_input(shared_netmaster, body, status, message):
    refused(shared_netmaster.post("/api/v1/networks/default:contiv-net/", body), status, message)
    refused(shared_netmaster.get("/api/v1/networks/default:contiv-net/"), 404, "network default:contiv-net not found")


@pytest.mark.parametrize("path,data,status,message", [
    ("/api/v1/networks/default:n1/", b"{not json", 400,
     "body: malformed JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
    ("/api/v1/networks/default:n1/", b"[1,2]", 400, "body: expected a JSON object, got list"),
    ("/api/v1/nosuch/x/", b"{}", 404,
     "collection nosuch: unknown (known: appProfiles, endpointGroups, endpoints, globals, hosts, netprofiles, "
     "networks, policys, rules, serviceLBs, tenants)"),
    ("/api/v1/networks/just-one-part/", b"{}", 400, "key: 'just-one-part' must be tenantName:networkName (2 parts)"),
    ("/api/v1/networks/default:n1/", b"{\"subnet\": \"" + b"1" * (1 << 20) + b"\"}", 413,
     "body: larger than 1048576 bytes"),
    ("/api/v1/tenants/bad_name/", b"{}", 400,
     "tenantName: bad_name is not a valid name (letters, digits, '-' and '.', not starting or ending with '-')"),
    ("/api/v1/networks/nosuch:n1/", b'{"subnet": "10.1.0.0/24"}', 404, "tenantName: tenant nosuch does not exist"),
    ("/api/v1/rules/default:nopol:1/", b'{"direction": "in", "action": "allow"}', 404,
     "policyName: policy default:nopol does not exist"),
    ("/api/v1/globals/global/", b'{"vlans": "10-5000"}', 400,
     "vlans: 10-5000 must be MIN-MAX with 1 <= MIN <= MAX <= 4094"),
    ("/api/v1/endpoints/e1/", b'{"tenantName": "default", "networkName": "x", "host": "h", "intfName": "i"}', 404,
     "networkName: neither a network nor an endpoint group default:x exists"),
])
def test_bad_requests(shared_netmaster, path, data, status, message):
    refused(shared_netmaster.post(path, data=data), status, message)


def test_groups_policies_rules(netmaster):
    nm = netmaster
    ok(nm.post("/api/v1/networks/default:contiv-net/", NET))
    refused(nm.post("/api/v1/endpointGroups/default:g/", {"networkName": "contiv-net", "policies": ["nope"]}),
            404, "policies: policy default:nope does not exist")
    refused(nm.post("/api/v1/endpointGroups/default:g/", {"networkName": "nonet"}),
            404, "networkName: network default:nonet does not exist")
    ok(nm.post("/api/v1/policys/default:db-policy/", {"policyName": "db-policy", "tenantName": "default",
                                                      "link-sets": {}, "links": {"Tenant": {}}}))
    r1 = ok(nm.post("/api/v1/rules/default:db-policy:1/", {
        "action": "deny", "direction": "in", "policyName": "db-policy", "priority": 1, "protocol": "tcp",
        "ruleId": "1", "tenantName": "default", "link-sets": {}, "links": {"MatchEndpointGroup": {}}}))
    assert r1["link-sets"] == {"Policies": {"default:db-policy": {"type": "policy", "key": "default:db-policy"}}}
    ok(nm.post("/api/v1/rules/default:db-policy:2/", {
        "action": "allow", "direction": "in", "policyName": "db-policy", "port": 8888, "priority": 10,
        "protocol": "tcp", "ruleId": "2", "tenantName": "default"}))
    refused(nm.post("/api/v1/rules/default:db-policy:2/", {
        "action": "deny", "direction": "in", "port": 8888, "priority": 10, "protocol": "tcp"}),
        409, "action: cannot change after the rule is created (is 'allow', asked 'deny')")
    refused(nm.post("/api/v1/rules/default:db-policy:3/", {"action": "allow", "direction": "in",
                                                           "toEndpointGroup": "x"}),
            400, "toEndpointGroup: not allowed in an 'in' rule (use from* fields)")
    refused(nm.post("/api/v1/rules/default:db-policy:3/", {"action": "allow", "direction": "in",
                                                           "fromEndpointGroup": "app-group"}),
            404, "fromEndpointGroup: endpointGroup default:app-group does not exist")
    refused(nm.post("/api/v1/rules/default:db-policy:3/", {"action": "allow", "direction": "in", "port": 80}),
            400, "port: needs protocol tcp or udp (protocol is 'any')")
    refused(nm.post("/api/v1/rules/default:db-policy:3/", {"action": "allow", "direction": "in", "priority": 101}),
            400, "priority: 101 is above the maximum 100")
    # enableLogging (netweave's own field): a JSON boolean, on deny rules, and it may change later
    refused(nm.post("/api/v1/rules/default:db-policy:1/", dict(r1, enableLogging="yes")),
            400, "enableLogging: expected true or false, got 'yes'")
    refused(nm.post("/api/v1/rules/default:db-policy:1/", dict(r1, enableLogging=1)),
            400, "enableLogging: expected true or false, got 1")
    refused(nm.post("/api/v1/rules/default:db-policy:2/", {
        "action": "allow", "direction": "in", "port": 8888, "priority": 10, "protocol": "tcp",
        "enableLogging": True}), 400, "enableLogging: only deny rules are logged (action is 'allow')")
    assert "enableLogging" not in r1                      # false is left out, as Go's omitempty does
    assert ok(nm.post("/api/v1/rules/default:db-policy:1/", dict(r1, enableLogging=True)))["enableLogging"] is True
    assert ok(nm.get("/api/v1/rules/default:db-policy:1/"))["enableLogging"] is True
    assert "enableLogging" not in ok(nm.post("/api/v1/rules/default:db-policy:1/", dict(r1, enableLogging=False)))
    spec = ok(nm.get("/api/v1/openapi.json"))["components"]["schemas"]["Rule"]["properties"]["enableLogging"]
    assert spec["type"] == "boolean" and spec["default"] is False
    # priority 0 means 1 (Contiv)
    assert ok(nm.post("/api/v1/rules/default:db-policy:4/", {"action": "allow", "direction": "out",
                                                              "priority": 0}))["priority"] == 1
    g = ok(nm.post("/api/v1/endpointGroups/default:db-group/", {
        "groupName": "db-group", "networkName": "contiv-net", "policies": ["db-policy"], "tenantName": "default",
        "link-sets": {}, "links": {"AppProfile": {}, "NetProfile": {}, "Network": {}, "Tenant": {}}}))
    assert g["links"]["Network"] == {"type": "network", "key": "default:contiv-net"}
    refused(nm.post("/api/v1/networks/default:db-group/", dict(NET, networkName="db-group", subnet="10.9.0.0/24",
                                                                gateway="")),
            409, "networkName: an endpoint group default:db-group already has this name")
    refused(nm.delete("/api/v1/policys/default:db-policy/"), 409,
            "policy default:db-policy: cannot delete, it is attached to endpoint groups db-group")
    refused(nm.delete("/api/v1/networks/default:contiv-net/"), 409,
            "network default:contiv-net: cannot delete, it has 1 endpoint groups (db-group)")
    refused(nm.post("/api/v1/endpointGroups/default:db-group/", {"networkName": "contiv-net", "ipPool": "10.1.2.5"}),
            409, "ipPool: cannot change after the endpointGroup is created (is '', asked '10.1.2.5')")
    # detaching the policy is an allowed update; then the policy and its rules can go
    ok(nm.post("/api/v1/endpointGroups/default:db-group/", {"networkName": "contiv-net", "policies": []}))
    ok(nm.delete("/api/v1/policys/default:db-policy/"))
    assert ok(nm.get("/api/v1/rules/")) == []
    ok(nm.delete("/api/v1/endpointGroups/default:db-group/"))
    ok(nm.delete("/api/v1/networks/default:contiv-net/"))


def test_netprofile_appprofile_global(netmaster):
    nm = netmaster
    ok(nm.post("/api/v1/networks/default:contiv-net/", NET))
    p = ok(nm.post("/api/v1/netprofiles/default:prof1/", {"DSCP": 6, "bandwidth": "10mbps", "profileName": "prof1",
                                                           "tenantName": "default", "link-sets": {},
                                                           "links": {"Tenant": {}}}))
    assert p["DSCP"] == 6
    refused(nm.post("/api/v1/netprofiles/default:prof2/", {"DSCP": 64}), 400, "DSCP: 64 is above the maximum 63")
    refused(nm.post("/api/v1/netprofiles/default:prof2/", {"bandwidth": "fast"}), 400,
            "bandwidth: fast is not a rate such as 10mbps, 100 kbps or 1gbps")
    refused(nm.post("/api/v1/netprofiles/default:prof2/", {"burst": 1}), 400, "burst: must be 0 or at least 2")
    ok(nm.post("/api/v1/endpointGroups/default:web/", {"networkName": "contiv-net", "netProfile": "prof1"}))
    ok(nm.post("/api/v1/endpointGroups/default:db-group/", {"networkName": "contiv-net"}))
    ap = ok(nm.post("/api/v1/appProfiles/default:ap1/", {"appProfileName": "ap1", "endpointGroups": ["db-group", "web"],
                                                          "tenantName": "default", "link-sets": {},
                                                          "links": {"Tenant": {}}}))
    assert sorted(ap["link-sets"]["EndpointGroups"]) == ["default:db-group", "default:web"]
    refused(nm.delete("/api/v1/netprofiles/default:prof1/"), 409,
            "netprofile default:prof1: cannot delete, endpoint groups web use it")
    refused(nm.delete("/api/v1/endpointGroups/default:web/"), 409,
            "endpointGroup default:web: cannot delete, app profile ap1 uses it")
    ok(nm.post("/api/v1/appProfiles/default:ap1/", {"endpointGroups": ["db-group"]}))
    ok(nm.delete("/api/v1/endpointGroups/default:web/"))
    ok(nm.delete("/api/v1/appProfiles/default:ap1/"))
    ok(nm.delete("/api/v1/netprofiles/default:prof1/"))
    # global: netctl's GET-modify-POST
    g = ok(nm.get("/api/v1/globals/global/"))
    refused(nm.post("/api/v1/globals/global/", dict(g, fwdMode="routing")), 409,
            "fwdMode: cannot change while 0 vlans and 1 vxlans are in use")
    refused(nm.post("/api/v1/globals/global/", dict(g, vxlans="5-10")), 409,
            "vxlans: the new range 5-10 leaves out vxlan tags in use 1")
    assert ok(nm.post("/api/v1/globals/global/", dict(g, arpMode="flood")))["arpMode"] == "flood"
    refused(nm.delete("/api/v1/globals/global/"), 409, "global: cannot be deleted; POST it to change its settings")


def test_endpoint_allocation_and_oper(netmaster):
    nm = netmaster
    ok(nm.post("/api/v1/networks/default:small/", dict(NET, networkName="small", subnet="10.5.0.0/29",
                                                         gateway="10.5.0.1")))
    ok(nm.post("/api/v1/endpointGroups/default:db-group/", {"networkName": "small"}))
    ok(nm.post("/api/v1/hosts/h1/", {"vtepIP": "10.99.0.1", "dpid": "00000000000000a1"}))
    body = {"tenantName": "default", "networkName": "db-group", "host": "h1", "intfName": "nwep1",
            "containerID": "c0ffee"}
    ep = ok(nm.post("/api/v1/endpoints/ep1/", body))
    assert ep["ipAddress"] == ["10.5.0.2", ""] and ep["macAddress"] == "02:4e:0a:05:00:02"
    assert (ep["networkName"], ep["groupName"], ep["gateway"], ep["prefixLen"], ep["mtu"]) == \
        ("small", "db-group", "10.5.0.1", 29, 1450)
    assert ok(nm.post("/api/v1/endpoints/ep1/", body)) == ep          # CNI ADD retried: same allocation
    for i in range(2, 6):
        ok(nm.post(f"/api/v1/endpoints/ep{i}/", dict(body, networkName="small", groupName="")))
    refused(nm.post("/api/v1/endpoints/ep6/", dict(body, networkName="small")), 409,
            "ipAddress: no free address left in the subnet 10.5.0.0/29 of network default:small")
    oper = ok(nm.get("/api/v1/inspect/networks/default:small/"))["Oper"]
    assert oper["numEndpoints"] == 5 and oper["allocatedIPAddresses"] == "10.5.0.1-10.5.0.6"
    assert oper["availableIPAddresses"] == ""
    gop = ok(nm.get("/api/v1/inspect/endpointGroups/default:db-group/"))["Oper"]
    assert gop["numEndpoints"] == 1 and gop["endpoints"][0]["endpointID"] == "ep1"
    top = ok(nm.get("/api/v1/inspect/tenants/default/"))["Oper"]
    assert (top["totalNetworks"], top["totalEPGs"], top["totalEndpoints"]) == (1, 1, 5)
    ins = ok(nm.get("/api/v1/inspect/endpoints/c0ff/"))                # Contiv: a substring of the container id
    assert ins["Oper"]["endpointID"] == "ep1" and ins["Oper"]["homingHost"] == "h1"
    assert ins["Oper"]["vtepIP"] == "10.99.0.1"
    refused(nm.delete("/api/v1/endpointGroups/default:db-group/"), 409,
            "endpointGroup default:db-group: cannot delete, it has 1 active endpoints")
    refused(nm.delete("/api/v1/networks/default:small/"), 409,
            "network default:small: cannot delete, it has 1 endpoint groups (db-group)")
    ok(nm.delete("/api/v1/endpoints/ep3/"))
    refused(nm.delete("/api/v1/endpoints/ep3/"), 404, "endpoint ep3 not found")
    assert ok(nm.post("/api/v1/endpoints/ep7/", dict(body, groupName="")))["ipAddress"][0] == "10.5.0.4"
    hosts = ok(nm.get("/api/v1/hosts/"))
    assert hosts[0]["hostLabel"] == "h1" and hosts[0]["state"] == "up" and hosts[0]["numEndpoints"] == 5


def test_endpoint_requested_address_mac_and_names(netmaster):
    """What a CNI runtime may ask for (CNI_ARGS IP/MAC, runtimeConfig ips/mac), each refusal
    naming the field and the reason, and the names kept in the record."""
    nm = netmaster
    ok(nm.post("/api/v1/networks/default:rq/", dict(NET, networkName="rq", subnet="10.6.0.0/24",
                                                      gateway="10.6.0.1")))
    ok(nm.post("/api/v1/hosts/h1/", {"vtepIP": "10.99.0.1", "dpid": "00000000000000a1"}))
    body = {"tenantName": "default", "networkName": "rq", "host": "h1", "intfName": "nwrq1",
            "containerID": "c1", "containerName": "web-1", "podNamespace": "shop",
            "cniNetwork": "nw-rq"}
    ep = ok(nm.post("/api/v1/endpoints/rq1/", dict(body, ipAddress="10.6.0.77/24",
                                                   macAddress="02:AA:bb:cc:dd:01")))
    assert ep["ipAddress"][0] == "10.6.0.77" and ep["macAddress"] == "02:aa:bb:cc:dd:01"
    assert (ep["containerName"], ep["podNamespace"], ep["cniNetwork"]) == ("web-1", "shop", "nw-rq")
    assert ok(nm.post("/api/v1/endpoints/rq2/", dict(body, ipAddress="10.6.0.78")))["macAddress"] \
        == "02:4e:0a:06:00:4e"
    refused(nm.post("/api/v1/endpoints/rq3/", dict(body, ipAddress="10.9.9.9")), 400,
            "ipAddress: 10.9.9.9 is outside the subnet 10.6.0.0/24 of network default:rq")
    refused(nm.post("/api/v1/endpoints/rq3/", dict(body, ipAddress="10.6.0.9/16")), 400,
            "ipAddress: 10.6.0.9/16 has prefix length /16, the subnet 10.6.0.0/24 of network "
            "default:rq has /24")
    refused(nm.post("/api/v1/endpoints/rq3/", dict(body, ipAddress="10.6.0.77")), 409,
            "ipAddress: 10.6.0.77 is already taken in network default:rq (endpoint rq1)")
    refused(nm.post("/api/v1/endpoints/rq3/", dict(body, ipAddress="10.6.0.1")), 409,
            "ipAddress: 10.6.0.1 is the gateway of network default:rq")
    refused(nm.post("/api/v1/endpoints/rq3/", dict(body, ipAddress="10.6.0")), 400,
            "ipAddress: 10.6.0 is not empty or an IPv4 address (a.b.c.d or a.b.c.d/len)")
    refused(nm.post("/api/v1/endpoints/rq3/", dict(body, macAddress="02:aa:bb:cc:dd:01")), 409,
            "macAddress: 02:aa:bb:cc:dd:01 is already used in network default:rq (endpoint rq1)")
    refused(nm.post("/api/v1/endpoints/rq3/", dict(body, macAddress="01:00:5e:00:00:01")), 400,
            "macAddress: 01:00:5e:00:00:01 is a multicast address, an endpoint needs a unicast one")
    refused(nm.post("/api/v1/endpoints/rq3/", dict(body, macAddress="zz")), 400,
            "macAddress: zz is not empty or a MAC address (six hex pairs joined by ':')")
    assert {e["endpointID"] for e in ok(nm.get("/api/v1/endpoints/"))} == {"rq1", "rq2"}


def test_dual_stack_network_endpoints_and_rules(netmaster):
    """ipv6Subnet/ipv6Gateway stored canonical, checked like IPv4; endpoints get [v4, v6],
    asked-for IPv6 addresses are checked like IPv4 ones, and a refusal stores nothing."""
    nm = netmaster
    ds = dict(NET, networkName="ds", subnet="10.7.0.0/24", gateway="10.7.0.1",
              ipv6Subnet="2001:DB8:7:0::5/64")
    net = ok(nm.post("/api/v1/networks/default:ds/", ds))
    assert (net["ipv6Subnet"], net["ipv6Gateway"]) == ("2001:db8:7::/64", "2001:db8:7::1")
    assert ok(nm.post("/api/v1/networks/default:ds/", ds)) == net           # same, in any spelling
    refused(nm.post("/api/v1/networks/default:ds/", dict(ds, ipv6Gateway="2001:db8:7::2")), 409,
            "ipv6Gateway: cannot change after the network is created (is '2001:db8:7::1', "
            "asked '2001:db8:7::2')")
    refused(nm.post("/api/v1/networks/default:ds2/", dict(ds, networkName="ds2", subnet="10.8.0.0/24",
                                                          gateway="", ipv6Subnet="2001:db8:7::/96")),
            409, "ipv6Subnet: 2001:db8:7::/96 overlaps network ds (2001:db8:7::/64) in tenant default")
    ok(nm.post("/api/v1/tenants/blue/", {}))                                  # other tenants may overlap
    ok(nm.post("/api/v1/networks/blue:ds/", dict(ds, tenantName="blue")))
    ok(nm.post("/api/v1/networks/default:v4only/", dict(NET, networkName="v4only", subnet="10.9.0.0/24",
                                                          gateway="10.9.0.1")))
    ok(nm.post("/api/v1/hosts/h1/", {"vtepIP": "10.99.0.1", "dpid": "00000000000000a1"}))
    body = {"tenantName": "default", "networkName": "ds", "host": "h1", "intfName": "nwds1"}
    e1 = ok(nm.post("/api/v1/endpoints/d1/", body))
    assert e1["ipAddress"] == ["10.7.0.2", "2001:db8:7::2"]
    assert (e1["prefixLen6"], e1["gateway6"]) == (64, "2001:db8:7::1")
    e2 = ok(nm.post("/api/v1/endpoints/d2/", dict(body, ipv6Address="2001:db8:7:0:0:0:0:abcd/64")))
    assert e2["ipAddress"] == ["10.7.0.3", "2001:db8:7::abcd"]
    assert ok(nm.post("/api/v1/endpoints/d2/", dict(body, ipv6Address="2001:db8:7::abcd"))) == e2
    refused(nm.post("/api/v1/endpoints/d2/", dict(body, ipv6Address="2001:db8:7::abce")), 409,
            "ipv6Address: endpoint d2 already has 2001:db8:7::abcd")
    for ask, status, message in (
            ("2001:db8:8::1", 400, "ipv6Address: 2001:db8:8::1 is outside the ipv6Subnet "
                                   "2001:db8:7::/64 of network default:ds"),
            ("2001:db8:7::9/80", 400, "ipv6Address: 2001:db8:7::9/80 has prefix length /80, the "
                                      "ipv6Subnet 2001:db8:7::/64 of network default:ds has /64"),
            ("2001:db8:7::1", 409, "ipv6Address: 2001:db8:7::1 is the ipv6Gateway of network default:ds"),
            ("2001:db8:7::ABCD", 409, "ipv6Address: 2001:db8:7::abcd is already taken in network "
                                      "default:ds (endpoint d2)"),
            ("2001:db8:7::/64/1", 400, "ipv6Address: 2001:db8:7::/64/1 is not empty or an IPv6 address "
                                       "(addr or addr/len)")):
        refused(nm.post("/api/v1/endpoints/d3/", dict(body, ipv6Address=ask)), status, message)
    refused(nm.post("/api/v1/endpoints/d3/", dict(body, networkName="v4only", ipv6Address="2001:db8:7::9")),
            400, "ipv6Address: network default:v4only has no ipv6Subnet")
    # nothing half-stored by the refusals: the next endpoint gets the next address of each family
    e3 = ok(nm.post("/api/v1/endpoints/d3/", body))
    assert e3["ipAddress"] == ["10.7.0.4", "2001:db8:7::3"]
    assert ok(nm.post("/api/v1/endpoints/v4/", dict(body, networkName="v4only")))["ipAddress"] == ["10.9.0.2", ""]
    oper = ok(nm.get("/api/v1/inspect/networks/default:ds/"))["Oper"]
    assert oper["allocatedIPv6AddressesCount"] == 3
    assert oper["allocatedIPv6Addresses"] == "2001:db8:7::1-2001:db8:7::3, 2001:db8:7::abcd"
    assert oper["availableIPv6Addresses"] == ("2001:db8:7::4-2001:db8:7::abcc, "
                                              "2001:db8:7::abce-2001:db8:7:0:ffff:ffff:ffff:ffff")
    assert "allocatedIPv6Addresses" not in ok(nm.get("/api/v1/inspect/networks/default:v4only/"))["Oper"]
    ins = ok(nm.get("/api/v1/inspect/endpoints/d1/"))["Oper"]
    assert ins["ipAddress"] == ["10.7.0.2", "2001:db8:7::2"]
    # released with the endpoint: the lowest free is handed out again
    ok(nm.delete("/api/v1/endpoints/d1/"))
    assert ok(nm.post("/api/v1/endpoints/d4/", body))["ipAddress"] == ["10.7.0.2", "2001:db8:7::2"]
    # blue's overlapping subnet has its own addresses
    assert ok(nm.post("/api/v1/endpoints/b1/", dict(body, tenantName="blue")))["ipAddress"] == \
        ["10.7.0.2", "2001:db8:7::2"]
    # rules with IPv6 peers; a protocol of the other family is refused
    ok(nm.post("/api/v1/policys/default:p6/", {}))
    rule = {"direction": "in", "action": "deny", "fromIpAddress": "2001:db8:7::/64", "protocol": "tcp",
            "port": 22}
    ok(nm.post("/api/v1/rules/default:p6:1/", rule))
    ok(nm.post("/api/v1/rules/default:p6:2/", dict(rule, fromIpAddress="2001:db8:7::2", protocol="58",
                                                     port=0)))
    ok(nm.post("/api/v1/rules/default:p6:3/", {"direction": "out", "action": "allow",
                                                 "toIpAddress": "::/0"}))
    for r, message in (
            (dict(rule, protocol="1", port=0), "protocol: 1 is ICMP for IPv4, which never matches the "
                                               "IPv6 peer fromIpAddress 2001:db8:7::/64 (ICMPv6 is 58)"),
            (dict(rule, fromIpAddress="10.7.0.0/24", protocol="58", port=0),
             "protocol: 58 is ICMPv6, which never matches the IPv4 peer fromIpAddress 10.7.0.0/24"),
            (dict(rule, fromIpAddress=":1"), "fromIpAddress: :1 is not an IPv6 address or CIDR "
                                             "(At least 3 parts expected in ':1')"),
            (dict(rule, fromIpAddress="2001:db8::/129"),
             "fromIpAddress: 2001:db8::/129 is not empty, an IPv4 address, a.b.c.d/len, a.b.c.d-N, "
             "an IPv6 address or an IPv6 CIDR")):
        refused(nm.post("/api/v1/rules/default:p6:9/", r), 400, message)
    refused(nm.get("/api/v1/rules/default:p6:9/"), 404, "rule default:p6:9 not found")
    # service VIPs stay IPv4
    refused(nm.post("/api/v1/serviceLBs/default:s6/", dict(SVC, networkName="ds", ipAddress="2001:db8:7::50")),
            400, "ipAddress: 2001:db8:7::50 is IPv6; a service's VIP is IPv4 only (its load balancing "
                 "and NAT are)")


def test_openapi_is_the_validation_schema(shared_netmaster):
    spec = ok(shared_netmaster.get("/api/v1/openapi.json"))
    assert spec["openapi"].startswith("3.")
    net = spec["components"]["schemas"]["Network"]["properties"]
    assert net["pktTag"]["maximum"] == 16777216 and "pattern" in net["subnet"]
    assert "/api/v1/policys/{key}/" in spec["paths"]
    assert spec["components"]["schemas"]["Rule"]["properties"]["priority"] == {
        "type": "integer", "minimum": 1, "maximum": 100, "default": 1,
        "description": "1-100, higher wins; 0 is taken as 1", "x-immutable": True}


def test_version_info_and_unknown_paths(shared_netmaster):
    nm = shared_netmaster
    assert "Version" in ok(nm.get("/version"))
    assert {"local-ip", "leader-ip", "current-state", "netplugin-nodes", "netmaster-nodes"} <= set(ok(nm.get("/info")))
    refused(nm.get("/nothing/here"), 404, "no such path /nothing/here")
    r = nm.put("/api/v1/inspect/networks/default:x/", {})
    refused(r, 405, "method PUT is not allowed on /api/v1/inspect/networks/default:x/")


def test_netprofile_reaches_endpoint_records_and_host_version(netmaster):
    nm = netmaster
    ok(nm.post("/api/v1/networks/default:n/", {"subnet": "10.6.0.0/24"}))
    ok(nm.post("/api/v1/netprofiles/default:slow/", {"bandwidth": "10mbps", "burst": 64, "DSCP": 10}))
    ok(nm.post("/api/v1/endpointGroups/default:g/", {"networkName": "n", "netProfile": "slow"}))
    v0 = ok(nm.post("/api/v1/hosts/h1/", {"vtepIP": "10.99.0.1", "dpid": "00000000000000a1"}))["endpointsVersion"]
    ep = ok(nm.post("/api/v1/endpoints/e1/", {"tenantName": "default", "networkName": "g", "host": "h1",
                                              "intfName": "nwe1"}))
    assert (ep["ingressPolicingRate"], ep["ingressPolicingBurst"], ep["dscp"]) == (10000, 64, 10)
    v1 = ok(nm.get("/api/v1/hosts/h1/"))["endpointsVersion"]
    assert v1 != v0
    ok(nm.post("/api/v1/netprofiles/default:slow/", {"bandwidth": "1gbps", "burst": 64, "DSCP": 10}))
    assert ok(nm.get("/api/v1/endpoints/e1/"))["ingressPolicingRate"] == 1000000
    assert ok(nm.get("/api/v1/hosts/h1/"))["endpointsVersion"] not in (v0, v1)


def test_endpoints_of_one_host_and_a_version_only_qos_moves(netmaster):
    """An agent reads its own endpoints (?host=); its host's endpointsVersion moves with
    what it applies (QoS), not with every endpoint added (each attach made every agent
    re-read all endpoints)."""
    nm = netmaster
    ok(nm.post("/api/v1/networks/default:n/", {"subnet": "10.7.0.0/24"}))
    for h, dpid in (("h1", "00000000000000b1"), ("h2", "00000000000000b2")):
        ok(nm.post(f"/api/v1/hosts/{h}/", {"vtepIP": f"10.99.0.{dpid[-1]}", "dpid": dpid}))
    v0 = ok(nm.get("/api/v1/hosts/h1/"))["endpointsVersion"]
    for i, h in enumerate(("h1", "h2", "h1")):
        ok(nm.post(f"/api/v1/endpoints/q{i}/", {"tenantName": "default", "networkName": "n", "host": h,
                                                "intfName": f"nwq{i}"}))
    assert sorted(e["endpointID"] for e in ok(nm.get("/api/v1/endpoints/?host=h1"))) == ["q0", "q2"]
    assert ok(nm.get("/api/v1/endpoints/?host=h9")) == []
    assert len(ok(nm.get("/api/v1/endpoints/"))) == 3
    assert ok(nm.get("/api/v1/hosts/h1/"))["endpointsVersion"] == v0          # no QoS: nothing to apply
    ok(nm.post("/api/v1/netprofiles/default:slow/", {"bandwidth": "10mbps", "burst": 64}))
    ok(nm.post("/api/v1/endpointGroups/default:g/", {"networkName": "n", "netProfile": "slow"}))
    ok(nm.post("/api/v1/endpoints/q3/", {"tenantName": "default", "networkName": "g", "host": "h1",
                                         "intfName": "nwq3"}))
    assert ok(nm.get("/api/v1/hosts/h1/"))["endpointsVersion"] != v0          # one with QoS: apply it


def test_policy_log_route(shared_netmaster):
    nm = shared_netmaster
    assert ok(nm.get("/api/v1/policylog/")) == []
    assert ok(nm.get("/api/v1/policylog/?tenant=default&limit=5")) == []
    refused(nm.get("/api/v1/policylog/?limit=ten"), 400, "limit: 'ten' is not a number")
    refused(nm.get("/api/v1/policylog/?limit=0"), 400, "limit: 0 is not between 1 and 1000")
    refused(nm.get("/api/v1/policylog/?tenant=nosuch"), 404, "tenant nosuch not found")
    refused(nm.post("/api/v1/policylog/", {}), 405, "method POST is not allowed on /api/v1/policylog/")


SVC = {"networkName": "svc-net", "selectors": ["app=web"], "ports": ["80:8080:TCP"]}


def test_service_lb_vip_providers_and_refusals(netmaster):
    nm = netmaster
    ok(nm.post("/api/v1/networks/default:svc-net/", dict(NET, networkName="svc-net")))
    ok(nm.post("/api/v1/hosts/h1/", {"vtepIP": "10.99.0.1", "dpid": "00000000000000a1"}))
    ep = {"tenantName": "default", "networkName": "svc-net", "host": "h1", "intfName": "nwsv1",
          "labels": ["app=web", "tier=front"]}
    ok(nm.post("/api/v1/endpoints/e1/", ep))                                    # 10.1.2.2
    ok(nm.post("/api/v1/endpoints/e2/", dict(ep, intfName="nwsv2", labels=["app=db"])))
    created = ok(nm.post("/api/v1/serviceLBs/default:web/", SVC))
    assert created["key"] == "default:web"
    ins = ok(nm.get("/api/v1/inspect/serviceLBs/default:web/"))
    oper = ins["Oper"]
    assert oper["serviceVip"] == "10.1.2.4" and oper["numProviders"] == 1       # lowest free address
    assert [p["endpointID"] for p in oper["providers"]] == ["e1"]
    assert ins["Config"]["links"] == {"Tenant": {"type": "tenant", "key": "default"},
                                      "Network": {"type": "network", "key": "default:svc-net"}}
    # the VIP is taken: an endpoint never gets it, another service cannot ask for it
    assert ok(nm.post("/api/v1/endpoints/e3/", dict(ep, intfName="nwsv3")))["ipAddress"][0] == "10.1.2.5"
    refused(nm.post("/api/v1/serviceLBs/default:web2/", dict(SVC, ipAddress="10.1.2.4")), 409,
            "ipAddress: 10.1.2.4 is already taken in network default:svc-net (service default:web)")
    # a preferred VIP
    ok(nm.post("/api/v1/serviceLBs/default:web2/", dict(SVC, ipAddress="10.1.2.77")))
    assert ok(nm.get("/api/v1/inspect/serviceLBs/default:web2/"))["Oper"]["serviceVip"] == "10.1.2.77"
    # selectors may change: providers follow; the VIP may not
    ok(nm.post("/api/v1/serviceLBs/default:web/", dict(SVC, selectors=["app=db"])))
    oper = ok(nm.get("/api/v1/inspect/serviceLBs/default:web/"))["Oper"]
    assert oper["serviceVip"] == "10.1.2.4" and [p["endpointID"] for p in oper["providers"]] == ["e2"]
    refused(nm.post("/api/v1/serviceLBs/default:web/", dict(SVC, ipAddress="10.1.2.9")), 409,
            "ipAddress: cannot change after the serviceLB is created (is '', asked '10.1.2.9')")
    # in use: the network cannot go while services use it
    refused(nm.delete("/api/v1/networks/default:svc-net/"), 409,
            "network default:svc-net: cannot delete, it has 2 services (web, web2)")
    assert ok(nm.delete("/api/v1/serviceLBs/default:web/")) == "default:web"
    # its VIP is free again
    assert ok(nm.post("/api/v1/endpoints/e4/", dict(ep, intfName="nwsv4")))["ipAddress"][0] == "10.1.2.4"
    refused(nm.get("/api/v1/serviceLBs/default:web/"), 404, "serviceLB default:web not found")


@pytest.mark.parametrize("body,status,message", [
    (dict(SVC, selectors=[]), 400, "selectors: at least one key=value label is required"),
    (dict(SVC, selectors=["app"]), 400, "selectors: 'app' is not key=value"),
    (dict(SVC, ports=[]), 400, "ports: at least one svcPort:provPort:protocol is required"),
    (dict(SVC, ports=["80"]), 400,
     "ports: '80' is not svcPort:provPort:protocol (ports 1-65535, protocol TCP or UDP)"),
    (dict(SVC, ports=["80:8080:TCP", "0:1:UDP"]), 400,
     "ports: '0:1:UDP' is not svcPort:provPort:protocol (ports 1-65535, protocol TCP or UDP)"),
    (dict(SVC, ports=["80:8080:SCTP"]), 400,
     "ports: '80:8080:SCTP' is not svcPort:provPort:protocol (ports 1-65535, protocol TCP or UDP)"),
    (dict(SVC, ports=["80:8080:TCP", "80:9090:tcp"]), 400, "ports: service port 80/tcp appears twice"),
    (dict(SVC, networkName="nosuch"), 404, "networkName: network default:nosuch does not exist"),
    (dict(SVC, ipAddress="10.9.9.9"), 400,
     "ipAddress: 10.9.9.9 is outside the subnet 10.1.2.0/24 of network default:svc-net"),
    (dict(SVC, ipAddress="10.1.2.1"), 409, "ipAddress: 10.1.2.1 is the gateway of network default:svc-net"),
    (dict(SVC, ipAddress="10.1.2"), 400, "ipAddress: 10.1.2 is not empty or a valid IPv4 address"),
    ({k: v for k, v in SVC.items() if k != "networkName"}, 400, "networkName: is required"),
])
def test_service_lb_bad_input(shared_netmaster, body, status, message):
    nm = shared_netmaster
    nm.post("/api/v1/networks/default:svc-net/", dict(NET, networkName="svc-net"))
    refused(nm.post("/api/v1/serviceLBs/default:bad/", body), status, message)
    refused(nm.get("/api/v1/serviceLBs/default:bad/"), 404, "serviceLB default:bad not found")
