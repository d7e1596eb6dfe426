"""The web view's static route of the REST app (GET /ui/...), in-process with
webob.Request.blank: content types, the /ui redirect, nothing outside rest/web
(traversal, encoded or not), GET and HEAD only."""
import os

import pytest
import webob

from model.service import Model
from rest.app import WEB_DIR, RestApp
from store.sqlite import SqliteStore


@pytest.fixture
def app(tmp_path):
    store = SqliteStore(str(tmp_path / "state.db"))
    model = Model(store)
    model.bootstrap()
    try:
        yield RestApp(model)
    finally:
        store.close()


def get(app, path, method="GET"):
    return webob.Request.blank(path, method=method).get_response(app)


def test_files_with_their_content_types(app):
    for path, ctype, first in [("/ui/", "text/html", b"<!doctype html>"),
                               ("/ui/index.html", "text/html", b"<!doctype html>"),
                               ("/ui/app.js", "text/javascript", b"// netweave"),
                               ("/ui/style.css", "text/css", b"/* netweave")]:
        r = get(app, path)
        assert r.status_int == 200, (path, r.status)
        assert r.content_type == ctype and r.charset == "utf-8", (path, r.headers["Content-Type"])
        assert r.body.startswith(first), path
        assert r.headers["Cache-Control"] == "no-cache"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    with open(os.path.join(WEB_DIR, "app.js"), "rb") as f:
        assert get(app, "/ui/app.js").body == f.read()


def test_ui_without_slash_redirects(app):
    r = get(app, "/ui")
    assert r.status_int == 301
    assert r.location.endswith("/ui/")


def test_head_has_headers_and_no_body(app):
    g, h = get(app, "/ui/style.css"), get(app, "/ui/style.css", "HEAD")
    assert h.status_int == 200 and h.body == b""
    assert h.content_type == "text/css"
    assert int(h.headers["Content-Length"]) == len(g.body)


@pytest.mark.parametrize("path", [
    "/ui/../app.py", "/ui/%2e%2e/app.py", "/ui/%2E%2E%2Fapp.py", "/ui/..%2fapp.py", "/ui/..%5capp.py",
    "/ui/%252e%252e/app.py", "/ui/web/../app.py", "/ui/./index.html", "/ui/.", "/ui/..",
    "/ui/index.html/../../app.py", "/ui/nope.html", "/ui/app.py", "/ui/%2fetc%2fpasswd",
    "/ui//etc/passwd", "/ui/index.html%00.js", "/ui/.hidden.css",
])
def test_nothing_outside_the_folder(app, path):
    r = get(app, path)
    assert r.status_int == 404, (path, r.status, r.body[:80])
    assert r.json == {"error": r.json["error"]} and "no such path" in r.json["error"]
    assert b"import" not in r.body


def test_only_get_and_head(app):
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        for path in ("/ui/", "/ui/app.js", "/ui/../app.py"):
            r = get(app, path, method)
            assert r.status_int == 405, (method, path, r.status)
            assert r.headers["Allow"] == "GET, HEAD"
            assert "is not allowed" in r.json["error"]


def test_api_routes_unchanged(app):
    assert get(app, "/api/v1/tenants/").json[0]["tenantName"] == "default"
    assert get(app, "/uix/").status_int == 404


def test_page_script_never_writes_markup():
    """The view escapes by construction: data reaches the DOM as text nodes only."""
    with open(os.path.join(WEB_DIR, "app.js")) as f:
        src = f.read()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in src, sink
