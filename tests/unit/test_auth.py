"""Authentication and roles of the REST API, in-process (webob, a real SQLite
store, no OVS): the whole matrix role x collection x method (allowed, 401,
403), login, token expiry, users, host credentials, a fake host registration
refused, an endpoint write by another host's agent refused, the audit line.

Requests marked netweave.listener=tls are what controller/main.py hands the
app from its TLS listener; unmarked ones are the loopback listener's."""
import json
import logging

import pytest
import webob

from model.service import Model
from netweave.pki import PKI
from rest import auth
from rest.app import RestApp
from store.sqlite import SqliteStore

FAST = (1 << 10, 8, 1)        # scrypt cost for tests: same code, cheaper parameters


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    store = SqliteStore(str(d / "state.db"))
    clock = Clock()
    model = Model(store)
    pki = PKI(str(d / "pki"))
    pki.ensure_ca()
    a = auth.Auth(store, clock=clock, token_ttl=3600, scrypt_params=FAST)
    app = RestApp(model, auth=a, pki=pki)
    e = Env(app, a, clock, store)
    creds = auth.ensure_local_credentials(a, str(d / "pki"))
    e.tokens["admin"] = open(creds["admin_token"]).read().strip()
    e.local("POST", "/api/v1/tenants/blue/", {"tenantName": "blue"})
    e.local("POST", "/api/v1/tenants/red/", {"tenantName": "red"})
    for t in ("blue", "red"):
        e.local("POST", f"/api/v1/networks/{t}:net/", {"tenantName": t, "networkName": "net",
                                                        "subnet": "10.1.0.0/24", "encap": "vxlan"})
    for name, body in [("opsblue", {"role": "ops", "tenants": ["blue"]}),
                       ("viewer", {"role": "viewer"})]:
        ok(e.local("POST", f"/api/v1/auth_proxy/local_users/{name}/", dict(body, password="pass-" + name)))
        ok(e.call("POST", "/api/v1/auth_proxy/login/", {"username": name, "password": "pass-" + name}))
        # API tokens (no expiry): the expiry test moves the clock past login tokens' life
        e.tokens[name] = a.mint(f"user:{name}", "api", None)[0]
    e.tokens["bootstrap"] = open(creds["bootstrap_token"]).read().strip()
    for h, i in (("h1", 1), ("h2", 2)):
        cred = ok(e.call("POST", f"/api/v1/auth_proxy/host_credentials/{h}/", {"vtepIP": f"10.99.0.{i}"},
                         token=e.tokens["bootstrap"]))
        e.tokens[h] = cred["token"]
        ok(e.call("POST", f"/api/v1/hosts/{h}/", {"hostLabel": h, "vtepIP": f"10.99.0.{i}",
                                                  "dpid": f"00000000000000a{i}"}, token=e.tokens[h]))
    ok(e.local("POST", "/api/v1/endpoints/ep9/", BODIES["endpoints"]("blue")[1]))
    yield e
    store.close()


class Env:
    def __init__(self, app, a, clock, store):
        self.app, self.auth, self.clock, self.store = app, a, clock, store
        self.tokens = {}

    def call(self, method, path, body=None, token=None, listener="tls", header="Authorization"):
        req = webob.Request.blank(path, method=method)
        if listener:
            req.environ["netweave.listener"] = listener
        if body is not None:
            req.body = json.dumps(body).encode()
        if token:
            req.headers[header] = f"Bearer {token}" if header == "Authorization" else token
        return req.get_response(self.app)

    def local(self, method, path, body=None):
        return self.call(method, path, body, listener=None)

    def as_(self, who, method, path, body=None):
        return self.call(method, path, body, token=self.tokens.get(who))


def ok(r):
    assert r.status_int == 200, (r.status, r.body[:300])
    return r.json


