"""The OpenAPI 3 document, generated from model.schema: the same declaration
validation uses, so the document and the server cannot disagree.

Requests and answers share one schema per Contiv object (the answer adds the
server-owned key, link-sets and links). Hosts and endpoints differ: the agent
sends a request (HostRequest, EndpointRequest) and the server answers with
the record it keeps (Host, Endpoint). Each write links to the reads of the
object it wrote, for stateful clients (schemathesis follows them).
"""
from __future__ import annotations

from model import schema


def _prop(f: schema.Field) -> dict:
    if f.type == "int":
        p = {"type": "integer"}
        if f.min is not None:
            p["minimum"] = f.min
        if f.max is not None:
            p["maximum"] = f.max
    elif f.type == "bool":
        p = {"type": "boolean"}
    elif f.type == "array":
        # Go's encoder writes a nil slice as null: the server takes it as empty
        p = {"type": "array", "items": {"type": "string"}, "nullable": True}
    else:
        p = {"type": "string"}
        if f.length is not None:
            p["maxLength"] = f.length
        if f.format:
            p["pattern"] = f.format
    if f.default is not None:
        p["default"] = f.default
    if f.description:
        p["description"] = f.description
    if not f.mutable:
        p["x-immutable"] = True
    return p


# server-owned parts of Contiv's object JSON; clients may send them back, they are ignored
WIRE_EXTRAS = {"key": {"type": "string"}, "link-sets": {"type": "object"}, "links": {"type": "object"}}


def _object(props: dict, required) -> dict:
    out = {"type": "object", "properties": props}
    required = sorted(required)
    if required:                      # OpenAPI 3.0 forbids an empty "required"
        out["required"] = required
    return out


def _schema(kind: schema.Kind) -> dict:
    props = {f.name: _prop(f) for f in kind.fields}
    for name in kind.key:                 # the path names the key; the body may leave it empty
        if "pattern" in props[name]:
            props[name]["pattern"] = "^$|" + props[name]["pattern"]
    if kind not in (schema.HOST, schema.ENDPOINT):
        props.update(WIRE_EXTRAS)
    return _object(props, [f.name for f in kind.fields if f.required and f.name not in kind.key])


_S, _I, _N = {"type": "string"}, {"type": "integer"}, {"type": "number"}
_STRS = {"type": "array", "items": _S}

# What GET /api/v1/hosts/<label>/ answers: the registration and what the server knows of it.
HOST_VIEW = _object({
    **{f.name: _prop(f) for f in schema.HOST.fields},
    "key": _S, "state": {"type": "string", "enum": ["up", "down"]}, "lastHeartbeat": _N,
    "registered": _N, "endpointsVersion": _S, "numEndpoints": _I,
    "registeredFrom": {"type": "string", "description": "the address the agent last registered from"},
}, ["key", "hostLabel", "dpid", "vtepIP", "state", "lastHeartbeat", "registered", "numEndpoints"])

# What GET /api/v1/endpoints/<id>/ answers: the record allocate_endpoint keeps, plus its view.
ENDPOINT_VIEW = _object({
    "key": _S, "endpointID": _S, "tenantName": _S, "networkName": _S, "network": _S, "groupName": _S,
    "groupKey": _S, "endpointGroupKey": _S, "endpointGroupId": _I, "serviceName": _S,
    "ipAddress": {"type": "array", "items": _S, "minItems": 2, "maxItems": 2,
                  "description": "[IPv4, IPv6] (Contiv's shape); IPv6 is \"\" off dual-stack networks"},
    "macAddress": _S, "prefixLen": _I, "gateway": _S, "encap": _S, "pktTag": _I,
    "prefixLen6": _I, "gateway6": _S,
    "mtu": _I, "homingHost": _S, "vtepIP": _S, "intfName": _S, "virtualPort": _S, "ifName": _S,
    "containerID": _S, "containerName": _S, "podNamespace": _S, "cniNetwork": _S,
    "dockerEndpoint": _S, "labels": _STRS, "created": _N, "ingressPolicingRate": _I,
    "ingressPolicingBurst": _I, "dscp": _I,
}, ["key", "endpointID", "tenantName", "networkName", "network", "ipAddress", "macAddress",
    "homingHost", "intfName"])


