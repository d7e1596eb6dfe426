"""Typed model objects, one frozen dataclass per kind, derived from model.schema.

Attribute names are the wire names (camelCase), so an object and its JSON
never need a mapping table that could drift.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

from model import schema


def _py_type(f: schema.Field):
    return {"int": int, "bool": bool, "array": Tuple[str, ...]}.get(f.type, str)


def _default(f: schema.Field):
    if f.type == "array":
        return ()
    if f.default is not None:
        return f.default
    return {"int": 0, "bool": False}.get(f.type, "")


def _make(kind: schema.Kind, cls_name: str):
    fields = [(f.name, _py_type(f), dataclasses.field(default=_default(f))) for f in kind.fields]
    cls = dataclasses.make_dataclass(cls_name, fields, frozen=True)
    cls.KIND = kind
    cls.__doc__ = f"Contiv '{kind.name}' object; key {':'.join(kind.key)}."
    return cls


Tenant = _make(schema.TENANT, "Tenant")
Network = _make(schema.NETWORK, "Network")
EndpointGroup = _make(schema.ENDPOINT_GROUP, "EndpointGroup")
Policy = _make(schema.POLICY, "Policy")
Rule = _make(schema.RULE, "Rule")
AppProfile = _make(schema.APP_PROFILE, "AppProfile")
NetProfile = _make(schema.NETPROFILE, "NetProfile")
Global = _make(schema.GLOBAL, "Global")
ServiceLB = _make(schema.SERVICE_LB, "ServiceLB")
Host = _make(schema.HOST, "Host")
EndpointRequest = _make(schema.ENDPOINT, "EndpointRequest")

CLASSES = {c.KIND.name: c for c in (Tenant, Network, EndpointGroup, Policy, Rule, AppProfile,
                                    NetProfile, Global, ServiceLB, Host, EndpointRequest)}


def key(obj) -> str:
    return ":".join(str(getattr(obj, f)) for f in obj.KIND.key)


def to_dict(obj) -> dict:
    """All fields, arrays as lists (the stored form)."""
    return {f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(obj) for v in [getattr(obj, f.name)]}


def from_dict(kind_name: str, data: dict):
    """Rebuild an object from its stored form (already validated once)."""
    cls = CLASSES[kind_name]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names})