# ---------------------------------------------------------------- the matrix
BODIES = {
    "tenants": lambda t: ("T", {"tenantName": "T"}),
    "networks": lambda t: (f"{t}:n2", {"tenantName": t, "networkName": "n2", "subnet": "10.2.0.0/24",
                                        "encap": "vxlan"}),
    "endpointGroups": lambda t: (f"{t}:g1", {"tenantName": t, "groupName": "g1", "networkName": "net"}),
    "policys": lambda t: (f"{t}:p1", {"tenantName": t, "policyName": "p1"}),
    "rules": lambda t: (f"{t}:p0:1", {"tenantName": t, "policyName": "p0", "ruleId": "1",
                                       "direction": "in", "action": "deny"}),
    "appProfiles": lambda t: (f"{t}:ap1", {"tenantName": t, "appProfileName": "ap1", "endpointGroups": []}),
    "netprofiles": lambda t: (f"{t}:np1", {"tenantName": t, "profileName": "np1", "bandwidth": "10mbps"}),
    "serviceLBs": lambda t: (f"{t}:sv1", {"tenantName": t, "serviceName": "sv1", "networkName": "net",
                                          "selectors": ["app=x"], "ports": ["80:80:TCP"]}),
    "globals": lambda t: ("global", {"name": "global", "arpMode": "proxy"}),
    "hosts": lambda t: ("h9", {"hostLabel": "h9", "vtepIP": "10.99.0.9", "dpid": "00000000000000a9"}),
    "endpoints": lambda t: ("ep9", {"tenantName": t, "networkName": "net", "host": "h2",
                                    "intfName": "nw9", "containerID": "c9"}),
}
TENANTS = ("blue", "red")
WHO = ("anonymous", "badtoken", "admin", "opsblue", "viewer", "h1", "bootstrap")
W = ("POST", "DELETE")


def expected(who, coll, method, tenant):
    """The rights, written out as the README states them (not derived from the code)."""
    if who in ("anonymous", "badtoken"):
        return 401
    if who == "bootstrap":
        return 403                                  # it may only obtain a host credential
    if method == "GET":
        return "ok"                                 # every principal may read
    if who == "admin":
        return 403 if (coll in ("hosts", "endpoints") and method == "POST") else "ok"
    if who == "viewer":
        return 403
    if who == "opsblue":
        return "ok" if coll in BODIES and coll not in ("tenants", "globals", "hosts", "endpoints") \
            and tenant == "blue" else 403
    if who == "h1":                                 # h9, and endpoint ep9 of h2, are not h1's
        return 403
    raise AssertionError(who)


CASES = [(who, coll, method, tenant) for who in WHO for coll in BODIES for method in ("GET", "LIST") + W
         for tenant in TENANTS
         if not (tenant == "red" and coll in ("tenants", "globals", "hosts", "endpoints"))]


@pytest.mark.parametrize("who,coll,method,tenant", CASES)
def test_matrix(env, who, coll, method, tenant):
    key, body = BODIES[coll](tenant)
    env.tokens.setdefault("badtoken", "not-a-token")
    path = f"/api/v1/{coll}/" if method == "LIST" else f"/api/v1/{coll}/{key}/"
    before = dict(env.store.list("obj/")), dict(env.store.list("host/")), dict(env.store.list("ep/"))
    r = env.as_(None if who == "anonymous" else who, "GET" if method == "LIST" else method, path,
                body if method == "POST" else None)
    want = expected(who, coll, "GET" if method == "LIST" else method, tenant)
    msg = r.json.get("error", "") if r.content_type == "application/json" and isinstance(r.json, dict) else ""
    if want == "ok":
        assert r.status_int not in (401, 403), (r.status, msg)
        assert r.status_int < 500, (r.status, msg)
    else:
        assert r.status_int == want, (r.status, msg)
        assert (env.store.list("obj/"), env.store.list("host/"), env.store.list("ep/")) == before
        if want == 401:
            assert msg.startswith("authorization:") and r.headers["WWW-Authenticate"].startswith("Bearer")
        else:
            assert msg.startswith("forbidden:") and "needs" in msg, msg
    if want == "ok" and method == "POST" and coll not in ("rules",):
        assert r.status_int == 200, (r.status, msg)        # allowed writes really happen
    if want == "ok" and method == "DELETE" and r.status_int == 200:
        env.local("POST", path, body)                       # put it back for the next principal


def test_every_kind_is_in_the_matrix():
    from model import schema
    assert set(BODIES) == {k.collection for k in schema.KINDS.values()}


