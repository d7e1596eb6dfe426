"""Validation at the REST boundary: a request body becomes a typed object or
a ValidationError that names the field and the rule. Nothing past this point
re-checks types, lengths or formats."""
from __future__ import annotations

import re
from functools import lru_cache

from model import objects, schema


class ModelError(Exception):
    """An error with an HTTP status; the message names the field and the rule."""
    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class ValidationError(ModelError):
    status = 400


class NotFound(ModelError):
    status = 404


class Conflict(ModelError):
    status = 409


@lru_cache(maxsize=None)
def _regex(pattern: str):
    return re.compile(pattern)


_TYPE_WORDS = {"string": "a string", "int": "an integer", "bool": "true or false"}
IGNORED = {"key", "link-sets", "links"}   # owned by the server; clients send them


def check_field(f: schema.Field, value):
    """Return the value in its typed form, or raise ValidationError."""
    if f.type == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise ValidationError(f"{f.name}: expected an integer, got {value!r}")
        value = int(value)
        if f.min is not None and value < f.min:
            raise ValidationError(f"{f.name}: {value} is below the minimum {f.min}")
        if f.max is not None and value > f.max:
            raise ValidationError(f"{f.name}: {value} is above the maximum {f.max}")
        return value
    if f.type == "bool":
        if not isinstance(value, bool):
            raise ValidationError(f"{f.name}: expected true or false, got {value!r}")
        return value
    if f.type == "array":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError(f"{f.name}: expected a list of strings, got {value!r}")
        return tuple(value)
    if not isinstance(value, str):
        raise ValidationError(f"{f.name}: expected a string, got {value!r}")
    if f.length is not None and len(value) > f.length:
        raise ValidationError(f"{f.name}: longer than {f.length} characters")
    if f.format and not _regex(f.format).match(value):
        raise ValidationError(f"{f.name}: {value} is not {schema.format_words(f.format)}")
    return value


def parse(kind: schema.Kind, body, path_key: str | None = None):
    """Validate a request body for `kind` against the key in the URL."""
    if not isinstance(body, dict):
        raise ValidationError(f"body: expected a JSON object, got {type(body).__name__}")
    for name, typ, words in (("key", str, "a string"), ("link-sets", dict, "an object"), ("links", dict, "an object")):
        if name in body and not isinstance(body[name], typ):      # server-owned, ignored, but typed
            raise ValidationError(f"{name}: expected {words}, got {body[name]!r}"[:200])
    if kind is schema.RULE and body.get("priority") == 0:
        body = dict(body, priority=1)        # Contiv: priority 0 means 1
    values = {}
    if path_key is not None:
        parts = path_key.split(":")
        if len(parts) != len(kind.key):
            raise ValidationError(
                f"key: {path_key!r} must be {':'.join(kind.key)} ({len(kind.key)} parts)")
        for name, part in zip(kind.key, parts):
            given = body.get(name)
            if given not in (None, "") and given != part:
                raise ValidationError(f"{name}: the body says {given!r} but the path says {part!r}")
            values[name] = part
    for f in kind.fields:
        if f.name in body and body[f.name] is None and f.type != "array":
            # Go's encoder writes a nil slice as null, so arrays may be null (empty);
            # a null scalar is a client bug that must not pass as "left out"
            raise ValidationError(f"{f.name}: null is not allowed (expected {_TYPE_WORDS[f.type]})")
        if f.name in values:
            values[f.name] = check_field(f, values[f.name])
            continue
        if f.name in body and body[f.name] is not None:
            values[f.name] = check_field(f, body[f.name])
    for f in kind.fields:
        if f.required and values.get(f.name) in (None, "", ()):
            raise ValidationError(f"{f.name}: is required")
    cls = objects.CLASSES[kind.name]
    return cls(**values)
