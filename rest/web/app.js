// netweave's read-only web view.  Plain JS, no framework, no build step.
// Every piece of data reaches the page through text nodes (el() below),
// never parsed as HTML.
"use strict";

(function () {
  const API = "../api/v1/";          // relative to /ui/, so a path prefix keeps working
  const DASH = "\u2014";
  let state = null;                  // the last load()
  let loads = 0;                     // completed refreshes, in body[data-loaded] (tests wait on it)

  // ------------------------------------------------------------ DOM helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      if (Array.isArray(c)) append(node, c);
      else if (c instanceof Node) node.appendChild(c);
      else node.appendChild(document.createTextNode(String(c)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function badge(text, kind) {
    return el("span", { class: "badge " + (kind || "") }, text);
  }

  function table(headers, rows, attrs) {
    return el("table", attrs || {},
      el("thead", {}, el("tr", {}, headers.map(h => el("th", {}, h)))),
      el("tbody", {}, rows));
  }

  function show(v) {
    return v === undefined || v === null || v === "" ? DASH : v;
  }

  function sortTenants(tenants) {
    // the default tenant first, then by name
    return tenants.slice().sort((a, b) => (a.tenantName !== "default") - (b.tenantName !== "default") ||
      String(a.tenantName).localeCompare(String(b.tenantName)));
  }

  function byName(key) {
    return (a, b) => String(a[key]).localeCompare(String(b[key]));
  }

  // ------------------------------------------------------------ data
  // Never throws: {ok, status, data, error}.
  async function api(path) {
    let resp;
    try {
      resp = await fetch(path.startsWith("/") || path.startsWith(".") ? path : API + path,
                         { headers: { Accept: "application/json" }, cache: "no-store" });
    } catch (exc) {
      return { ok: false, status: 0, data: null, error: "netmaster is unreachable (" + exc.message + ")" };
    }
    let data = null;
    try { data = await resp.json(); } catch (exc) { data = null; }
    if (!resp.ok) {
      const msg = data && typeof data.error === "string" ? data.error : resp.statusText;
      return { ok: false, status: resp.status, data: null, error: msg };
    }
    return { ok: true, status: resp.status, data: data, error: null };
  }

  async function load() {
    const names = ["tenants", "networks", "endpoints", "endpointGroups", "policys", "rules", "hosts",
                   "switches", "realization"];
    const answers = await Promise.all(names.map(n => api(n + "/")));
    const s = {};
    names.forEach((n, i) => { s[n] = answers[i]; });
    const version = await api("../version");
    s.version = version.ok ? version.data.Version : "";
    // oper data of every network (pktTag, addresses in use)
    s.netOper = {};
    const nets = s.networks.ok ? s.networks.data : [];
    const opers = await Promise.all(nets.map(n => api("inspect/networks/" +
      encodeURIComponent(n.tenantName + ":" + n.networkName) + "/")));
    nets.forEach((n, i) => { s.netOper[n.key] = opers[i].ok ? (opers[i].data.Oper || {}) : {}; });
    return s;
  }

  function list(answer) {
    return answer && answer.ok && Array.isArray(answer.data) ? answer.data : [];
  }

  async function refresh() {
    document.getElementById("updated").textContent = "loading…";
    state = await load();
    const banner = document.getElementById("banner");
    const core = ["tenants", "networks", "endpoints", "endpointGroups", "policys", "rules", "hosts"];
    const failed = core.filter(n => !state[n].ok);
    if (failed.length) {
      banner.hidden = false;
      banner.textContent = failed.map(n => "GET /api/v1/" + n + "/: " + state[n].error).join("; ");
    } else {
      banner.hidden = true;
      banner.textContent = "";
    }
    document.getElementById("version").textContent = state.version;
    renderTopology(state);
    renderPolicy(state);
    renderHosts(state);
    fillTraceForm(state);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.setAttribute("data-loaded", String(++loads));
  }

  // ------------------------------------------------------------ tenants -> networks -> endpoints
  function renderTopology(s) {
    const root = clear(document.getElementById("topology-body"));
    const tenants = sortTenants(list(s.tenants));
    const nets = list(s.networks);
    const eps = list(s.endpoints);
    const groups = list(s.endpointGroups);
    const hostState = {};
    list(s.hosts).forEach(h => { hostState[h.hostLabel] = h.state; });
    if (!tenants.length) root.appendChild(el("p", { class: "muted" }, "No tenants."));
    for (const t of tenants) {
      const tnets = nets.filter(n => n.tenantName === t.tenantName).sort(byName("networkName"));
      const teps = eps.filter(e => e.tenantName === t.tenantName);
      const card = el("div", { class: "card tenant", "data-tenant": t.tenantName },
        el("h2", {}, "tenant ", el("span", { class: "name" }, t.tenantName),
           el("span", { class: "count" }, plural(tnets.length, "network") + ", " + plural(teps.length, "endpoint"))));
      if (!tnets.length) card.appendChild(el("p", { class: "muted" }, "No networks."));
      for (const n of tnets) card.appendChild(renderNetwork(s, n, teps, groups, hostState));
      root.appendChild(card);
    }
  }

  function renderNetwork(s, n, teps, groups, hostState) {
    const oper = s.netOper[n.key] || {};
    const neps = teps.filter(e => e.networkName === n.networkName);
    const ngroups = groups.filter(g => g.tenantName === n.tenantName && g.networkName === n.networkName)
      .sort(byName("groupName"));
    const box = el("div", { class: "network", "data-network": n.key },
      el("h3", {}, el("span", { class: "name" }, n.networkName),
         el("span", { class: "chips" },
           chip("subnet", n.subnet), chip("gateway", n.gateway), chip("encap", n.encap),
           chip(n.encap === "vlan" ? "vlan" : "vni", oper.pktTag),
           chip("endpoints", oper.numEndpoints !== undefined ? oper.numEndpoints : neps.length))));
    if (oper.allocatedIPAddresses !== undefined) {
      box.appendChild(el("p", { class: "muted small" }, "addresses in use: " + show(oper.allocatedIPAddresses) +
        "  \u00b7  free: " + show(oper.availableIPAddresses)));
    }
    if (ngroups.length) {
      box.appendChild(el("p", { class: "small" }, "groups: ",
        ngroups.map((g, i) => [i ? ", " : "", el("strong", {}, g.groupName),
          " (" + ((g.policies || []).length ? (g.policies || []).join(", ") : "no policy: open") + ")"])));
    }
    if (!neps.length) {
      box.appendChild(el("p", { class: "muted" }, "No endpoints."));
      return box;
    }
    const hosts = [...new Set(neps.map(e => e.homingHost))].sort();
    const grid = el("div", { class: "hosts-grid" });
    for (const h of hosts) {
      const heps = neps.filter(e => e.homingHost === h)
        .sort((a, b) => ipNum(a.ipAddress[0]) - ipNum(b.ipAddress[0]));
      const st = hostState[h];
      grid.appendChild(el("div", { class: "host-group", "data-host": h },
        el("h4", {}, "host ", el("span", { class: "name" }, h), " ",
           badge(st || "unknown", st === "up" ? "ok" : st === "down" ? "bad" : "")),
        table(["address", "group", "endpoint", "container", "port"], heps.map(e =>
          el("tr", { "data-endpoint": e.endpointID },
            el("td", { class: "mono" }, (e.ipAddress || [])[0] || DASH),
            el("td", {}, show(e.groupName)),
            el("td", { class: "mono", title: e.macAddress }, e.endpointID),
            el("td", { class: "mono" }, short(e.containerID)),
            el("td", { class: "mono" }, show(e.intfName)))), { class: "endpoints" })));
    }
    box.appendChild(grid);
    return box;
  }

  function chip(label, value) {
    return el("span", { class: "chip" }, el("span", { class: "muted" }, label + " "), show(value));
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function short(id) {
    if (!id) return DASH;
    return id.length > 16 ? id.slice(0, 12) + "…" : id;
  }

  function ipNum(ip) {
    return String(ip || "").split(".").reduce((acc, x) => acc * 256 + (parseInt(x, 10) || 0), 0);
  }

  // ------------------------------------------------------------ policy matrix
  function peerOf(r) {
    if (r.direction === "in") {
      if (r.fromEndpointGroup) return { kind: "group", name: r.fromEndpointGroup };
      if (r.fromNetwork) return { kind: "network", name: r.fromNetwork };
      if (r.fromIpAddress) return { kind: "address", name: r.fromIpAddress };
    } else {
      if (r.toEndpointGroup) return { kind: "group", name: r.toEndpointGroup };
      if (r.toNetwork) return { kind: "network", name: r.toNetwork };
      if (r.toIpAddress) return { kind: "address", name: r.toIpAddress };
    }
    return { kind: "any", name: "" };
  }

  function ruleWhat(r) {
    return (r.protocol || "any") + (r.port ? " " + r.port : "");
  }

  function ruleOrder(a, b) {
    // out rules are met first (on the source host), then in rules; higher priority first, deny first on a tie
    if (a.rule.direction !== b.rule.direction) return a.rule.direction === "out" ? -1 : 1;
    if (a.rule.priority !== b.rule.priority) return b.rule.priority - a.rule.priority;
    if (a.rule.action !== b.rule.action) return a.rule.action === "deny" ? -1 : 1;
    return String(a.rule.key).localeCompare(String(b.rule.key));
  }

  function renderPolicy(s) {
    const root = clear(document.getElementById("policy-body"));
    const tenants = sortTenants(list(s.tenants));
    const allGroups = list(s.endpointGroups);
    const rules = list(s.rules);
    const policies = list(s.policys);
    let shown = 0;
    for (const t of tenants) {
      const groups = allGroups.filter(g => g.tenantName === t.tenantName).sort(byName("groupName"));
      const tpolicies = policies.filter(p => p.tenantName === t.tenantName);
      if (!groups.length && !tpolicies.length) continue;
      shown++;
      // rules attached to each group, with the group they act for
      const attached = [];          // {group, rule, peer}
      for (const g of groups) {
        for (const pname of g.policies || []) {
          for (const r of rules.filter(r => r.tenantName === t.tenantName && r.policyName === pname)) {
            attached.push({ group: g.groupName, rule: r, peer: peerOf(r) });
          }
        }
      }
      const card = el("div", { class: "card", "data-tenant": t.tenantName },
        el("h2", {}, "tenant ", el("span", { class: "name" }, t.tenantName)));
      if (groups.length) {
        card.appendChild(matrix(groups, attached));
      } else {
        card.appendChild(el("p", { class: "muted" }, "No endpoint groups."));
      }
      card.appendChild(groupList(groups));
      const others = attached.filter(a => a.peer.kind === "network" || a.peer.kind === "address");
      card.appendChild(el("h3", {}, "Rules with network or address peers"));
      if (others.length) {
        card.appendChild(table(["group", "rule", "direction", "peer", "protocol / port", "action", "priority"],
          others.sort(ruleOrder).map(a => el("tr", {},
            el("td", {}, a.group),
            el("td", { class: "mono" }, a.rule.policyName + ":" + a.rule.ruleId),
            el("td", {}, a.rule.direction === "in" ? "in (from peer)" : "out (to peer)"),
            el("td", {}, a.peer.kind + " " + a.peer.name),
            el("td", {}, ruleWhat(a.rule)),
            el("td", {}, badge(a.rule.action, a.rule.action === "allow" ? "ok" : "bad")),
            el("td", { class: "num" }, a.rule.priority))), { class: "peers" }));
      } else {
        card.appendChild(el("p", { class: "muted" }, "None."));
      }
      const unattached = tpolicies.filter(p => !groups.some(g => (g.policies || []).includes(p.policyName)));
      if (unattached.length) {
        card.appendChild(el("p", { class: "muted" }, "Policies attached to no group (they act on nothing): " +
          unattached.map(p => p.policyName).sort().join(", ")));
      }
      root.appendChild(card);
    }
    if (!shown) root.appendChild(el("p", { class: "muted" }, "No endpoint groups or policies."));
  }

  function matrix(groups, attached) {
    const names = groups.map(g => g.groupName);
    const ANY = "\u0000any";
    const rowsOf = names.concat([ANY]);
    const label = n => n === ANY ? el("em", {}, "any") : n;
    const head = el("tr", {}, el("th", { class: "corner" }, "from \u2193  to \u2192"),
      rowsOf.map(n => el("th", { scope: "col" }, label(n))));
    const body = rowsOf.map(src => el("tr", {},
      el("th", { scope: "row" }, label(src)),
      rowsOf.map(dst => cell(src, dst, ANY, attached))));
    return el("div", { class: "scroll" }, el("table", { class: "matrix" }, el("thead", {}, head), el("tbody", {}, body)));
  }

  function cell(src, dst, ANY, attached) {
    // what a new connection src -> dst meets: src's out rules towards dst (or anyone),
    // then dst's in rules from src (or anyone)
    const hits = attached.filter(a =>
      (a.rule.direction === "out" && src !== ANY && a.group === src &&
        (a.peer.kind === "any" || (a.peer.kind === "group" && a.peer.name === dst))) ||
      (a.rule.direction === "in" && dst !== ANY && a.group === dst &&
        (a.peer.kind === "any" || (a.peer.kind === "group" && a.peer.name === src))));
    const extra = attached.some(a =>
      (a.peer.kind === "network" || a.peer.kind === "address") &&
      ((a.rule.direction === "out" && a.group === src) || (a.rule.direction === "in" && a.group === dst)));
    const td = el("td", { "data-from": src === ANY ? "any" : src, "data-to": dst === ANY ? "any" : dst,
                          class: hits.length ? "rules" : "open" });
    if (!hits.length) {
      td.appendChild(el("div", { class: "allowall" }, "all allowed"));
    } else {
      for (const a of hits.sort(ruleOrder)) {
        td.appendChild(el("div", { class: "rule " + a.rule.action },
          el("span", { class: "what" }, ruleWhat(a.rule) + " " + a.rule.action),
          el("span", { class: "meta" }, "p" + a.rule.priority + " \u00b7 " + a.rule.direction + " on " + a.group +
             " \u00b7 " + a.rule.policyName + ":" + a.rule.ruleId)));
      }
      td.appendChild(el("div", { class: "otherwise" }, "otherwise allowed"));
    }
    if (extra) td.appendChild(el("div", { class: "otherwise" }, "+ network/address rules below"));
    return td;
  }

  function groupList(groups) {
    if (!groups.length) return el("span");
    return el("div", {}, el("h3", {}, "Groups"),
      table(["group", "network", "policies", "netprofile"], groups.map(g => el("tr", { "data-group": g.groupName },
        el("td", {}, g.groupName), el("td", {}, g.networkName),
        el("td", {}, (g.policies || []).length ? g.policies.join(", ") : el("em", {}, "none: open")),
        el("td", {}, show(g.netProfile))))));
  }

  // ------------------------------------------------------------ hosts and switches
  function renderHosts(s) {
    const root = clear(document.getElementById("hosts-body"));
    const real = s.realization;
    const realOk = real && real.ok && real.data && typeof real.data === "object";
    const realHosts = {};
    if (realOk && Array.isArray(real.data.hosts)) real.data.hosts.forEach(h => { realHosts[h.host] = h; });
    const modelGen = realOk && real.data.generation !== undefined ? real.data.generation : null;

    root.appendChild(el("h2", {}, "Hosts"));
    root.appendChild(el("p", { class: "muted" }, "Registered by their netplugin; a host is down when its heartbeats stop. " +
      "Model generation: ", el("strong", { id: "model-generation" }, show(modelGen)),
      realOk ? "" : "  (realization: " + unavailable(real) + ")"));
    const hosts = list(s.hosts).slice().sort(byName("hostLabel"));
    root.appendChild(hosts.length ? table(
      ["host", "state", "VTEP", "dpid", "endpoints", "last heartbeat", "uplink", "realized generation", "live"],
      hosts.map(h => {
        const r = realHosts[h.hostLabel] || {};
        const gen = r.generation;
        return el("tr", { "data-host": h.hostLabel },
          el("td", {}, h.hostLabel),
          el("td", {}, badge(h.state || "unknown", h.state === "up" ? "ok" : "bad")),
          el("td", { class: "mono" }, show(h.vtepIP)),
          el("td", { class: "mono" }, show(h.dpid)),
          el("td", { class: "num" }, show(h.numEndpoints)),
          el("td", {}, when(h.lastHeartbeat)),
          el("td", { class: "mono" }, show(h.uplink)),
          el("td", { class: "num" }, gen === undefined || gen === null ? DASH :
             [String(gen), " ", modelGen === null ? "" : gen === modelGen ? badge("in sync", "ok") : badge("behind", "warn")]),
          el("td", {}, r.live === undefined ? DASH : badge(r.live ? "live" : "not live", r.live ? "ok" : "warn")));
      }), { class: "hosts" }) : el("p", { class: "muted" }, "No hosts registered."));

    root.appendChild(el("h2", {}, "Switches"));
    const sw = s.switches;
    if (!sw.ok) {
      root.appendChild(el("p", { class: "muted", id: "switches-unavailable" }, "Switches: " + unavailable(sw)));
      return;
    }
    const rows = list(sw).slice().sort(byName("dpid"));
    if (!rows.length) {
      root.appendChild(el("p", { class: "muted" }, "No switch is connected."));
      return;
    }
    root.appendChild(table(["dpid", "host", "last reconcile", "added", "modified", "deleted", "unchanged", "generation"],
      rows.map(x => {
        const r = x.lastReconcile;
        const outcome = r ? r.outcome : null;
        return el("tr", { "data-dpid": x.dpid },
          el("td", { class: "mono" }, x.dpid),
          el("td", {}, show(x.host)),
          el("td", {}, outcome ? badge(outcome, outcome === "committed" || outcome === "noop" ? "ok" :
                                             outcome === "failed" || outcome === "discarded" ? "bad" : "") : DASH),
          el("td", { class: "num" }, r ? r.added : DASH),
          el("td", { class: "num" }, r ? r.modified : DASH),
          el("td", { class: "num" }, r ? r.deleted : DASH),
          el("td", { class: "num" }, r ? r.unchanged : DASH),
          el("td", { class: "num" }, x.generation === undefined || x.generation === null ? DASH : x.generation));
      }), { class: "switches" }));
  }

  function unavailable(answer) {
    if (!answer) return DASH;
    if (answer.status === 404) return DASH + " (not offered by this netmaster)";
    return DASH + " (" + (answer.status ? answer.status + ": " : "") + answer.error + ")";
  }

  function when(ts) {
    if (!ts) return DASH;
    const d = new Date(ts * 1000);
    const age = Math.max(0, Math.round(Date.now() / 1000 - ts));
    return d.toLocaleTimeString() + " (" + age + " s ago)";
  }

  // ------------------------------------------------------------ trace
  function fillTraceForm(s) {
    const from = document.getElementById("trace-from");
    const keep = from.value;
    clear(from);
    const eps = list(s.endpoints).slice().sort((a, b) =>
      String(a.tenantName).localeCompare(String(b.tenantName)) || ipNum(a.ipAddress[0]) - ipNum(b.ipAddress[0]));
    for (const e of eps) {
      from.appendChild(el("option", { value: e.endpointID },
        (e.ipAddress || [])[0] + "  " + e.tenantName + ":" + e.networkName +
        (e.groupName ? " / " + e.groupName : "") + "  on " + e.homingHost + "  (" + e.endpointID + ")"));
    }
    if (keep && eps.some(e => e.endpointID === keep)) from.value = keep;
    const targets = clear(document.getElementById("trace-targets"));
    for (const e of eps) {
      targets.appendChild(el("option", { value: (e.ipAddress || [])[0] },
        e.tenantName + ":" + e.networkName + (e.groupName ? " / " + e.groupName : "") + " on " + e.homingHost));
    }
    document.getElementById("trace-submit").disabled = !eps.length;
  }

  async function runTrace(ev) {
    ev.preventDefault();
    const out = clear(document.getElementById("trace-result"));
    const q = new URLSearchParams({
      from: document.getElementById("trace-from").value,
      to: document.getElementById("trace-to").value.trim(),
      protocol: document.getElementById("trace-protocol").value,
      port: document.getElementById("trace-port").value || "0",
    });
    out.appendChild(el("p", { class: "muted" }, "tracing…"));
    const r = await api("trace/?" + q.toString());
    clear(out);
    if (!r.ok) {
      out.appendChild(el("div", { class: "error", id: "trace-error" },
        el("strong", {}, "netmaster refused the trace" + (r.status ? " (" + r.status + ")" : "") + ": "), r.error));
      return;
    }
    out.appendChild(renderTrace(r.data, q.get("protocol"), q.get("port")));
  }

  function renderTrace(t, proto, port) {
    const pkt = t.packet || {};
    const withPort = (proto === "tcp" || proto === "udp") && port && port !== "0";
    const box = el("div", { class: "trace", id: "trace-output" });
    box.appendChild(el("p", { class: "mono" }, "trace " + proto + " " + pkt.ip_src + " -> " + pkt.ip_dst +
      (withPort ? ":" + port : "") + " from " + t.from.endpoint + " on " + t.from.host + " (a new connection)"));
    for (const hop of t.hops || []) {
      const hopBox = el("div", { class: "hop", "data-host": hop.host }, el("h3", {}, hop.host));
      hopBox.appendChild(table(["table", "name", "owner", "priority"], hop.steps.map(st => el("tr", { title: st.flow },
        el("td", { class: "num" }, st.table), el("td", { class: "mono" }, st.tableName),
        el("td", {}, st.owner), el("td", { class: "num" }, st.priority))), { class: "steps" }));
      for (const d of hop.drops || []) hopBox.appendChild(el("div", { class: "drop" }, "\u2717 " + d));
      if (hop.outputs && hop.outputs.length) {
        hopBox.appendChild(el("div", { class: "muted small" }, "out: " + hop.outputs.join(", ")));
      }
      hopBox.appendChild(el("details", {}, el("summary", {}, "flows hit"),
        el("pre", {}, hop.steps.map(st => st.flow).join("\n"))));
      box.appendChild(hopBox);
    }
    const d = t.decidedBy || {};
    const kind = t.verdict === "delivered" ? "ok" : t.verdict === "answered" ? "info" : "bad";
    box.appendChild(el("p", { class: "verdict", id: "trace-verdict" }, "verdict: ",
      badge(String(t.verdict).toUpperCase(), kind),
      d.by ? "  by " + d.by + " on " + d.host + ": " + d.why : ""));
    if (t.problems && t.problems.length) {
      box.appendChild(el("ul", { class: "problems" }, t.problems.map(p => el("li", {}, String(p)))));
    }
    return box;
  }

  // ------------------------------------------------------------ tabs
  const TABS = ["topology", "policy", "hosts", "trace"];

  function showTab() {
    const want = (location.hash || "#topology").slice(1);
    const tab = TABS.includes(want) ? want : "topology";
    for (const t of TABS) {
      document.getElementById(t).hidden = t !== tab;
      document.getElementById("tab-" + t).classList.toggle("active", t === tab);
    }
  }

  window.addEventListener("hashchange", showTab);
  document.addEventListener("DOMContentLoaded", () => {
    showTab();
    document.getElementById("refresh").addEventListener("click", refresh);
    document.getElementById("trace-form").addEventListener("submit", runTrace);
    refresh();
  });
})();
