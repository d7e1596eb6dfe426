"""The web view (GET /ui/) in a real browser: headless Chromium driven by
selenium against a real netmaster holding the tutorial's state, built through
the REST API only.

The trace needs the source endpoint's OpenFlow port number, which netmaster
learns only from a connected switch (controller/trace.py refuses with "port
... is not on h1's switch yet" otherwise).  So netmaster runs with its
OpenFlow controller, the form is first checked to show that refusal, and then
two stand-in switches (tests/fake_switch.py: a TCP connection speaking just
enough OpenFlow 1.3, no OVS, no namespace) connect as h1 and h2 with the
endpoints' ports, after which the same form shows a delivered and a dropped
trace.

NETWEAVE_SCREENSHOT=docs/webview.png writes the screenshot of the main view
there (the README's picture); otherwise it goes to a temporary folder.
"""
import contextlib
import http.client
import threading
import os
import shutil
import tempfile

import pytest
import requests

from agent.netmaster_client import dpid_for_host, endpoint_id, host_port_name
from tests.fake_switch import FakeSwitch
from tests.procs import Netmaster
from topologies.common import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                                reason="chromium and chromium-driver are not installed (make setup)")

NET = {"encap": "vxlan", "gateway": "10.1.2.1", "networkName": "contiv-net", "nwType": "data",
       "subnet": "10.1.2.0/24", "tenantName": "default"}
HOSTS = {"h1": "192.168.100.1", "h2": "192.168.100.2"}
# name -> (tenant, group, host); created in this order, so addresses are 10.1.2.2, .3, ...
ENDPOINTS = [("web1", "default", "web-group", "h1"), ("db1", "default", "db-group", "h2"),
             ("db2", "default", "db-group", "h1"), ("blue1", "blue", "", "h1"), ("blue2", "blue", "", "h2")]


def ok(r):
    assert r.status_code == 200, (r.request.method, r.request.url, r.status_code, r.text)
    return r.json()


def tutorial_state(nm) -> dict:
    """Contiv's tutorial through the REST API; returns name -> endpoint record."""
    ok(nm.post("/api/v1/tenants/blue/", {"tenantName": "blue"}))
    for tenant in ("default", "blue"):
        ok(nm.post(f"/api/v1/networks/{tenant}:contiv-net/", dict(NET, tenantName=tenant)))
    ok(nm.post("/api/v1/policys/default:db-policy/", {"tenantName": "default", "policyName": "db-policy"}))
    ok(nm.post("/api/v1/rules/default:db-policy:1/", {
        "tenantName": "default", "policyName": "db-policy", "ruleId": "1", "direction": "in",
        "protocol": "tcp", "action": "deny", "priority": 1}))
    ok(nm.post("/api/v1/rules/default:db-policy:2/", {
        "tenantName": "default", "policyName": "db-policy", "ruleId": "2", "direction": "in",
        "protocol": "tcp", "port": 8888, "action": "allow", "priority": 10}))
    ok(nm.post("/api/v1/endpointGroups/default:db-group/", {
        "tenantName": "default", "groupName": "db-group", "networkName": "contiv-net", "policies": ["db-policy"]}))
    ok(nm.post("/api/v1/endpointGroups/default:web-group/", {
        "tenantName": "default", "groupName": "web-group", "networkName": "contiv-net"}))
    for label, vtep in HOSTS.items():       # as agent/netmaster_client.py registers a host
        ok(nm.post(f"/api/v1/hosts/{label}/", {"hostLabel": label, "vtepIP": vtep,
                                               "dpid": "%016x" % dpid_for_host(label), "uplink": "",
                                               "agentPort": 0}))
    eps = {}
    for name, tenant, group, host in ENDPOINTS:     # as agent/cni.py allocates one
        ep = endpoint_id(name, "eth0")
        eps[name] = ok(nm.post(f"/api/v1/endpoints/{ep}/", {
            "tenantName": tenant, "networkName": "contiv-net", "groupName": group, "host": host,
            "containerID": name, "intfName": host_port_name(ep), "ifName": "eth0"}))
    return eps


def switch_ports(eps, host) -> dict:
    ports = {"vxlan0": 100}
    for i, e in enumerate(sorted((e for e in eps.values() if e["homingHost"] == host),
                                 key=lambda e: e["endpointID"]), start=1):
        ports[e["intfName"]] = i
    return ports


