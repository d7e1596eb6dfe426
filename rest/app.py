"""netmaster's REST API: a WSGI app speaking Contiv's wire format.

Routes (trailing slash optional):
  GET                 /api/v1/<collection>/            list
  GET|POST|PUT|DELETE /api/v1/<collection>/<key>/      one object (POST/PUT create or update)
  GET                 /api/v1/inspect/<collection>/<key>/   {"Config": ..., "Oper": ...}
  GET                 /api/v1/openapi.json, /version, /info
  GET                 /healthz, /readyz, /metrics (Prometheus)
  GET|HEAD            /ui/, /ui/<file>                  the read-only web view (rest/web/)
A write answers with the generation it was committed at
(X-Netweave-Generation); with ?wait=true[&timeout=S] it answers once the
change is live on every host that is up, or names the hosts that lag.
Errors are 4xx with {"error": "..."} and the same message in the status
line's reason phrase, because Contiv's client shows only the status line for
anything but a 500.  No input yields a 5xx or a traceback.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import socket
import time

import webob
import webob.dec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

from model import oper, schema
from model.service import Model
from model.validate import ModelError
from netweave.pki import cert_sha256
from rest import auth as authz
from rest import guard, openapi
from rest.guard import HTTPError
from store.base import StoreError

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
WAIT_DEFAULT, WAIT_MAX = 10.0, 300.0     # seconds a ?wait=true write may wait for realization

REQUESTS = Counter("netweave_rest_requests_total", "REST requests answered",
                   ["method", "route", "status"])
LATENCY = Histogram("netweave_rest_request_duration_seconds", "Time to answer a REST request",
                    ["method", "route"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
WEB_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
             ".svg": "image/svg+xml", ".ico": "image/x-icon"}
WEB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
VERSION = {"GitCommit": "", "Version": "netweave-0.1.0", "BuildTime": "", "Product": "netweave"}


def _reason(message: str) -> str:
    """A status-line-safe copy of the message (latin-1, one line, bounded)."""
    text = " ".join(message.split())
    return text.encode("latin-1", "replace").decode("latin-1")[:400]


def json_response(data, status: int = 200, reason: str | None = None) -> webob.Response:
    body = (json.dumps(data) + "\n").encode()
    resp = webob.Response(body=body, content_type="application/json", charset=None)
    resp.status = f"{status} {reason}" if reason else status
    return resp


def error_response(status: int, message: str) -> webob.Response:
    return json_response({"error": message}, status, _reason(message))


class RestApp:
    """The WSGI callable. `extensions` maps a first path segment under
    /api/v1/ to a handler (request, parts) -> data, for the controller's own
    routes (flows, trace) without this module knowing about switches."""

    def __init__(self, model: Model, info=None, extensions=None, extra_oper=None, ready=None,
                 realize=None, auth: authz.Auth | None = None, pki=None):
        self.model = model
        # auth: users, tokens and host credentials (None: only the loopback door works);
        # pki: netweave.pki.PKI that signs host certificates with their credential
        self.auth = auth
        self.pki = pki
        self.info = info or (lambda: {})
        self.extensions = extensions or {}
        self.extra_oper = extra_oper
        # ready() -> (bool, {check: "ok" | reason}); realize(generation, timeout) ->
        # {"live": [...], "lagging": [...]} or None when realization cannot be known
        self.ready = ready or (lambda: (True, {}))
        self.realize = realize
        self.spec = openapi.document()

    @webob.dec.wsgify
    def __call__(self, req: webob.Request):
        t0 = time.perf_counter()
        try:
            path = guard.path(req.environ)
        except HTTPError as exc:
            path, resp = "", error_response(exc.status, str(exc))
        else:
            resp = self._answer(req)
        route = _route_label(path)
        REQUESTS.labels(req.method, route, str(resp.status_code)).inc()
        LATENCY.labels(req.method, route).observe(time.perf_counter() - t0)
        p = req.environ.get("netweave.principal") or _ANONYMOUS
        # a host's heartbeat (a POST of its own record every second or two) is not news
        beat = p.kind == "host" and route == "/api/v1/hosts/{key}" and resp.status_code == 200
        if (req.method not in authz.READ and not beat) or resp.status_code in (401, 403):
            authz.audit(p, req.method, path, resp.status_code,
                        req.environ.get("netweave.listener", "local"), req.remote_addr)
        return resp

    def _answer(self, req: webob.Request) -> webob.Response:
        try:
            guard.check_host(req.environ)
            guard.check_origin(req.environ, req.method)
            self._authenticate(req)
            data = self.route(req)
            if isinstance(data, webob.Response):
                return data
            return json_response(data)
        except ModelError as exc:
            return error_response(exc.status, str(exc))
        except HTTPError as exc:
            resp = error_response(exc.status, str(exc))
            resp.headers.update(exc.headers)
            return resp
        except authz.AuthError as exc:
            resp = error_response(exc.status, str(exc))
            resp.headers.update(exc.headers)
            if exc.status == 401:
                resp.headers["WWW-Authenticate"] = 'Bearer realm="netweave"'
            return resp
        except StoreError as exc:               # the store is out of reach: nothing was stored
            log.warning("event=rest_store_unavailable method=%s path=%s error=%r", req.method, req.path, str(exc))
            return error_response(503, str(exc))
        except Exception:                       # a bug: log it, never leak a traceback
            log.exception("event=rest_internal_error method=%s path=%s", req.method, req.path)
            return error_response(500, "internal error; see netmaster's log")

    # ------------------------------------------------------------ authentication
    def _authenticate(self, req: webob.Request) -> None:
        """The loopback listener's requests are the local administrator's; any other
        listener (main.py marks its requests netweave.listener=tls) needs a token,
        except for the few public routes (login, version, health, OpenAPI, the web
        view's static files)."""
        if req.environ.get("netweave.listener", "local") == "local":
            req.environ["netweave.principal"] = authz.LOCAL
            return
        parts = [p for p in req.path.split("/") if p]
        if _public(req.method, parts):
            return
        header = req.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else \
            req.headers.get("X-Auth-Token", "").strip()          # Contiv's netctl sends x-auth-token
        if not token:
            raise authz.AuthError(401, "authorization: a token is required on this listener "
                                       "(Authorization: Bearer TOKEN; netctl login)")
        if self.auth is None:
            raise authz.AuthError(401, "authorization: this netmaster has no user store")
        p = self.auth.authenticate(token)
        req.environ["netweave.principal"] = p
        if parts[:2] == ["api", "v1"]:
            authz.authorize(p, req.method, parts[2:])
        elif p.kind == "bootstrap":
            raise authz.AuthError(403, f"forbidden: the bootstrap token may not {req.method} {req.path}")

    @staticmethod
    def principal(req) -> authz.Principal:
        return req.environ.get("netweave.principal") or authz.LOCAL

    def _auth_proxy(self, req: webob.Request, parts: list[str]):
        """Contiv's auth proxy paths, served by netmaster itself:
          POST /api/v1/auth_proxy/login/                      {"username","password"} -> token
          GET  /api/v1/auth_proxy/whoami/
          GET  /api/v1/auth_proxy/local_users/[<name>/]       (admin)
          POST|PUT|DELETE /api/v1/auth_proxy/local_users/<name>/   {"password","role","tenants"}
          POST|DELETE /api/v1/auth_proxy/host_credentials/<label>/ a host's credential (bootstrap, admin)
        """
        if self.auth is None:
            raise HTTPError(404, "auth_proxy: this netmaster has no user store")
        p = self.principal(req)
        what = parts[0] if parts else ""
        if what == "login" and len(parts) == 1:
            self._method(req, "POST")
            try:
                out = self.auth.login(self._body(req), req.remote_addr or "")
            except authz.AuthError as exc:
                log.info("event=%s remote=%s status=%d", "login_limited" if exc.status == 429 else "login_failed",
                         req.remote_addr or "-", exc.status)
                raise
            log.info("event=login user=%s remote=%s", out["username"], req.remote_addr or "-")
            req.environ["netweave.principal"] = authz.Principal("user", out["username"], out["role"])
            return out
        if what == "whoami" and len(parts) == 1:
            self._method(req, "GET")
            return {"principal": str(p), "kind": p.kind, "name": p.name, "role": p.role,
                    "tenants": list(p.tenants)}
        if what == "local_users":
            if len(parts) == 1:
                self._method(req, "GET")
                return self.auth.users()
            if len(parts) != 2:
                raise HTTPError(404, "user paths are /api/v1/auth_proxy/local_users/<name>/")
            if req.method == "GET":
                return self.auth.user(parts[1])
            if req.method in ("POST", "PUT"):
                return self.auth.put_user(parts[1], self._body(req))
            if req.method == "DELETE":
                return self.auth.delete_user(parts[1])
            raise method_not_allowed(req, "GET, POST, PUT, DELETE")
        if what == "host_credentials" and len(parts) == 2:
            label = parts[1]
            if req.method == "DELETE":
                return self.auth.revoke_host(label)
            if req.method != "POST":
                raise method_not_allowed(req, "POST, DELETE")
            body = self._body(req)
            if not isinstance(body, dict):
                raise HTTPError(400, "body: a JSON object, {\"vtepIP\": \"a.b.c.d\"} or {}")
            vtep = body.get("vtepIP", "")
            if not isinstance(vtep, str):
                raise HTTPError(400, f"vtepIP: {vtep!r} is not a string")
            try:
                ips = [str(ipaddress.ip_address(vtep))] if vtep else []
            except ValueError:
                raise HTTPError(400, f"vtepIP: {vtep!r} is not an IP address")
            self.auth.check_issue_host(label, p)     # a bad label or a second claim: no certificate
            cert = key = ""
            if self.pki is not None:
                # the host's certificate: its local API serves TLS with it, its switch OpenFlow over TLS
                cert, key = self.pki.issue(f"host:{label}", ips=ips)
            out = {"hostLabel": label, "token": self.auth.issue_host(label, p, cert_sha256(cert) if cert else "")}
            if cert:
                out["cert"], out["key"], out["ca"] = cert, key, self.pki.ca_pem()
            log.info("event=host_credential_issued host=%s by=%s", label, p)
            return out
        raise HTTPError(404, f"no such path {req.path}")

    # ------------------------------------------------------------ routing
    def route(self, req: webob.Request):
        parts = [p for p in req.path.split("/") if p]
        if parts[:1] == ["ui"]:
            return self._web(req, parts[1:])
        if len(parts) == 1 and parts[0] in _TOP_ROUTES:
            self._method(req, "GET")
        if parts == ["version"]:
            return VERSION
        if parts == ["info"]:
            return self._info()
        if parts == ["healthz"]:
            return {"status": "ok"}
        if parts == ["readyz"]:
            ok, checks = self.ready()
            return json_response({"ready": ok, "checks": checks}, 200 if ok else 503,
                                 None if ok else _reason("not ready: " + "; ".join(
                                     f"{k}: {v}" for k, v in checks.items() if v != "ok")))
        if parts == ["metrics"]:
            return webob.Response(body=generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST,
                                  charset=None)
        if len(parts) < 3 or parts[:2] != ["api", "v1"]:
            raise HTTPError(404, f"no such path {req.path}")
        rest = parts[2:]
        if rest == ["openapi.json"]:
            self._method(req, "GET")
            return self.spec
        if rest[0] == "auth_proxy":
            return self._auth_proxy(req, rest[1:])
        if rest[0] in self.extensions:
            handler = self.extensions[rest[0]]
            allowed = getattr(handler, "methods", ("GET",))      # the controller's routes only read
            if req.method not in allowed:
                raise method_not_allowed(req, ", ".join(allowed))
            return handler(req, rest[1:])
        if rest[0] == "inspect":
            if len(rest) != 3:
                raise HTTPError(404, "inspect paths are /api/v1/inspect/<collection>/<key>/")
            self._method(req, "GET")
            kind = self._kind(rest[1])
            return oper.inspect(self.model, kind, rest[2], self.extra_oper)
        kind = self._kind(rest[0])
        if len(rest) == 1:
            self._method(req, "GET")
            host = req.GET.get("host") if kind is schema.ENDPOINT else None
            objs = self.model.list(kind, host=host) if host else self.model.list(kind)
            return [self._wire(kind, o) for o in objs]
        if len(rest) != 2:
            raise HTTPError(404, f"no such path {req.path}")
        key = rest[1]
        if req.method == "GET":
            return self._wire(kind, self.model.get(kind, key))
        if req.method in ("POST", "PUT"):
            wait = self._wait_param(req)
            body = self._body(req)
            if kind is schema.ENDPOINT:
                self._own_endpoint(req, key, body)
                return self._written(self.model.allocate_endpoint(key, body), wait)
            if kind is schema.HOST:             # where the agent spoke from: its switch must too
                return self._written(self.model.register_host(key, body, req.remote_addr or ""), wait)
            return self._written(self._wire(kind, self.model.upsert(kind, key, body)), wait)
        if req.method == "DELETE":
            wait = self._wait_param(req)
            if kind is schema.ENDPOINT:
                self._own_endpoint(req, key, None)
                return self._written(self.model.release_endpoint(key), wait)
            return self._written(self.model.delete(kind, key), wait)
        raise method_not_allowed(req, "GET, POST, PUT, DELETE")

    def _own_endpoint(self, req, key: str, body) -> None:
        """A host's agent writes only endpoints homed on its host."""
        p = self.principal(req)
        if p.kind != "host":
            return
        rec = self.model.store.get(f"ep/{key}")
        if body is not None and (not isinstance(body, dict) or body.get("host") != p.name):
            raise authz.AuthError(403, f"forbidden: {p.describe()} may not write endpoint {key} for "
                                       f"host {body.get('host') if isinstance(body, dict) else '?'}; "
                                       f"needs that host's own credential")
        if rec is not None and rec["homingHost"] != p.name:
            raise authz.AuthError(403, f"forbidden: {p.describe()} may not {req.method} endpoint {key} "
                                       f"of host {rec['homingHost']}; needs that host's own credential")

    @staticmethod
    def _web(req, rest):
        """The web view: one level of plain files from rest/web/, GET and HEAD only.
        A name is served only when it is a listed regular file of that folder,
        so '..', encoded slashes and sub-paths can never leave it."""
        if req.method not in ("GET", "HEAD"):
            raise method_not_allowed(req, "GET, HEAD")
        if not rest and not req.path.endswith("/"):
            return webob.Response(status=301, location=req.script_name + "/ui/")
        name = rest[0] if len(rest) == 1 else "index.html" if not rest else None
        ctype = WEB_TYPES.get(os.path.splitext(name or "")[1])
        try:
            listed = name is not None and WEB_NAME.match(name) and name in os.listdir(WEB_DIR)
        except OSError:
            listed = False
        path = os.path.join(WEB_DIR, name) if listed else None
        if not listed or ctype is None or not os.path.isfile(path) or os.path.islink(path):
            raise HTTPError(404, f"no such path {req.path}")
        with open(path, "rb") as f:
            body = f.read()
        resp = webob.Response(body=body, content_type=ctype,
                              charset="utf-8" if ctype.startswith("text/") or ctype.endswith("+xml") else None)
        resp.headers["Cache-Control"] = "no-cache"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; "
                                                   "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        return resp

    # ------------------------------------------------------------ realization
    @staticmethod
    def _wait_param(req) -> float | None:
        """None, or the seconds a write may wait until it is live (?wait=true&timeout=S)."""
        wait = req.GET.get("wait", "")
        if wait.lower() not in ("", "0", "false", "no", "1", "true", "yes"):
            raise HTTPError(400, f"wait: {wait!r} is not true or false")
        raw = req.GET.get("timeout", "")
        try:
            timeout = float(raw) if raw else WAIT_DEFAULT
        except ValueError:
            raise HTTPError(400, f"timeout: {raw!r} is not a number of seconds")
        if not 0 <= timeout <= WAIT_MAX:        # checked even without wait: a bad value is a bad request
            raise HTTPError(400, f"timeout: {raw} is outside 0-{WAIT_MAX:.0f} seconds")
        return None if wait.lower() in ("", "0", "false", "no") else timeout

    def _written(self, data, wait: float | None) -> webob.Response:
        """The write's answer, with its generation, and with ?wait how far it is live."""
        gen = self.model.store.generation
        resp = json_response(data)
        resp.headers["X-Netweave-Generation"] = str(gen)
        if wait is not None and self.realize is not None:
            r = self.realize(gen, wait)
            if r is not None:
                n = len(r["live"]) + len(r["lagging"])
                resp.headers["X-Netweave-Realized"] = f"{len(r['live'])}/{n}"
                if r["lagging"]:
                    resp.headers["X-Netweave-Lagging"] = ",".join(r["lagging"])
        return resp

    def _wire(self, kind, obj):
        if kind in (schema.HOST, schema.ENDPOINT):
            return obj
        return oper.wire(self.model, kind, obj)

    @staticmethod
    def _method(req, allowed):
        if req.method != allowed:
            raise method_not_allowed(req, allowed)

    @staticmethod
    def _kind(collection: str) -> schema.Kind:
        kind = schema.KINDS.get(collection)
        if kind is None:
            raise HTTPError(404, f"collection {collection}: unknown (known: {', '.join(sorted(schema.KINDS))})")
        return kind

    @staticmethod
    def _body(req):
        raw = guard.read_body(req.environ, req.content_length, MAX_BODY)
        if not raw:                 # no body: the key in the path says it all (Contiv's clients)
            return {}
        return guard.parse_json(raw)

    def _info(self):
        hosts = self.model.list(schema.HOST)
        base = {
            "local-ip": _local_ip(),
            "leader-ip": _local_ip(),
            "current-state": "leader",
            "netplugin-nodes": sorted(h["hostLabel"] for h in hosts if h["state"] == "up"),
            "netmaster-nodes": [_local_ip()],
        }
        base.update(self.info())
        return base


def method_not_allowed(req, allowed: str) -> HTTPError:
    """405 with the Allow header RFC 9110 asks for."""
    return HTTPError(405, f"method {req.method} is not allowed on {req.path}", {"Allow": allowed})


_ANONYMOUS = authz.Principal("anonymous", "-")


def _public(method: str, parts: list[str]) -> bool:
    """Routes any client may call on the authenticated listener."""
    if parts[:1] == ["ui"] or (method in authz.READ and parts in (["version"], ["healthz"], ["readyz"],
                                                                  ["api", "v1", "openapi.json"])):
        return True
    return method == "POST" and parts == ["api", "v1", "auth_proxy", "login"]


def _route_label(path: str) -> str:
    """The route a path took, with keys replaced, so metric labels stay few."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["ui"]:
        return "/ui"                       # the web view's files, one label
    if parts[:2] != ["api", "v1"]:
        return "/" + parts[0] if len(parts) == 1 and parts[0] in _TOP_ROUTES else "other"
    rest = parts[2:]
    if not rest:
        return "other"
    head = rest[0] if rest[0] in schema.KINDS or rest[0] in _API_ROUTES else "other"
    if head == "inspect" and len(rest) >= 2:
        sub = rest[1] if rest[1] in schema.KINDS else "other"
        return f"/api/v1/inspect/{sub}/{{key}}"
    return f"/api/v1/{head}" + ("/{key}" if len(rest) > 1 and head != "other" else "")


_TOP_ROUTES = {"version", "info", "healthz", "readyz", "metrics"}
_API_ROUTES = {"inspect", "openapi.json", "switches", "flows", "trace", "realization", "policylog",
               "auth_proxy"}


def _local_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