def _err(description="refused; the message names the field and the rule"):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(schema_, description="OK"):
    return {"description": description, "content": {"application/json": {"schema": schema_}}}


ANY_OBJECT = {"type": "object"}
WAIT_PARAMS = [
    {"name": "wait", "in": "query", "required": False, "schema": {"type": "boolean"},
     "description": "answer once the write is live on every host that is up"},
    {"name": "timeout", "in": "query", "required": False,
     "schema": {"type": "number", "minimum": 0, "maximum": 300},
     "description": "seconds ?wait may wait (default 10)"},
]


KEY_PART = "[A-Za-z0-9](?:[A-Za-z0-9.-]{0,62}[A-Za-z0-9])?"     # one key field, as names are


def _title(kind: schema.Kind) -> str:
    return kind.name[0].upper() + kind.name[1:]


def _object_paths(comps: dict) -> dict:
    paths = {}
    for coll, kind in schema.KINDS.items():
        name = _title(kind)
        comps[name] = HOST_VIEW if kind is schema.HOST else ENDPOINT_VIEW if kind is schema.ENDPOINT \
            else _schema(kind)
        request = name + "Request" if kind in (schema.HOST, schema.ENDPOINT) else name
        if request != name:
            comps[request] = _schema(kind)
        ref = {"$ref": f"#/components/schemas/{name}"}
        key_param = {"name": "key", "in": "path", "required": True, "description": ":".join(kind.key),
                     "schema": {"type": "string", "pattern": "^" + KEY_PART + (":" + KEY_PART) * (len(kind.key) - 1) + "$"}}
        reads = {"Get" + name: {"operationId": "get" + name, "parameters": {"key": "$request.path.key"}},
                 "Inspect" + name: {"operationId": "inspect" + name,
                                    "parameters": {"key": "$request.path.key"}}}
        written = {**_json(ref), "links": {**reads, "Delete" + name: {
            "operationId": "delete" + name, "parameters": {"key": "$request.path.key"}}}}
        paths[f"/api/v1/{coll}/"] = {"get": {
            "operationId": f"list{name}s", "summary": f"list {coll}",
            "responses": {"200": _json({"type": "array", "items": ref})}}}
        item = {"parameters": [key_param],
                "get": {"operationId": "get" + name, "summary": f"one {kind.name}",
                        "responses": {"200": _json(ref), "400": _err(), "404": _err()}}}
        # no body at all is an empty object: POST /api/v1/tenants/blue/ creates tenant blue
        body = {"required": False, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{request}"}}}}
        for m in ("post", "put"):
            item[m] = {"operationId": m + name,
                       "summary": "allocate an endpoint (agent)" if kind is schema.ENDPOINT
                       else "register a host, or heartbeat (agent)" if kind is schema.HOST
                       else f"create or update a {kind.name}",
                       "parameters": WAIT_PARAMS, "requestBody": body,
                       "responses": {"200": written, "400": _err(), "404": _err(), "409": _err(),
                                     "413": _err()}}
        item["delete"] = {"operationId": "delete" + name, "summary": f"delete a {kind.name}",
                          "parameters": WAIT_PARAMS,
                          "responses": {"200": _json({"type": "string"}, "the deleted key"),
                                        "400": _err(), "404": _err(), "409": _err()}}
        paths[f"/api/v1/{coll}/{{key}}/"] = item
        paths[f"/api/v1/inspect/{coll}/{{key}}/"] = {"parameters": [key_param], "get": {
            "operationId": "inspect" + name, "summary": f"a {kind.name} with its derived state",
            "responses": {"200": _json(_object({"Config": ANY_OBJECT, "Oper": ANY_OBJECT}, ["Config"]),
                                       "{Config, Oper}"),
                          "400": _err(), "404": _err()}}}
    return paths


def _get(op_id, summary, responses, params=()):
    return {"get": {"operationId": op_id, "summary": summary, "responses": responses,
                    **({"parameters": list(params)} if params else {})}}


def _q(name, schema_, description=""):
    return {"name": name, "in": "query", "required": False, "schema": schema_, "description": description}


NO_OF = _err("this netmaster runs without its OpenFlow controller (--no-openflow)")


def _service_paths() -> dict:
    readiness = _object({"ready": {"type": "boolean"}, "checks": ANY_OBJECT}, ["ready", "checks"])
    return {
        "/version": _get("version", "netmaster's version (Contiv's shape)", {"200": _json(ANY_OBJECT)}),
        "/info": _get("info", "cluster information (Contiv's shape)", {"200": _json(ANY_OBJECT)}),
        "/healthz": _get("healthz", "liveness", {"200": _json(ANY_OBJECT)}),
        "/readyz": _get("readyz", "readiness with reasons", {"200": _json(readiness),
                                                            "503": _json(readiness, "not ready")}),
        "/metrics": _get("metrics", "Prometheus text format", {"200": {
            "description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}),
        "/api/v1/openapi.json": _get("openapi", "this document", {"200": _json(ANY_OBJECT)}),
        "/api/v1/switches/": _get("listSwitches", "connected switches and their last reconcile",
                                  {"200": _json({"type": "array", "items": ANY_OBJECT}), "409": NO_OF}),
        "/api/v1/flows/{host}/": {
            "parameters": [{"name": "host", "in": "path", "required": True,
                            "schema": {"type": "string", "minLength": 1}}],
            **_get("hostFlows", "the flows netmaster wants on a host, what it holds, the diff",
                   {"200": _json(ANY_OBJECT), "404": _err(), "409": NO_OF})},
        "/api/v1/realization/": _get(
            "realization", "the generation each live host's switch has realized",
            {"200": _json(ANY_OBJECT), "400": _err(), "409": NO_OF},
            [_q("generation", {"type": "integer", "minimum": 0}),
             _q("wait", {"type": "number", "minimum": 0, "maximum": 300}, "seconds to wait")]),
        "/api/v1/policylog/": _get(
            "policyLog", "the last connections denied by logged rules, oldest first",
            {"200": _json({"type": "array", "items": ANY_OBJECT}), "400": _err(), "404": _err()},
            [_q("tenant", {"type": "string"}), _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000})]),
        "/api/v1/trace/": _get(
            "trace", "a new connection's path through the compiled pipelines",
            {"200": _json(ANY_OBJECT), "400": _err(), "404": _err(), "409": _err()},
            [dict(_q("from", {"type": "string", "minLength": 1}, "endpoint id"), required=True),
             dict(_q("to", {"type": "string", "minLength": 1}, "address or endpoint id"), required=True),
             _q("protocol", {"type": "string"}), _q("port", {"type": "integer", "minimum": 0, "maximum": 65535}),
             _q("live", {"type": "boolean"})]),
    }


USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"      # rest/auth.py NAME
USER = _object({"username": _S, "role": {"type": "string", "enum": ["admin", "ops", "viewer"]},
                "tenants": _STRS, "created": _N, "updated": _N}, ["username", "role", "tenants"])


def _auth_paths(comps: dict) -> dict:
    """Contiv's auth proxy paths, served by netmaster itself (rest/auth.py)."""
    comps["User"] = USER
    comps["UserRequest"] = {"type": "object", "additionalProperties": False, "properties": {
        "username": _S, "password": {"type": "string", "minLength": 8},
        "role": {"type": "string", "enum": ["admin", "ops", "viewer"]}, "tenants": _STRS}}
    ref = {"$ref": "#/components/schemas/User"}

    def name_param(name, what):
        return {"name": name, "in": "path", "required": True, "description": what,
                "schema": {"type": "string", "pattern": USER_NAME}}
    user_body = {"required": False, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/UserRequest"}}}}
    user_write = {"responses": {"200": _json(ref), "400": _err(), "404": _err("an unknown tenant")},
                  "requestBody": user_body}
    return {
        "/api/v1/auth_proxy/login/": {"post": {
            "operationId": "login", "summary": "a token for a user's name and password", "security": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _object(
                {"username": _S, "password": _S}, ["username", "password"])}}},
            "responses": {"200": _json(_object({"token": _S, "username": _S, "role": _S, "tenants": _STRS,
                                                "expires": _S}, ["token", "username", "role", "expires"])),
                          "400": _err(), "401": _err("wrong name or password"),
                          "429": {**_err("too many wrong passwords from this address or for this user "
                                         "lately; Retry-After says when to try again"),
                                  "headers": {"Retry-After": {"schema": {"type": "integer"},
                                                              "description": "seconds"}}}}}},
        "/api/v1/auth_proxy/whoami/": _get("whoami", "who the request's credential is", {"200": _json(_object(
            {"principal": _S, "kind": _S, "name": _S, "role": _S, "tenants": _STRS}, ["principal", "kind"]))}),
        "/api/v1/auth_proxy/local_users/": _get("listUsers", "users, their role and tenants (admin)",
                                                {"200": _json({"type": "array", "items": ref})}),
        "/api/v1/auth_proxy/local_users/{name}/": {
            "parameters": [name_param("name", "user name")],
            "get": {"operationId": "getUser", "summary": "one user", "responses": {"200": _json(ref),
                                                                                 "404": _err()}},
            "post": {"operationId": "postUser", "summary": "create a user, or change its role, tenants or "
                     "password (admin)", **user_write},
            "put": {"operationId": "putUser", "summary": "as POST", **user_write},
            "delete": {"operationId": "deleteUser", "summary": "delete a user and end its tokens",
                       "responses": {"200": _json(_S, "the deleted name"), "404": _err()}}},
        "/api/v1/auth_proxy/host_credentials/{label}/": {
            "parameters": [name_param("label", "host label")],
            "post": {"operationId": "issueHostCredential",
                     "summary": "a host's credential and certificate (the bootstrap token, once per host; "
                                "an admin, at will: the previous one stops working)",
                     "requestBody": {"required": False, "content": {"application/json": {"schema": {
                         "type": "object", "properties": {"vtepIP": _S}}}}},
                     "responses": {"200": _json(_object({"hostLabel": _S, "token": _S, "cert": _S, "key": _S,
                                                         "ca": _S}, ["hostLabel", "token"])),
                                   "400": _err(), "409": _err("the label already holds a credential")}},
            "delete": {"operationId": "revokeHostCredential", "summary": "revoke a host's credential (admin)",
                       "responses": {"200": _json(_S, "the host label"), "404": _err()}}},
    }


