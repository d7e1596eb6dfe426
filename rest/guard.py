"""Checks at the HTTP boundary, before any route runs: a path that decodes,
a Host that names this listener (DNS rebinding), writes that no browser page
of another origin sent (CSRF), and a body read whole however it was framed.

Browsers are told apart from Contiv's clients by the headers browsers always
add: `Origin` on every cross-origin write, and `Sec-Fetch-Site`. Contiv's Go
client sends no Content-Type and its Python client a form type, so the
content type cannot be what refuses a forged form post: Origin is.
"""
from __future__ import annotations

import ipaddress
import json
import re
from urllib.parse import urlsplit


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK_NAMES = ("localhost", "localhost.", "ip6-localhost")
MAX_DEPTH = 32        # nesting a request body may have; Contiv's objects need 3


def path(environ) -> str:
    """The request path as text; 400 when its percent-escapes are not UTF-8
    (PEP 3333 hands PATH_INFO over as latin-1 decoded bytes)."""
    raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise HTTPError(400, "path: not valid UTF-8 once percent-decoded")


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str, str]:
    m = re.fullmatch(r"(\[[^\]]*\]|[^:]*)(?::(\d*))?", value.strip())
    return (m.group(1), m.group(2) or "") if m else (value, "")


def check_host(environ) -> None:
    """On a loopback listener the Host header must name a loopback address:
    a page whose DNS name was rebound to 127.0.0.1 sends its own name."""
    if not _is_loopback(environ.get("SERVER_NAME", "")):
        return
    host = environ.get("HTTP_HOST")
    if host is None:                      # HTTP/1.0 without Host: no browser sends that
        return
    name, _ = _split_host(host)
    if not _is_loopback(name):
        raise HTTPError(403, f"Host: {host[:100]!r} is not a loopback name; this listener answers "
                             "only requests addressed to 127.0.0.1, ::1 or localhost")


def check_origin(environ, method: str) -> None:
    """A write that a browser sent from another origin is refused (CSRF):
    its Origin must be this very server, as the Host header names it."""
    if method in SAFE_METHODS:
        return
    site = environ.get("HTTP_SEC_FETCH_SITE", "").lower()
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        if site in ("cross-site", "same-site"):
            raise HTTPError(403, f"Sec-Fetch-Site: {site} writes are refused (cross-origin request)")
        return
    if origin == "null":
        raise HTTPError(403, "Origin: null (an opaque origin) may not write")
    o = urlsplit(origin)
    host = environ.get("HTTP_HOST", "")
    scheme = environ.get("wsgi.url_scheme", "http")
    default = "443" if scheme == "https" else "80"
    oname, oport = (o.hostname or "").lower(), str(o.port or (443 if o.scheme == "https" else 80))
    hname, hport = _split_host(host)
    if o.scheme != scheme or oname != hname.strip("[]").lower() or oport != (hport or default):
        raise HTTPError(403, f"Origin: {origin[:100]} is not this server; cross-origin writes are refused")


def read_body(environ, content_length: int | None, limit: int) -> bytes:
    """The request body, at most `limit` bytes (413 past it). A chunked body
    is read through the server's de-chunking input, never taken as empty."""
    if content_length is not None and content_length > limit:
        raise HTTPError(413, f"body: larger than {limit} bytes")
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if content_length is None and not chunked:
        return b""
    stream = environ["wsgi.input"]
    want = limit + 1 if chunked else content_length
    raw = b""
    while len(raw) < want:
        try:
            part = stream.read(want - len(raw))
        except (OSError, ValueError) as exc:
            raise HTTPError(400, f"body: could not be read ({exc})")
        if not part:
            break
        raw += part
    if len(raw) > limit:
        raise HTTPError(413, f"body: larger than {limit} bytes")
    if not chunked and len(raw) < content_length:
        raise HTTPError(400, f"body: {len(raw)} bytes arrived, Content-Length said {content_length}")
    return raw


def parse_json(raw: bytes):
    """JSON with a bound on nesting, checked before the parser recurses."""
    if _depth_exceeds(raw, MAX_DEPTH):
        raise HTTPError(400, f"body: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(raw)
    except RecursionError:
        raise HTTPError(400, f"body: JSON nested deeper than {MAX_DEPTH} levels")
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"body: malformed JSON ({exc})")


_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when brackets (outside strings) nest deeper than `limit`."""
    depth = 0
    for m in _TOKENS.finditer(raw):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif c in (b"]", b"}"):
            depth -= 1
    return False