def test_denials_name_the_missing_right(env):
    r = env.as_("opsblue", "POST", "/api/v1/networks/red:x/", BODIES["networks"]("red")[1])
    assert r.status_int == 403
    assert r.json["error"] == ("forbidden: user opsblue (role ops of blue) may not POST networks of "
                               "tenant red; needs role admin or ops of tenant red")
    assert r.status.startswith("403 forbidden: user opsblue")       # Contiv's client shows the status line
    r = env.as_("viewer", "POST", "/api/v1/globals/global/", {"name": "global"})
    assert "role admin or ops (viewer is read-only)" in r.json["error"]
    r = env.as_("opsblue", "POST", "/api/v1/globals/global/", {"name": "global", "arpMode": "flood"})
    assert r.status_int == 403 and "needs role admin" in r.json["error"]
    assert env.local("GET", "/api/v1/globals/global/").json["arpMode"] == "proxy"


def test_public_routes_and_contiv_header(env):
    for path in ("/version", "/healthz", "/api/v1/openapi.json", "/ui/"):
        assert env.call("GET", path).status_int == 200, path
    assert env.call("GET", "/info").status_int == 401
    assert env.call("GET", "/metrics").status_int == 401
    r = env.call("GET", "/api/v1/tenants/", token=env.tokens["viewer"], header="X-Auth-Token")
    assert r.status_int == 200 and {t["tenantName"] for t in r.json} >= {"blue", "red"}


def test_loopback_listener_is_the_local_admin(env):
    assert ok(env.local("GET", "/api/v1/auth_proxy/whoami/"))["principal"] == "local"
    ok(env.local("POST", "/api/v1/hosts/hl/", {"hostLabel": "hl", "vtepIP": "10.99.0.50",
                                                "dpid": "00000000000000b0"}))
    ok(env.local("DELETE", "/api/v1/hosts/hl/"))


# ---------------------------------------------------------------- login and tokens
def test_login_expiry_and_password_change(env):
    ok(env.local("POST", "/api/v1/auth_proxy/local_users/eve/", {"password": "first-password", "role": "viewer"}))
    r = env.call("POST", "/api/v1/auth_proxy/login/", {"username": "eve", "password": "wrong-password"})
    assert r.status_int == 401 and r.json["error"] == "username or password: wrong"
    r = env.call("POST", "/api/v1/auth_proxy/login/", {"username": "nobody", "password": "whatever1"})
    assert r.status_int == 401 and r.json["error"] == "username or password: wrong"
    assert env.call("POST", "/api/v1/auth_proxy/login/", {"username": "eve"}).status_int == 400
    token = ok(env.call("POST", "/api/v1/auth_proxy/login/", {"username": "eve", "password": "first-password"}))["token"]
    me = ok(env.call("GET", "/api/v1/auth_proxy/whoami/", token=token))
    assert (me["principal"], me["role"]) == ("user:eve", "viewer")
    env.clock.now += 3599
    assert env.call("GET", "/api/v1/tenants/", token=token).status_int == 200
    env.clock.now += 2
    r = env.call("GET", "/api/v1/tenants/", token=token)
    assert r.status_int == 401 and "expired" in r.json["error"]
    # a new password ends the sessions of the old one; the new one logs in
    token = ok(env.call("POST", "/api/v1/auth_proxy/login/", {"username": "eve", "password": "first-password"}))["token"]
    ok(env.as_("admin", "POST", "/api/v1/auth_proxy/local_users/eve/", {"password": "second-password"}))
    assert env.call("GET", "/api/v1/tenants/", token=token).status_int == 401
    ok(env.call("POST", "/api/v1/auth_proxy/login/", {"username": "eve", "password": "second-password"}))
    # a deleted user's tokens stop at once
    token = ok(env.call("POST", "/api/v1/auth_proxy/login/", {"username": "eve", "password": "second-password"}))["token"]
    ok(env.as_("admin", "DELETE", "/api/v1/auth_proxy/local_users/eve/"))
    assert env.call("GET", "/api/v1/tenants/", token=token).status_int == 401