# needs no credential on the authenticated listener either (rest/app.py _public)
PUBLIC = {"/version", "/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/auth_proxy/login/"}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "a token from login, an API token, or a host's credential"},
    "contivToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token",
                    "description": "the same token, as Contiv's netctl sends it"},
}


TOKEN = [{"bearer": []}, {"contivToken": []}]        # either scheme


def _secure(paths: dict) -> None:
    """Each operation says what it needs on the HTTPS listener: the public ones
    nothing, every other one a token (either scheme) and may refuse a missing or
    weak one (401, 403). The loopback listener needs none (see info.description)."""
    for path, item in paths.items():
        for method, op in item.items():
            if method == "parameters":
                continue
            if path in PUBLIC:
                op["security"] = []
            else:
                op["security"] = TOKEN
                op["responses"].setdefault("401", _err("no, an unknown or an expired token (authenticated "
                                                       "listener only)"))
                op["responses"].setdefault("403", _err("the credential lacks the right; the message names it"))


def document() -> dict:
    comps = {"Error": _object({"error": {"type": "string"}}, ["error"])}
    paths = _object_paths(comps)
    paths.update(_service_paths())
    paths.update(_auth_paths(comps))
    _secure(paths)
    return {
        "openapi": "3.0.3",
        "info": {"title": "netweave netmaster", "version": "0.1.0",
                 "description": "Contiv-compatible object API of netweave's netmaster. Each operation's "
                                "`security` is what the HTTPS listener (:10000) asks: a token (bearer, "
                                "or Contiv's X-Auth-Token) for every operation but login, version, "
                                "health and this document. The loopback listener (127.0.0.1:9999) is "
                                "the local administrator's and asks for none."},
        "paths": paths,
        "security": TOKEN,
        "components": {"schemas": comps, "securitySchemes": SECURITY_SCHEMES},
    }
