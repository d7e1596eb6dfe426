"""The exact requests Contiv's netctl was seen to send (shared/reference/
netctl-wire.md), replayed against a real netmaster, with the answers
Contiv's client expects."""
import pytest

CAPTURE = [
    ("POST", "/api/v1/networks/default:contiv-net/", {"encap": "vxlan", "gateway": "10.1.2.1", "networkName": "contiv-net", "nwType": "data", "subnet": "10.1.2.0/24", "tenantName": "default", "link-sets": {}, "links": {"Tenant": {}}}),
    ("GET", "/api/v1/networks/", None),
    ("POST", "/api/v1/tenants/blue/", {"tenantName": "blue", "link-sets": {}}),
    ("POST", "/api/v1/networks/blue:contiv-net/", {"encap": "vxlan", "gateway": "10.1.2.1", "networkName": "contiv-net", "nwType": "data", "subnet": "10.1.2.0/24", "tenantName": "blue", "link-sets": {}, "links": {"Tenant": {}}}),
    ("POST", "/api/v1/policys/default:db-policy/", {"policyName": "db-policy", "tenantName": "default", "link-sets": {}, "links": {"Tenant": {}}}),
    ("POST", "/api/v1/rules/default:db-policy:1/", {"action": "deny", "direction": "in", "policyName": "db-policy", "priority": 1, "protocol": "tcp", "ruleId": "1", "tenantName": "default", "link-sets": {}, "links": {"MatchEndpointGroup": {}}}),
    ("POST", "/api/v1/rules/default:db-policy:2/", {"action": "allow", "direction": "in", "policyName": "db-policy", "port": 8888, "priority": 10, "protocol": "tcp", "ruleId": "2", "tenantName": "default", "link-sets": {}, "links": {"MatchEndpointGroup": {}}}),
    ("POST", "/api/v1/endpointGroups/default:app-group/", {"groupName": "app-group", "networkName": "contiv-net", "tenantName": "default"}),
    ("POST", "/api/v1/rules/default:db-policy:3/", {"action": "allow", "direction": "in", "fromEndpointGroup": "app-group", "policyName": "db-policy", "port": 5432, "priority": 1, "protocol": "tcp", "ruleId": "3", "tenantName": "default", "link-sets": {}, "links": {"MatchEndpointGroup": {}}}),
    ("POST", "/api/v1/endpointGroups/default:db-group/", {"groupName": "db-group", "networkName": "contiv-net", "policies": ["db-policy"], "tenantName": "default", "link-sets": {}, "links": {"AppProfile": {}, "NetProfile": {}, "Network": {}, "Tenant": {}}}),
    ("GET", "/api/v1/tenants/default/", None),
    ("GET", "/api/v1/policys/default:db-policy/", None),
    ("GET", "/api/v1/rules/", None),
    ("GET", "/api/v1/inspect/networks/default:contiv-net/", None),
    ("GET", "/api/v1/inspect/globals/global/", None),
    ("GET", "/api/v1/globals/global/", None),
    ("POST", "/api/v1/netprofiles/default:prof1/", {"DSCP": 6, "bandwidth": "10mbps", "profileName": "prof1", "tenantName": "default", "link-sets": {}, "links": {"Tenant": {}}}),
    ("POST", "/api/v1/appProfiles/default:ap1/", {"appProfileName": "ap1", "endpointGroups": ["db-group", "app-group"], "tenantName": "default", "link-sets": {}, "links": {"Tenant": {}}}),
    ("DELETE", "/api/v1/appProfiles/default:ap1/", None),
    ("DELETE", "/api/v1/rules/default:db-policy:1/", None),
    ("DELETE", "/api/v1/endpointGroups/default:db-group/", None),
]


def test_capture_replays(netmaster):
    nm = netmaster
    for method, path, body in CAPTURE:
        r = {"GET": nm.get, "DELETE": nm.delete}[method](path) if body is None else nm.post(path, body)
        assert r.status_code == 200, (method, path, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/json")
        data = r.json()
        if method == "POST":
            # the stored object, keyed as the path, links filled by the server
            assert data["key"] == path.split("/")[4]
            assert "link-sets" in data
        if method == "DELETE":
            assert data == path.split("/")[4]
        if path.startswith("/api/v1/inspect/"):
            assert set(data) == {"Config", "Oper"}
        if path.endswith("s/") and method == "GET":
            assert isinstance(data, list)
    # netctl global set: GET the object, modify, POST it back to /globals/<name>/
    g = nm.get("/api/v1/globals/global/").json()
    assert g["name"] == "global"
    g.update({"fwdMode": "bridge", "pvtSubnet": "172.19.0.0/16"})
    assert nm.post(f"/api/v1/globals/{g['name']}/", g).status_code == 200
    # the removed group is gone; deleting it again is a 404, which Contiv's client counts as done
    assert nm.delete("/api/v1/endpointGroups/default:db-group/").status_code == 404
    # the rule kept its link to the group it matches
    r3 = nm.get("/api/v1/rules/default:db-policy:3/").json()
    assert r3["links"]["MatchEndpointGroup"] == {"type": "endpointGroup", "key": "default:app-group"}


@pytest.mark.parametrize("ctype", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_content_type_is_not_required(netmaster, ctype):
    """Contiv's Go client sends no Content-Type; its Python client sends a form type."""
    import requests
    headers = {"Content-Type": ctype} if ctype else {}
    r = requests.post(netmaster.url + "/api/v1/tenants/t1/", data=b'{"tenantName": "t1"}', headers=headers,
                      timeout=5)
    assert r.status_code == 200 and r.json()["tenantName"] == "t1"