def test_user_management_is_for_admins_and_validated(env):
    users = {u["username"]: u for u in ok(env.as_("admin", "GET", "/api/v1/auth_proxy/local_users/"))}
    assert users["opsblue"]["tenants"] == ["blue"] and "hash" not in users["opsblue"]
    for who in ("opsblue", "viewer", "h1"):
        r = env.as_(who, "POST", "/api/v1/auth_proxy/local_users/x/", {"password": "12345678"})
        assert r.status_int == 403, who
        assert env.as_(who, "GET", "/api/v1/auth_proxy/local_users/").status_int == 403
    for body, status, field in [({"password": "short"}, 400, "password:"),
                                ({"password": "long-enough", "role": "root"}, 400, "role:"),
                                ({"password": "long-enough", "role": "ops"}, 400, "tenants:"),
                                ({"password": "long-enough", "role": "ops", "tenants": ["nope"]}, 404, "tenants:"),
                                ({"password": "long-enough", "role": "viewer", "tenants": ["blue"]}, 400, "tenants:"),
                                ({"password": "long-enough", "admin": True}, 400, "admin:"),
                                ({"role": "viewer"}, 400, "password:")]:
        r = env.as_("admin", "POST", "/api/v1/auth_proxy/local_users/newbie/", body)
        assert (r.status_int, r.json["error"].split()[0]) == (status, field), (body, r.json)
    assert env.store.get("auth/user/newbie") is None
    stored = env.store.get("auth/user/opsblue")["hash"]
    assert stored.startswith("scrypt$") and "pass-opsblue" not in stored


def test_ops_works_in_its_tenant(env):
    ok(env.as_("opsblue", "POST", "/api/v1/policys/blue:web/", {"tenantName": "blue", "policyName": "web"}))
    ok(env.as_("opsblue", "POST", "/api/v1/rules/blue:web:1/", {"tenantName": "blue", "policyName": "web",
                                                                "ruleId": "1", "direction": "in", "action": "deny"}))
    ok(env.as_("opsblue", "DELETE", "/api/v1/rules/blue:web:1/"))
    ok(env.as_("opsblue", "DELETE", "/api/v1/policys/blue:web/"))


# ---------------------------------------------------------------- hosts
def test_host_credentials(env):
    # the bootstrap token claims a label once; a second claim would be an impersonation
    r = env.as_("bootstrap", "POST", "/api/v1/auth_proxy/host_credentials/h1/", {})
    assert r.status_int == 409 and "already holds a credential" in r.json["error"]
    cred = ok(env.as_("bootstrap", "POST", "/api/v1/auth_proxy/host_credentials/h5/", {"vtepIP": "10.99.0.5"}))
    assert cred["cert"].startswith("-----BEGIN CERTIFICATE") and "PRIVATE KEY" in cred["key"]
    assert cred["ca"].startswith("-----BEGIN CERTIFICATE")
    old = cred["token"]
    assert ok(env.call("GET", "/api/v1/auth_proxy/whoami/", token=old))["principal"] == "host:h5"
    # an admin rotates it: the old one stops working
    new = ok(env.as_("admin", "POST", "/api/v1/auth_proxy/host_credentials/h5/", {}))["token"]
    assert env.call("GET", "/api/v1/tenants/", token=old).status_int == 401
    assert env.call("GET", "/api/v1/tenants/", token=new).status_int == 200
    ok(env.as_("admin", "DELETE", "/api/v1/auth_proxy/host_credentials/h5/"))
    assert env.call("GET", "/api/v1/tenants/", token=new).status_int == 401
    assert env.as_("opsblue", "POST", "/api/v1/auth_proxy/host_credentials/h6/", {}).status_int == 403
    assert env.as_("bootstrap", "GET", "/api/v1/hosts/").status_int == 403