@contextlib.contextmanager
def chromium(tmp):
    """Headless Chromium through chromedriver, with a fresh profile under tmp;
    quit (and the driver process killed if need be) on the way out."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = os.path.join(tmp, "chromium-profile")
    os.makedirs(profile)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1360,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(CHROMEDRIVER, log_output=os.path.join(tmp, "chromedriver.log"))
    os.environ.setdefault("SE_AVOID_STATS", "true")
    driver = None
    try:
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:          # noqa: BLE001 - the service is stopped below anyway
                pass
        proc = getattr(service, "process", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def world():
    """netmaster (with OpenFlow, no switch yet) + headless Chromium; all of it
    removed on the way out, whatever happened."""
    tmp = tempfile.mkdtemp(prefix="nwtest-web-")
    nm = Netmaster(extra=["--of-listen", "127.0.0.1", "--host-timeout", "3600"])
    switches = []
    try:
        nm.start()
        with chromium(tmp) as driver:
            yield {"nm": nm, "driver": driver, "tmp": tmp, "switches": switches}
    finally:
        for sw in switches:
            sw.stop()
        nm.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def reload(d, wait):
    """Click Refresh and wait until the page has rendered the new answers."""
    from selenium.webdriver.common.by import By
    before = d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded")
    d.find_element(By.ID, "refresh").click()
    wait.until(lambda _: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") != before)


def raw(nm, method, path):
    """One request with the path exactly as written (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", nm.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_web_view(world):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    nm, d = world["nm"], world["driver"]
    eps = tutorial_state(nm)
    wait = WebDriverWait(d, 20)

    def css(sel, root=None):
        return (root or d).find_element(By.CSS_SELECTOR, sel)

    def csss(sel, root=None):
        return (root or d).find_elements(By.CSS_SELECTOR, sel)

    def text(sel, root=None):
        return css(sel, root).text

    # -- serving, over real HTTP: types, traversal, methods
    st, hd, body = raw(nm, "GET", "/ui/")
    assert st == 200 and hd["Content-Type"].startswith("text/html") and b"app.js" in body
    assert raw(nm, "GET", "/ui/app.js")[1]["Content-Type"].startswith("text/javascript")
    assert raw(nm, "GET", "/ui/style.css")[1]["Content-Type"].startswith("text/css")
    for path in ("/ui/../app.py", "/ui/%2e%2e/app.py", "/ui/%2E%2E%2Fapp.py", "/ui/..%2fapp.py",
                 "/ui/..%2f..%2frest%2fapp.py", "/ui/%2e%2e%2f%2e%2e%2fetc%2fpasswd"):
        st, _, body = raw(nm, "GET", path)
        assert st == 404 and b"import" not in body and b"root:" not in body, (path, st, body[:100])
    st, hd, _ = raw(nm, "POST", "/ui/")
    assert st == 405 and hd["Allow"] == "GET, HEAD"
    st, hd, body = raw(nm, "HEAD", "/ui/app.js")
    assert st == 200 and body == b""

    # -- tenants -> networks -> endpoints by host
    d.get(nm.url + "/ui")                          # redirected to /ui/
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "body[data-loaded]")))
    assert d.current_url.endswith("/ui/")
    assert "netweave" in text("header .brand")
    for tenant in ("default", "blue"):
        net = css(f'.tenant[data-tenant="{tenant}"] .network[data-network="{tenant}:contiv-net"]')
        assert "10.1.2.0/24" in net.text and "10.1.2.1" in net.text
        for name, t, group, host in ENDPOINTS:
            if t != tenant:
                continue
            ep = eps[name]
            row = css(f'.host-group[data-host="{host}"] tr[data-endpoint="{ep["endpointID"]}"]', net)
            assert ep["ipAddress"][0] in row.text and (group or "—") in row.text
        hosts = [h.get_attribute("data-host") for h in csss(".host-group", net)]
        assert hosts == ["h1", "h2"], hosts
    assert "db-group (db-policy)" in text('.network[data-network="default:contiv-net"]')
    assert "web-group (no policy: open)" in text('.network[data-network="default:contiv-net"]')
    shot = os.environ.get("NETWEAVE_SCREENSHOT") or os.path.join(world["tmp"], "webview.png")
    os.makedirs(os.path.dirname(os.path.abspath(shot)), exist_ok=True)
    assert d.save_screenshot(shot) and os.path.getsize(shot) > 10_000

    # -- data is text, never markup: a container id is free text at the API
    hostile = '<img src=x onerror="document.body.dataset.pwned=1"><b id="xss">x</b>'
    odd = endpoint_id("odd", "eth0")
    ok(nm.post(f"/api/v1/endpoints/{odd}/", {
        "tenantName": "blue", "networkName": "contiv-net", "groupName": "", "host": "h2",
        "containerID": hostile, "intfName": host_port_name(odd), "ifName": "eth0"}))
    reload(d, wait)
    assert not csss("#xss") and not css("body").get_attribute("data-pwned")
    assert hostile[:12] in text(f'tr[data-endpoint="{odd}"]')
    ok(nm.delete(f"/api/v1/endpoints/{odd}/"))
    reload(d, wait)
    assert not csss(f'tr[data-endpoint="{odd}"]')

    # -- the policy matrix
    css("#tab-policy").click()
    wait.until(EC.visibility_of_element_located((By.ID, "policy")))
    assert not css("#topology").is_displayed()
    card = css('#policy-body .card[data-tenant="default"]')
    db_cell = css('td[data-from="any"][data-to="db-group"]', card)
    lines = [r.text for r in csss(".rule", db_cell)]
    assert len(lines) == 2, lines
    assert lines[0].startswith("tcp 8888 allow") and "p10" in lines[0] and "db-policy:2" in lines[0]
    assert lines[1].startswith("tcp deny") and "p1" in lines[1] and "db-policy:1" in lines[1]
    assert "allow" in css(".rule", db_cell).get_attribute("class")
    # web-group -> db-group meets db-group's in rules too; db-group -> web-group is open
    assert len(csss(".rule", css('td[data-from="web-group"][data-to="db-group"]', card))) == 2
    assert text('td[data-from="db-group"][data-to="web-group"]', card) == "all allowed"
    assert "none: open" in text('tr[data-group="web-group"]', card)
    assert "None." in card.text                    # no network/address peers in the tutorial

    # -- hosts and switches, before any switch connects
    css("#tab-hosts").click()
    wait.until(EC.visibility_of_element_located((By.ID, "hosts")))
    for label, vtep in HOSTS.items():
        row = css(f'#hosts-body tr[data-host="{label}"]')
        assert "up" in row.text and vtep in row.text and "%016x" % dpid_for_host(label) in row.text
    assert "No switch is connected." in text("#hosts-body")
    real = requests.get(nm.url + "/api/v1/realization/", timeout=10)
    if real.status_code == 200:
        assert text("#model-generation") == str(real.json()["generation"])
    else:
        assert text("#model-generation") == "—"

    # -- trace with no switch: netmaster's refusal, shown as it wrote it
    web1, db1 = eps["web1"], eps["db1"]

    def trace(dst, proto, port):
        css("#tab-trace").click()
        wait.until(EC.visibility_of_element_located((By.ID, "trace-form")))
        Select(css("#trace-from")).select_by_value(web1["endpointID"])
        to = css("#trace-to")
        to.clear()
        to.send_keys(dst)
        Select(css("#trace-protocol")).select_by_value(proto)
        p = css("#trace-port")
        p.clear()
        p.send_keys(str(port))
        css("#trace-submit").click()
        wait.until(lambda _: csss("#trace-error") or csss("#trace-verdict"))

    trace(db1["ipAddress"][0], "tcp", 8888)
    err = text("#trace-error")
    assert "(400)" in err and f"port {web1['intfName']} is not on h1's switch yet" in err, err
    assert not csss("#trace-output")

    # -- two stand-in switches connect as h1 and h2 with the endpoints' ports
    for label in HOSTS:
        world["switches"].append(FakeSwitch(nm.of_port, dpid_for_host(label), switch_ports(eps, label)).start())
    wait_until(lambda: sorted(s["host"] for s in ok(nm.get("/api/v1/switches/"))
                              if (s["lastReconcile"] or {}).get("outcome") in ("committed", "noop")) == ["h1", "h2"],
               20, what="both switches reconciled")
    reload(d, wait)
    css("#tab-hosts").click()
    for label in HOSTS:
        row = css(f'#hosts-body tr[data-dpid="{"%016x" % dpid_for_host(label)}"]')
        assert label in row.text and ("committed" in row.text or "noop" in row.text), row.text

    real = requests.get(nm.url + "/api/v1/realization/", timeout=10)
    if real.status_code == 200:             # realized: every live host has committed the last write
        wait_until(lambda: all(h["live"] for h in ok(nm.get("/api/v1/realization/"))["hosts"]), 20,
                   what="both hosts live")
        reload(d, wait)
        gen = text("#model-generation")
        for label in HOSTS:
            row = text(f'#hosts-body tr[data-host="{label}"]')
            assert f"{gen} in sync" in row and row.endswith("live"), row
            sw = text(f'#hosts-body tr[data-dpid="{"%016x" % dpid_for_host(label)}"]')
            assert sw.split()[-1] == gen, sw

    trace(db1["ipAddress"][0], "tcp", 8888)
    out = text("#trace-output")
    verdict = text("#trace-verdict")
    assert "DELIVERED" in verdict, out
    assert f"trace tcp {web1['ipAddress'][0]} -> {db1['ipAddress'][0]}:8888" in out
    assert [h.get_attribute("data-host") for h in csss("#trace-output .hop")] == ["h1", "h2"]
    assert "INGRESS_POLICY" in out and "rule default:db-policy:2 (in tcp 8888 allow)" in out

    trace(db1["ipAddress"][0], "tcp", 5432)
    verdict = text("#trace-verdict")
    assert "DROPPED" in verdict and "by rule default:db-policy:1 (in tcp deny) on h2: rule matched" in verdict, \
        text("#trace-output")
    assert csss("#trace-output .drop")

    # a bad request: the server's message, not a broken page
    trace(db1["ipAddress"][0], "tcp", 0)
    assert "port: 0 is not a port number (1-65535) for tcp" in text("#trace-error")
    for sw in world["switches"]:
        assert sw.error is None, sw.error


