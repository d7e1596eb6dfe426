"""netctl end to end against a real netmaster, with Contiv's exit codes."""
import json
import subprocess
import sys

from tests.procs import ROOT


def netctl(nm, *args, url=None):
    p = subprocess.run([sys.executable, "-m", "netctl.cli", "--netmaster", url or nm.url, *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def test_tutorial_commands(netmaster):
    nm = netmaster
    assert netctl(nm, "net", "create", "--subnet=10.1.2.0/24", "--gateway=10.1.2.1", "contiv-net")[0] == 0
    assert netctl(nm, "tenant", "create", "blue")[0] == 0
    assert netctl(nm, "net", "create", "-t", "blue", "--subnet=10.1.2.0/24", "-g", "10.1.2.1", "contiv-net")[0] == 0
    rc, out, _ = netctl(nm, "net", "ls", "-a")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == ["Tenant", "Network", "Nw-Type", "Encap", "Pkt-Tag", "Subnet", "Gateway"]
    assert [l.split()[:2] for l in lines[2:]] == [["blue", "contiv-net"], ["default", "contiv-net"]]
    assert netctl(nm, "policy", "create", "db-policy")[0] == 0
    # Contiv's single-dash long flags
    assert netctl(nm, "policy", "rule-add", "db-policy", "1", "-direction=in", "-protocol=tcp", "-action=deny")[0] == 0
    assert netctl(nm, "policy", "rule-add", "db-policy", "2", "-direction=in", "-protocol=tcp", "-port=8888",
                  "-action=allow", "-priority=10")[0] == 0
    assert netctl(nm, "group", "create", "-policy=db-policy", "contiv-net", "db-group")[0] == 0
    rc, out, _ = netctl(nm, "policy", "rule-ls", "db-policy")
    rows = [l.split() for l in out.splitlines()]
    assert rc == 0 and rows[0] == ["Incoming", "Rules:"]
    assert rows[3] == ["2", "10", "tcp", "8888", "allow"] and rows[4] == ["1", "1", "tcp", "deny"]
    rc, out, _ = netctl(nm, "net", "inspect", "contiv-net")
    assert rc == 0 and json.loads(out)["Oper"]["pktTag"] == 1
    rc, out, _ = netctl(nm, "group", "ls", "-j")
    assert rc == 0 and json.loads(out)[0]["policies"] == ["db-policy"]
    assert netctl(nm, "netprofile", "create", "-b", "10mbps", "-d", "6", "-t", "default", "prof1")[0] == 0
    assert netctl(nm, "app-profile", "create", "-t", "default", "-g", "db-group", "ap1")[0] == 0
    assert netctl(nm, "global", "set", "--arp-mode", "flood")[0] == 0
    rc, out, _ = netctl(nm, "global", "inspect")
    assert json.loads(out)["Config"]["arpMode"] == "flood"
    assert netctl(nm, "policy", "rule-rm", "db-policy", "1")[0] == 0
    assert netctl(nm, "app-profile", "rm", "ap1")[0] == 0
    assert netctl(nm, "group", "rm", "db-group")[0] == 0
    assert netctl(nm, "net", "rm", "contiv-net")[0] == 0
    rc, out, _ = netctl(nm, "net", "ls", "-q")
    assert rc == 0 and out == ""


def test_dual_stack_network_and_endpoint_listing(netmaster):
    """--subnetv6/--gatewayv6 reach the network; ls shows IPv6 columns once a network or an
    endpoint has IPv6 (and only then, so IPv4-only listings keep Contiv's columns)."""
    nm = netmaster
    assert netctl(nm, "net", "create", "-s", "10.4.0.0/24", "-g", "10.4.0.1", "--subnetv6", "fd00:4::/64",
                  "ds")[0] == 0
    rc, out, _ = netctl(nm, "net", "ls")
    rows = [l.split() for l in out.splitlines()]
    assert rc == 0 and rows[0][-2:] == ["IPv6-Subnet", "IPv6-Gateway"] and rows[2][-2:] == ["fd00:4::/64", "fd00:4::1"]
    nm.post("/api/v1/hosts/h1/", {"vtepIP": "10.99.0.1", "dpid": "00000000000000a1"})
    nm.post("/api/v1/endpoints/e1/", {"tenantName": "default", "networkName": "ds", "host": "h1",
                                      "intfName": "nwe1"})
    rc, out, _ = netctl(nm, "endpoint", "ls")
    rows = [l.split() for l in out.splitlines()]
    assert rc == 0 and rows[0][4:7] == ["IP", "IPv6", "MAC"] and rows[2][3:5] == ["10.4.0.2", "fd00:4::2"]   # (the empty group column)
    assert json.loads(netctl(nm, "net", "inspect", "ds")[1])["Oper"]["allocatedIPv6Addresses"] == "fd00:4::1-fd00:4::2"


def test_exit_codes_and_server_messages(netmaster):
    nm = netmaster
    rc, out, err = netctl(nm, "net", "create", "--subnet=10.1.2.0/33", "x")
    assert rc == 3 and err.strip() == \
        "Error: subnet: 10.1.2.0/33 is not a valid CIDR (a.b.c.d/len or a.b.c.d-e.f.g.h/len, len 1-31)"
    rc, _, err = netctl(nm, "net", "ls", "-t", "nosuch")
    assert rc == 3 and err.strip() == "Error: tenant nosuch not found"
    rc, _, err = netctl(nm, "net", "ls", url="http://127.0.0.1:1")
    assert rc == 2 and "cannot reach netmaster" in err
    rc, _, err = netctl(nm, "net", "frobnicate")
    assert rc == 1 and "invalid choice" in err
    rc, _, err = netctl(nm, "net", "create", "nosubnet")
    assert rc == 1 and "--subnet" in err


def test_host_ls(netmaster):
    nm = netmaster
    nm.post("/api/v1/hosts/node1/", {"vtepIP": "10.99.0.1", "dpid": "00000000000000a1"})
    rc, out, _ = netctl(nm, "host", "ls")
    rows = [l.split() for l in out.splitlines()]
    assert rc == 0 and rows[0] == ["Host", "State", "VTEP-IP", "Datapath-ID", "Uplink", "Endpoints"]
    assert rows[2] == ["node1", "up", "10.99.0.1", "00000000000000a1", "0"]


def test_service_commands(netmaster):
    nm = netmaster
    assert netctl(nm, "net", "create", "--subnet=10.1.5.0/24", "-g", "10.1.5.1", "svc-net")[0] == 0
    # Contiv's flags: -s network, -l selector (repeat), -p port (repeat), --ip
    rc, out, err = netctl(nm, "service", "create", "web", "-s", "svc-net", "-l", "app=web", "-l", "tier=front",
                          "-p", "80:8080:TCP", "-p", "53:5353:UDP", "--ip", "10.1.5.50")
    assert rc == 0 and out.strip() == "service default:web created", err
    rc, out, _ = netctl(nm, "service", "ls")
    rows = [l.split() for l in out.splitlines()]
    assert rows[0] == ["Tenant", "Service", "Network", "VIP", "Ports", "Selectors", "Providers"]
    assert rows[2] == ["default", "web", "svc-net", "10.1.5.50", "80:8080:TCP,53:5353:UDP",
                       "app=web,tier=front", "0"]
    rc, out, _ = netctl(nm, "service", "inspect", "web")
    assert rc == 0 and json.loads(out)["Oper"]["serviceVip"] == "10.1.5.50"
    rc, _, err = netctl(nm, "service", "create", "bad", "-s", "svc-net", "-l", "app=web", "-p", "80")
    assert rc == 3 and "ports: '80' is not svcPort:provPort:protocol" in err
    rc, _, err = netctl(nm, "service", "create", "bad", "-l", "app=web", "-p", "80:80:TCP")
    assert rc == 1 and "--network" in err
    assert netctl(nm, "service", "rm", "web") == (0, "service default:web deleted\n", "")
    assert netctl(nm, "service", "ls", "-q")[1] == ""


def test_login_users_and_roles_over_tls(shared_netmaster, tmp_path):
    """The authenticated listener from netctl: login with the CA, the saved token
    (0600), users and role bindings, a refusal naming the right, a wrong CA refused,
    $NETMASTER_TOKEN, host revoke."""
    import os
    import stat
    nm = shared_netmaster
    ca = os.path.join(nm.pki, "ca.crt")
    env = dict(os.environ, HOME=str(tmp_path))
    env.pop("NETMASTER_TOKEN", None)

    def tls(*args, stdin="", extra_env=None):
        p = subprocess.run([sys.executable, "-m", "netctl.cli", "--netmaster", nm.tls_url, *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=30, input=stdin, env=dict(env, **(extra_env or {})))
        return p.returncode, p.stdout, p.stderr

    rc, _, err = tls("tenant", "ls")
    assert rc == 2 and "CERTIFICATE_VERIFY_FAILED" in err                    # netweave's CA not trusted yet
    rc, _, err = tls("--cacert", ca, "tenant", "ls")
    assert rc == 3 and "authorization: a token is required" in err
    password = open(os.path.join(nm.pki, "admin.password")).read()
    rc, out, err = tls("--cacert", ca, "login", stdin=password)
    assert rc == 0 and out.startswith(f"logged in to {nm.tls_url} as admin (role admin) until "), err
    saved = tmp_path / ".netctl" / "config.json"
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    assert tls("tenant", "create", "green")[0] == 0                            # token and CA remembered
    assert tls("user", "create", "gina", "--role", "ops", "-t", "green", stdin="gina-password\n")[0] == 0
    assert tls("user", "create", "vic", "--role", "viewer", stdin="vic-password\n")[0] == 0
    rc, out, _ = tls("user", "ls")
    assert rc == 0 and ["gina", "ops", "green"] in [l.split() for l in out.splitlines()]
    assert tls("login", "-u", "gina", stdin="gina-password\n")[0] == 0
    assert tls("whoami")[1].strip() == "user:gina (role ops of green)"
    assert tls("net", "create", "-t", "green", "--subnet", "10.7.0.0/24", "gnet")[0] == 0
    rc, _, err = tls("net", "create", "--subnet", "10.7.0.0/24", "gnet")
    assert rc == 3 and err.strip() == ("Error: forbidden: user gina (role ops of green) may not POST networks "
                                       "of tenant default; needs role admin or ops of tenant default")
    rc, _, err = tls("user", "rm", "vic")
    assert rc == 3 and "needs role admin" in err
    admin = {"NETMASTER_TOKEN": open(os.path.join(nm.pki, "admin.token")).read().strip()}
    assert tls("user", "bind", "gina", "--role", "viewer", extra_env=admin)[0] == 0
    assert tls("whoami")[1].strip() == "user:gina (role viewer)"              # a binding applies at once
    assert tls("net", "rm", "-t", "green", "gnet")[0] == 3
    assert tls("user", "rm", "gina", extra_env=admin)[0] == 0
    assert tls("whoami")[0] == 3                                               # her token died with her
    rc, _, err = tls("host", "revoke", "nohost", extra_env=admin)
    assert rc == 3 and "holds no credential" in err
    assert netctl(nm, "net", "rm", "-t", "green", "gnet")[0] == 0              # the loopback door: no token
    assert netctl(nm, "whoami")[1].strip() == "local (role admin)"


def test_hosts_are_their_own_agents_over_https(shared_netmaster):
    """Over the real HTTPS listener, as agents on other machines use it: the bootstrap
    token claims a host label once; h-a's credential registers h-a but not a fake host
    nor h-b, writes endpoints homed on h-a only, and no network; the login limit answers
    429 with Retry-After."""
    import os

    import requests
    nm = shared_netmaster
    ca = os.path.join(nm.pki, "ca.crt")
    boot = open(os.path.join(nm.pki, "bootstrap.token")).read().strip()

    def call(method, path, token=None, body=None):
        h = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, nm.tls_url + path, json=body, headers=h, verify=ca, timeout=10)

    creds = {}
    for label, vtep in (("h-a", "192.0.2.11"), ("h-b", "192.0.2.12")):
        r = call("POST", f"/api/v1/auth_proxy/host_credentials/{label}/", boot, {"vtepIP": vtep})
        assert r.status_code == 200, r.text
        assert "CN=host:" + label in _subject(r.json()["cert"])
        creds[label] = r.json()["token"]
    r = call("POST", "/api/v1/auth_proxy/host_credentials/h-a/", boot, {})
    assert r.status_code == 409 and "already holds a credential" in r.json()["error"]
    assert call("POST", "/api/v1/hosts/h-a/", creds["h-a"],
                {"hostLabel": "h-a", "vtepIP": "192.0.2.11", "dpid": "00000000000000c1"}).status_code == 200
    assert call("POST", "/api/v1/hosts/h-b/", creds["h-b"],
                {"hostLabel": "h-b", "vtepIP": "192.0.2.12", "dpid": "00000000000000c2"}).status_code == 200
    before = call("GET", "/api/v1/hosts/h-b/", creds["h-a"]).json()
    for label in ("h-b", "fake"):                     # h-a cannot be, nor invent, another host
        r = call("POST", f"/api/v1/hosts/{label}/", creds["h-a"],
                 {"hostLabel": label, "vtepIP": "192.0.2.66", "dpid": "00000000000000c9"})
        assert r.status_code == 403 and r.json()["error"].startswith("forbidden: host h-a's agent"), r.text
    assert call("GET", "/api/v1/hosts/h-b/", creds["h-a"]).json() == before
    assert call("GET", "/api/v1/hosts/fake/", creds["h-a"]).status_code == 404
    assert netctl(nm, "net", "create", "--subnet", "10.9.9.0/24", "hnet")[0] == 0        # loopback door
    ep = {"tenantName": "default", "networkName": "hnet", "intfName": "nwh1", "containerID": "c-h"}
    r = call("POST", "/api/v1/endpoints/eph1/", creds["h-a"], dict(ep, host="h-b"))
    assert r.status_code == 403, r.text
    assert call("GET", "/api/v1/endpoints/eph1/", creds["h-a"]).status_code == 404      # nothing stored
    r = call("POST", "/api/v1/endpoints/eph1/", creds["h-a"], dict(ep, host="h-a"))
    assert r.status_code == 200 and r.json()["homingHost"] == "h-a", r.text
    r = call("DELETE", "/api/v1/endpoints/eph1/", creds["h-b"])
    assert r.status_code == 403, r.text                                                  # not h-b's
    assert call("DELETE", "/api/v1/endpoints/eph1/", creds["h-a"]).status_code == 200
    r = call("POST", "/api/v1/networks/default:hnet2/", creds["h-a"],
             {"tenantName": "default", "networkName": "hnet2", "subnet": "10.9.8.0/24"})
    assert r.status_code == 403
    assert netctl(nm, "net", "rm", "hnet")[0] == 0
    # guessing a password: 5 wrong ones for a user, then 429 with Retry-After, even for the right one
    password = open(os.path.join(nm.pki, "admin.password")).read().strip()
    for _ in range(5):
        assert call("POST", "/api/v1/auth_proxy/login/", body={"username": "admin", "password": "guess-guess"}
                    ).status_code == 401
    r = call("POST", "/api/v1/auth_proxy/login/", body={"username": "admin", "password": password})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.text


def _subject(cert_pem):
    from cryptography import x509
    return x509.load_pem_x509_certificate(cert_pem.encode()).subject.rfc4514_string()
