"""The OpenAPI 3 document, generated from model.schema: the same declaration
validation uses, so the document and the server cannot disagree."""
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
        p = {"type": "array", "items": {"type": "string"}}
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


def _schema(kind: schema.Kind) -> dict:
    return {
        "type": "object",
        "properties": {f.name: _prop(f) for f in kind.fields},
        "required": [f.name for f in kind.fields if f.required and f.name not in kind.key],
    }


ERROR = {"description": "refused; the message names the field and the rule",
         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def document() -> dict:
    paths = {}
    comps = {"Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}
    for coll, kind in schema.KINDS.items():
        name = kind.name[0].upper() + kind.name[1:]
        comps[name] = _schema(kind)
        ref = {"$ref": f"#/components/schemas/{name}"}
        ok = {"description": "OK", "content": {"application/json": {"schema": ref}}}
        key_param = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"},
                     "description": ":".join(kind.key)}
        paths[f"/api/v1/{coll}/"] = {"get": {
            "summary": f"list {coll}",
            "responses": {"200": {"description": "OK", "content": {"application/json": {
                "schema": {"type": "array", "items": ref}}}}}}}
        item = {"parameters": [key_param],
                "get": {"summary": f"one {kind.name}", "responses": {"200": ok, "404": ERROR}}}
        if not kind.read_only or kind is schema.ENDPOINT:
            body = {"required": True, "content": {"application/json": {"schema": ref}}}
            for m in ("post", "put"):
                item[m] = {"summary": f"create or update a {kind.name}" if kind is not schema.ENDPOINT
                           else "allocate an endpoint (agent)",
                           "requestBody": body, "responses": {"200": ok, "400": ERROR, "404": ERROR,
                                                              "409": ERROR, "413": ERROR}}
            item["delete"] = {"summary": f"delete a {kind.name}",
                              "responses": {"200": {"description": "the key"}, "404": ERROR, "409": ERROR}}
        paths[f"/api/v1/{coll}/{{key}}/"] = item
        paths[f"/api/v1/inspect/{coll}/{{key}}/"] = {"parameters": [key_param], "get": {
            "summary": f"a {kind.name} with its derived state",
            "responses": {"200": {"description": "{Config, Oper}"}, "404": ERROR}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "netweave netmaster", "version": "0.1.0",
                 "description": "Contiv-compatible object API of netweave's netmaster"},
        "paths": paths,
        "components": {"schemas": comps},
    }