def test_realization_shown_when_offered_and_dash_when_not(tmp_path):
    """The hosts tab against an in-process RestApp whose extensions answer as
    netmaster will once realization data exists (a switch's `generation`,
    GET /api/v1/realization/), then as a netmaster without OpenFlow (409) and
    without the route (404)."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
    from socketserver import ThreadingMixIn

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from model.service import Model
    from rest.app import HTTPError, RestApp
    from store.sqlite import SqliteStore

    mode = {"on": True}
    dp1, dp2 = "%016x" % dpid_for_host("h1"), "%016x" % dpid_for_host("h2")

    def switches(req, parts):
        if not mode["on"]:
            raise HTTPError(409, "openflow: this netmaster runs without its OpenFlow controller")
        return [{"dpid": dp1, "host": "h1", "generation": 7, "lastReconcile": {
                    "outcome": "committed", "added": 3, "modified": 0, "deleted": 0, "unchanged": 70}},
                {"dpid": dp2, "host": "h2", "lastReconcile": None}]

    def realization(req, parts):
        if not mode["on"]:
            raise HTTPError(404, "no such path /api/v1/realization/")
        return {"generation": 7, "hosts": [{"host": "h1", "generation": 7, "live": True},
                                           {"host": "h2", "generation": 5, "live": False}]}

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    class Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    store = SqliteStore(str(tmp_path / "state.db"))
    server = thread = None
    try:
        model = Model(store)
        model.bootstrap()
        for label, vtep in HOSTS.items():
            model.register_host(label, {"hostLabel": label, "vtepIP": vtep, "dpid": "%016x" % dpid_for_host(label)})
        app = RestApp(model, extensions={"switches": switches, "realization": realization})
        server = make_server("127.0.0.1", 0, app, server_class=Threaded, handler_class=Quiet)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}/ui/#hosts"
        with chromium(str(tmp_path)) as d:
            d.get(url)
            wait = WebDriverWait(d, 20)
            wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, "body[data-loaded]"))

            def row(sel):
                return d.find_element(By.CSS_SELECTOR, sel).text

            assert d.find_element(By.ID, "model-generation").text == "7"
            assert "7 in sync" in row('#hosts-body tr[data-host="h1"]') and "live" in row('#hosts-body tr[data-host="h1"]')
            h2 = row('#hosts-body tr[data-host="h2"]')
            assert "5 behind" in h2 and "not live" in h2, h2
            s1 = row(f'#hosts-body tr[data-dpid="{dp1}"]')
            assert s1.split()[-1] == "7" and "committed" in s1, s1
            s2 = row(f'#hosts-body tr[data-dpid="{dp2}"]')
            assert s2.split()[-1] == "—" and "h2" in s2, s2

            mode["on"] = False
            reload(d, wait)
            assert d.find_element(By.ID, "model-generation").text == "—"
            h1 = row('#hosts-body tr[data-host="h1"]')
            assert h1.endswith("— —") and "up" in h1, h1
            assert "not offered by this netmaster" in row("#hosts-body")
            assert row("#switches-unavailable") == ("Switches: — (409: openflow: this netmaster runs "
                                                    "without its OpenFlow controller)")
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)
        store.close()
