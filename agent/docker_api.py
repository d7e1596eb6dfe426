"""The little of Docker's Engine API that netplugin needs, over dockerd's unix socket.

Standard library only: four calls do not justify the Docker SDK and its dependencies.
"""
import http.client
import json
import socket
import urllib.parse

API = "/v1.41"          # Docker 20.10; newer daemons still serve it


class DockerError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class DockerApi:
    def __init__(self, socket_path="/var/run/docker.sock", timeout=10.0):
        self.path = socket_path
        self.timeout = timeout

    def call(self, method, path, body=None, query=None):
        url = API + path + ("?" + urllib.parse.urlencode(query) if query else "")
        conn = _UnixConnection(self.path, self.timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, url, None if body is None else json.dumps(body), headers)
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as e:
            raise DockerError(0, "dockerd at %s is unreachable: %s" % (self.path, e)) from None
        finally:
            conn.close()
        data = json.loads(raw) if raw.strip() else None
        if resp.status >= 300:
            msg = data.get("message") if isinstance(data, dict) else raw.decode(errors="replace")
            raise DockerError(resp.status, msg)
        return data

    def networks(self, driver):
        return self.call("GET", "/networks",
                         query={"filters": json.dumps({"driver": [driver]})}) or []

    def network(self, ident):
        return self.call("GET", "/networks/" + urllib.parse.quote(ident, safe=""))

    def create_network(self, spec):
        return self.call("POST", "/networks/create", spec)

    def delete_network(self, ident):
        return self.call("DELETE", "/networks/" + urllib.parse.quote(ident, safe=""))

    def containers(self):
        return self.call("GET", "/containers/json", query={"all": "1"}) or []
