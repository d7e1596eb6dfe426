"""TLS towards etcd: `--store etcds://HOST:PORT[,...][/prefix][?cacert=F&cert=F&key=F]`,
or `etcd://`/`etcds://` with netmaster's `--etcd-cacert/--etcd-cert/--etcd-key`
(etcdctl's names). etcd3gw speaks https with a CA bundle and a client
certificate; this module only turns the URL and flags into those options and
checks them early, so a typo stops netmaster with the flag's name instead of
a TLS error at the first write."""
from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import requests

from store.base import StoreError

OPTIONS = ("cacert", "cert", "key")


@dataclass(frozen=True)
class EtcdTLS:
    cacert: str | None = None     # None: the system's CA bundle verifies etcd
    cert: str | None = None       # client certificate (etcd --client-cert-auth)
    key: str | None = None

    def client_kwargs(self) -> dict:
        """Etcd3Client's keyword arguments for https, with a session of its own:
        requests lets $REQUESTS_CA_BUNDLE override a session's CA, and the CA
        the operator named must be the one that verifies etcd."""
        session = requests.Session()
        session.verify = self.cacert or True
        if self.cert:
            session.cert = (self.cert, self.key)
        if self.cacert:
            session.trust_env = False
        return {"protocol": "https", "session": session}


def split(url: str) -> tuple[str, EtcdTLS | None]:
    """(the URL without its query, its TLS options or None for plain http)."""
    base, _, query = url.partition("?")
    opts = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise StoreError(f"store: unknown option {unknown[0]!r} in {url!r} (known: {', '.join(OPTIONS)})")
    if not (base.startswith("etcds://") or opts):
        return base, None
    return base, check(EtcdTLS(opts.get("cacert") or None, opts.get("cert") or None, opts.get("key") or None))


def with_flags(url: str, cacert: str | None, cert: str | None, key: str | None) -> str:
    """The store URL with the command line's TLS files folded into its query
    (a flag wins over the same option in the URL); other stores are left alone."""
    if not url.startswith(("etcd://", "etcds://")) or not (cacert or cert or key):
        return url
    base, _, query = url.partition("?")
    opts = dict(parse_qsl(query, keep_blank_values=True))
    opts.update({k: v for k, v in (("cacert", cacert), ("cert", cert), ("key", key)) if v})
    return base + "?" + urlencode(opts)


def check(tls: EtcdTLS) -> EtcdTLS:
    if bool(tls.cert) != bool(tls.key):
        raise StoreError("store: etcd-cert and etcd-key go together (a client certificate and its key)")
    for name, path in (("etcd-cacert", tls.cacert), ("etcd-cert", tls.cert), ("etcd-key", tls.key)):
        if path and not os.access(path, os.R_OK):
            raise StoreError(f"store: {name} {path} is not a readable file")
    return tls
