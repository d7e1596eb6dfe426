"""This host's credential towards netmaster, and its certificate.

netmaster issues both on POST /api/v1/auth_proxy/host_credentials/<label>/,
asked with the bootstrap token (over its HTTPS listener) or by the local
administrator (its loopback listener).  They are kept in the agent's state
folder, readable by root only, so a restarted agent needs no bootstrap token
(netmaster lets the bootstrap token claim a label only once):

  <state-dir>/host.token   the token every request to netmaster carries
  <state-dir>/host.crt     CN host:<label>, signed by netweave's CA: the local API serves TLS with it
  <state-dir>/host.key
  <state-dir>/ca.crt       netweave's CA: netmaster's server and client certificates chain to it
"""
import json
import logging
import os
import urllib.parse

from agent import netmaster_client as nmc

LOG = logging.getLogger(__name__)
FILES = ("host.token", "host.crt", "host.key", "ca.crt")


def _write(path, text, mode=0o600):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class HostCredential:
    def __init__(self, state_dir, label):
        self.dir = state_dir
        self.label = label
        self.token = ""

    def path(self, name):
        return os.path.join(self.dir, name)

    @property
    def cert(self):
        return self.path("host.crt")

    @property
    def key(self):
        return self.path("host.key")

    @property
    def ca(self):
        return self.path("ca.crt")

    def load(self):
        """True when a whole credential is on disk (the token is read)."""
        if not all(os.path.exists(self.path(n)) for n in FILES):
            return False
        with open(self.path("host.token")) as f:
            self.token = f.read().strip()
        return bool(self.token)

    def forget(self):
        for n in FILES:
            try:
                os.unlink(self.path(n))
            except FileNotFoundError:
                pass
        self.token = ""

    def obtain(self, netmaster, bootstrap_token="", cafile=None, vtep_ip=""):
        """Ask netmaster for a credential and keep it. Raises NetmasterError (a
        refusal: 401 wrong bootstrap token, 409 label already claimed) or
        NetmasterUnreachable."""
        client = nmc.NetmasterClient(netmaster, timeout=10.0, token=bootstrap_token or "", cafile=cafile)
        out = client.call("POST", "/api/v1/auth_proxy/host_credentials/%s/"
                          % urllib.parse.quote(self.label, safe=""), {"vtepIP": vtep_ip or ""})
        if not isinstance(out, dict) or not out.get("token") or not out.get("cert"):
            raise nmc.NetmasterError(502, "the credential answer lacks token or cert: %s"
                                     % json.dumps(out)[:200], "POST", "host_credentials")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        _write(self.path("host.key"), out["key"])
        _write(self.path("host.crt"), out["cert"], 0o644)
        _write(self.path("ca.crt"), out["ca"], 0o644)
        _write(self.path("host.token"), out["token"] + "\n")   # last: its presence means complete
        self.token = out["token"]
        LOG.info("event=host_credential_obtained host=%s netmaster=%s folder=%s", self.label, netmaster, self.dir)
        return self.token