def test_fake_host_registration_refused(env):
    h1 = env.local("GET", "/api/v1/hosts/h1/").json
    fake = {"hostLabel": "h1", "vtepIP": "10.66.6.6", "dpid": h1["dpid"]}
    for who in ("admin", "opsblue", "viewer", "h2", "bootstrap"):
        r = env.as_(who, "POST", "/api/v1/hosts/h1/", fake)
        assert r.status_int == 403, (who, r.json)
    r = env.as_("h2", "POST", "/api/v1/hosts/hnew/", {"hostLabel": "hnew", "vtepIP": "10.66.6.6",
                                                       "dpid": "00000000000000ff"})
    assert r.status_int == 403
    assert env.store.get("host/hnew") is None
    assert env.local("GET", "/api/v1/hosts/h1/").json["vtepIP"] == h1["vtepIP"]


def test_endpoint_of_another_host_refused(env):
    body = {"tenantName": "blue", "networkName": "net", "host": "h1", "intfName": "nw1", "containerID": "c1"}
    ep = ok(env.as_("h1", "POST", "/api/v1/endpoints/ep1/", body))
    assert ep["homingHost"] == "h1"
    r = env.as_("h2", "POST", "/api/v1/endpoints/ep2/", body)           # h2 writing for h1
    assert r.status_int == 403 and "for host h1" in r.json["error"]
    r = env.as_("h2", "POST", "/api/v1/endpoints/ep1/", dict(body, host="h2"))    # h1's record
    assert r.status_int == 403 and "of host h1" in r.json["error"]
    r = env.as_("h2", "DELETE", "/api/v1/endpoints/ep1/")
    assert r.status_int == 403
    assert env.store.get("ep/ep1")["homingHost"] == "h1" and env.store.get("ep/ep2") is None
    ok(env.as_("h1", "DELETE", "/api/v1/endpoints/ep1/"))


def test_audit_line_per_change_and_refusal(env, caplog):
    with caplog.at_level(logging.INFO, logger="netweave.audit"):
        env.as_("opsblue", "POST", "/api/v1/netprofiles/blue:audited/",
                {"tenantName": "blue", "profileName": "audited", "bandwidth": "1mbps"})
        env.as_("viewer", "DELETE", "/api/v1/netprofiles/blue:audited/")
        env.as_("viewer", "GET", "/api/v1/netprofiles/")              # a read: no line
    lines = [r.getMessage() for r in caplog.records if r.name == "netweave.audit"]
    assert len(lines) == 2, lines
    assert "who=user:opsblue" in lines[0] and "method=POST" in lines[0] and "status=200" in lines[0]
    assert "path=/api/v1/netprofiles/blue:audited/" in lines[0] and " at=20" in lines[0]
    assert "who=user:viewer" in lines[1] and "status=403" in lines[1] and "listener=tls" in lines[1]
    ok(env.local("DELETE", "/api/v1/netprofiles/blue:audited/"))


@pytest.mark.parametrize("path,body", [
    ("/api/v1/networks/blue/", {"tenantName": "red", "networkName": "x", "subnet": "10.9.0.0/24"}),
    ("/api/v1/networks/blue:x/", {"tenantName": "red", "networkName": "x", "subnet": "10.9.0.0/24"}),
    ("/api/v1/networks/blue:red:x/", {"tenantName": "red", "networkName": "x", "subnet": "10.9.0.0/24"}),
    ("/api/v1/networks/blue%3Ax/", {"tenantName": "red", "networkName": "x", "subnet": "10.9.0.0/24"}),
    ("/api/v1//networks/blue:x/", {"tenantName": "red", "networkName": "x", "subnet": "10.9.0.0/24"}),
    ("/api/v1/rules/blue:p0:1/", {"tenantName": "red", "policyName": "p0", "ruleId": "1"}),
])
def test_ops_cannot_reach_another_tenant_through_the_path(env, path, body):
    """The tenant is read from the path's key, and the body must agree with the key."""
    before = dict(env.store.list("obj/"))
    r = env.as_("opsblue", "POST", path, body)
    assert r.status_int in (400, 403, 404), (r.status, r.body[:200])
    assert env.store.list("obj/") == before


@pytest.mark.parametrize("body", [{"vtepIP": {}}, {"vtepIP": 5}, [], "x", {"vtepIP": "10.1.2.300"}])
def test_host_credential_request_is_validated(env, body):
    r = env.as_("admin", "POST", "/api/v1/auth_proxy/host_credentials/hv/", body)
    assert r.status_int == 400 and r.json["error"].split(":")[0] in ("body", "vtepIP"), r.json
    assert env.store.get("auth/host/hv") is None


def test_host_credential_for_a_bad_label_is_400_and_makes_no_certificate(env):
    """Found by schemathesis over HTTPS: a label no certificate can carry (a CN is at
    most 64 characters) answered 500 once the certificate was made before the check."""
    r = env.as_("admin", "POST", "/api/v1/auth_proxy/host_credentials/" + "h" * 70 + "/", {})
    assert r.status_int == 400 and r.json["error"].startswith("hostLabel:"), (r.status, r.body[:200])
    r = env.as_("bootstrap", "POST", "/api/v1/auth_proxy/host_credentials/h1/", {})
    assert r.status_int == 409 and "cert" not in r.json


# ---------------------------------------------------------------- login rate limit
def _login(env, user, password, addr):
    req = webob.Request.blank("/api/v1/auth_proxy/login/", method="POST",
                              environ={"REMOTE_ADDR": addr, "netweave.listener": "tls"})
    req.body = json.dumps({"username": user, "password": password}).encode()
    return req.get_response(env.app)


def test_login_rate_limit_per_user_and_per_address(env):
    from rest import login_limit
    ok(env.local("POST", "/api/v1/auth_proxy/local_users/rl/", {"password": "right-password", "role": "viewer"}))
    tokens = lambda: sum(1 for v in env.store.list("auth/token/").values() if v["principal"] == "user:rl")  # noqa: E731
    before = tokens()
    for _ in range(login_limit.PER_USER):
        assert _login(env, "rl", "wrong-password", "192.0.2.1").status_int == 401
    # the next try, even with the right password and from another address: 429, no token
    for addr in ("192.0.2.1", "192.0.2.2"):
        r = _login(env, "rl", "right-password", addr)
        assert r.status_int == 429, r.status
        assert r.json["error"].startswith("login: too many wrong passwords for user rl")
        assert 1 <= int(r.headers["Retry-After"]) <= login_limit.WINDOW
    assert tokens() == before
    env.clock.now += login_limit.WINDOW + 1            # the failures leave the window
    assert _login(env, "rl", "right-password", "192.0.2.2").status_int == 200
    # one address guessing many names: limited by address, other addresses are not
    for i in range(login_limit.PER_ADDRESS):
        assert _login(env, f"guess{i}", "wrong-password", "192.0.2.3").status_int == 401
    r = _login(env, "rl", "right-password", "192.0.2.3")
    assert r.status_int == 429 and "for address 192.0.2.3" in r.json["error"], r.json
    assert _login(env, "rl", "right-password", "192.0.2.4").status_int == 200
    env.clock.now += login_limit.WINDOW + 1


def test_limiter_table_stays_bounded():
    from rest import login_limit
    clock = Clock()
    lim = login_limit.LoginLimiter(clock=clock)
    for i in range(login_limit.MAX_KEYS + 50):
        lim.failed("192.0.2.9", f"name{i}")
        clock.now += 0.001
    assert len(lim._fails) <= login_limit.MAX_KEYS
    assert lim.check("192.0.2.9", "other")[0] == "address 192.0.2.9"     # the busy address is kept


# ---------------------------------------------------------------- the OpenAPI document's security
def test_every_secured_operation_refuses_without_a_token(env):
    """The document says what each operation needs on the HTTPS listener; every one
    that names a scheme answers 401 without a token, the others do not."""
    import re
    doc = env.app.spec
    assert doc["components"]["securitySchemes"].keys() == {"bearer", "contivToken"}
    checked = 0
    for path, item in doc["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        for method, op in item.items():
            if method == "parameters":
                continue
            assert "security" in op, (method, path)
            r = env.call(method.upper(), concrete, {} if method in ("post", "put") else None)
            if op["security"]:
                assert op["security"] == [{"bearer": []}, {"contivToken": []}], (method, path)
                assert r.status_int == 401, (method, path, r.status)
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                checked += 1
            else:
                assert r.status_int != 401, (method, path, r.status)
    assert checked >= 40, checked
