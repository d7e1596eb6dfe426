"""Who is asking, and may they: users, tokens, host credentials and roles.

Principals:
  local       the loopback listener (127.0.0.1:9999): the master host's own
              administrator, like a unix socket; never asked for a credential
  user:NAME   a user, by a token from POST /api/v1/auth_proxy/login/ (Contiv's
              auth proxy path) or an API token; role admin, ops (of tenants) or viewer
  host:LABEL  a netplugin, by its per-host credential
  bootstrap   the bootstrap token: may only ask for a host credential

Kept in the state store (so several netmasters on one etcd agree):
  auth/user/<name>      {"username", "role", "tenants", "hash": "scrypt$n$r$p$salt$key", ...}
  auth/token/<sha256>   {"principal": "user:alice"|"host:h1"|"bootstrap", "kind", "expires", ...}
  auth/host/<label>     {"tokenHash", "issued", "certSha256"}: the host's one live credential
                        and the SHA-256 of its certificate (OpenFlow over TLS checks it)
Only a token's SHA-256 is stored: tokens are 256 random bits, so a fast hash
is enough; passwords are salted scrypt.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass

from model import schema
from rest import login_limit
from store.base import Store

log = logging.getLogger(__name__)
audit_log = logging.getLogger("netweave.audit")

ROLES = ("admin", "ops", "viewer")
TOKEN_TTL = 12 * 3600.0
SCRYPT = (1 << 14, 8, 1)            # n, r, p: ~16 MiB and tens of ms per check
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
# collections whose key starts with the tenant's name
TENANT_SCOPED = {k.collection for k in schema.KINDS.values() if k.key[:1] == ("tenantName",) and k.name != "tenant"}
READ = ("GET", "HEAD")


class AuthError(Exception):
    """401 (who are you?) or 403 (you may not), with a message naming the missing right;
    429 (too many wrong passwords) with headers (Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True)
class Principal:
    kind: str                   # local | user | host | bootstrap
    name: str
    role: str = ""              # users: admin | ops | viewer; local: admin
    tenants: tuple = ()

    def __str__(self):
        return "local" if self.kind == "local" else f"{self.kind}:{self.name}"

    def describe(self) -> str:
        if self.kind == "user":
            of = f" of {','.join(self.tenants)}" if self.role == "ops" else ""
            return f"user {self.name} (role {self.role}{of})"
        return {"host": f"host {self.name}'s agent", "bootstrap": "the bootstrap token"}.get(
            self.kind, str(self))


LOCAL = Principal("local", "loopback", "admin")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str, params=SCRYPT) -> str:
    n, r, p = params
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 << 20, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()      # noqa: E731
    return f"scrypt${n}${r}${p}${b64(salt)}${b64(key)}"


def check_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, key = stored.split("$")
        if algo != "scrypt":
            return False
        want = base64.b64decode(key)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=64 << 20, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


class Auth:
    def __init__(self, store: Store, clock=time.time, token_ttl: float = TOKEN_TTL,
                 scrypt_params=SCRYPT):
        self.store = store
        self.clock = clock
        self.token_ttl = token_ttl
        self.scrypt_params = scrypt_params
        self.limiter = login_limit.LoginLimiter(clock=clock)

    # ------------------------------------------------------------ tokens
    def mint(self, principal: str, kind: str, ttl: float | None) -> tuple[str, float]:
        """A new token for `principal`; (token, expiry or 0 for none)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + ttl if ttl else 0
        self.store.commit({f"auth/token/{token_hash(token)}": {
            "principal": principal, "kind": kind, "created": now, "expires": expires}})
        return token, expires

    def revoke(self, principal: str | None = None, kind: str | None = None) -> int:
        """Delete the tokens of a principal (and/or of a kind); how many."""
        gone = [k for k, v in self.store.list("auth/token/").items()
                if (principal is None or v["principal"] == principal) and (kind is None or v["kind"] == kind)]
        self.store.commit({}, gone)
        return len(gone)

    def _purge_expired(self):
        now = self.clock()
        gone = [k for k, v in self.store.list("auth/token/").items() if v["expires"] and v["expires"] <= now]
        self.store.commit({}, gone)

    def authenticate(self, token: str) -> Principal:
        rec = self.store.get(f"auth/token/{token_hash(token)}") if token else None
        if rec is None:
            raise AuthError(401, "authorization: the token is unknown or was revoked; log in again "
                                 "(netctl login)")
        if rec["expires"] and rec["expires"] <= self.clock():
            raise AuthError(401, "authorization: the token expired at "
                                 f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(rec['expires']))}; "
                                 "log in again (netctl login)")
        kind, _, name = rec["principal"].partition(":")
        if kind == "user":
            user = self.store.get(f"auth/user/{name}")
            if user is None:
                raise AuthError(401, f"authorization: user {name} no longer exists")
            return Principal("user", name, user["role"], tuple(user.get("tenants", ())))
        if kind == "host":
            return Principal("host", name)
        if kind == "bootstrap":
            return Principal("bootstrap", name or "bootstrap")
        raise AuthError(401, "authorization: the token names no known principal")

    # ------------------------------------------------------------ users
    def login(self, body, remote: str = "") -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("username"), str) \
                or not isinstance(body.get("password"), str):
            raise AuthError(400, "username, password: both are required strings")
        name = body["username"][:64]
        limited = self.limiter.check(remote or "-", name)
        if limited is not None:
            what, wait = limited
            raise AuthError(429, f"login: too many wrong passwords for {what}; try again in "
                                 f"{login_limit.retry_after(wait)} s",
                            {"Retry-After": login_limit.retry_after(wait)})
        user = self.store.get(f"auth/user/{body['username']}") if NAME.match(body["username"]) else None
        # a missing user costs the same scrypt as a wrong password: no user enumeration by timing
        stored = user["hash"] if user else hash_password("-", self.scrypt_params)
        if not check_password(body["password"], stored) or user is None:
            self.limiter.failed(remote or "-", name)
            raise AuthError(401, "username or password: wrong")
        self.limiter.succeeded(name)
        self._purge_expired()
        token, expires = self.mint(f"user:{user['username']}", "login", self.token_ttl)
        return {"token": token, "username": user["username"], "role": user["role"],
                "tenants": list(user.get("tenants", ())),
                "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))}

    def put_user(self, name: str, body) -> dict:
        """Create a user or change its role, tenants or password (an admin's call)."""
        if not NAME.match(name):
            raise AuthError(400, f"username: {name!r} must be 1-64 letters, digits, '_', '.', '@', '-'")
        if not isinstance(body, dict):
            raise AuthError(400, "body: a JSON object with password, role and tenants")
        unknown = set(body) - {"username", "password", "role", "tenants"}
        if unknown:
            raise AuthError(400, f"{sorted(unknown)[0]}: unknown field (known: username, password, role, tenants)")
        if body.get("username", name) != name:
            raise AuthError(400, f"username: {body['username']!r} disagrees with the path's {name!r}")
        old = self.store.get(f"auth/user/{name}")
        role = body.get("role", old["role"] if old else "viewer")
        if role not in ROLES:
            raise AuthError(400, f"role: {role!r} is not one of {', '.join(ROLES)}")
        tenants = body.get("tenants", old.get("tenants", []) if old else [])
        if not isinstance(tenants, list) or not all(isinstance(t, str) and t for t in tenants):
            raise AuthError(400, "tenants: a list of tenant names")
        if role == "ops" and not tenants:
            raise AuthError(400, "tenants: role ops needs at least one tenant")
        if role != "ops" and tenants:
            raise AuthError(400, f"tenants: only role ops is bound to tenants (role is {role})")
        for t in tenants:
            if self.store.get(f"obj/tenant/{t}") is None:
                raise AuthError(404, f"tenants: tenant {t} does not exist")
        password = body.get("password")
        if password is None and old is None:
            raise AuthError(400, "password: required to create a user")
        if password is not None and (not isinstance(password, str) or len(password) < MIN_PASSWORD):
            raise AuthError(400, f"password: at least {MIN_PASSWORD} characters")
        now = self.clock()
        rec = {"username": name, "role": role, "tenants": sorted(set(tenants)),
               "hash": hash_password(password, self.scrypt_params) if password is not None else old["hash"],
               "created": old["created"] if old else now, "updated": now}
        self.store.commit({f"auth/user/{name}": rec})
        if old is not None and password is not None:
            self.revoke(f"user:{name}", "login")     # a new password ends the old sessions
        return self.user_view(rec)

    @staticmethod
    def user_view(rec: dict) -> dict:
        return {k: rec[k] for k in ("username", "role", "tenants", "created", "updated") if k in rec}

    def users(self) -> list[dict]:
        return sorted((self.user_view(v) for v in self.store.list("auth/user/").values()),
                      key=lambda u: u["username"])

    def user(self, name: str) -> dict:
        rec = self.store.get(f"auth/user/{name}")
        if rec is None:
            raise AuthError(404, f"user {name} not found")
        return self.user_view(rec)

    def delete_user(self, name: str) -> str:
        self.user(name)
        self.store.commit({}, [f"auth/user/{name}"])
        self.revoke(f"user:{name}")
        return name

    # ------------------------------------------------------------ hosts
    def issue_host(self, label: str, by: Principal, cert_sha256: str = "") -> str:
        """A host's credential. The bootstrap token claims a label once (a second
        claim would let anyone holding it impersonate a host); an admin re-issues
        (rotates) at will. The host's previous credential stops working, its
        certificate too where netmaster checks it (OpenFlow over TLS pins the
        SHA-256 of the one issued last, `cert_sha256`)."""
        old = self.check_issue_host(label, by)
        token, _ = self.mint(f"host:{label}", "host", None)
        deletes = [f"auth/token/{old['tokenHash']}"] if old else []
        rec = {"tokenHash": token_hash(token), "issued": self.clock()}
        if cert_sha256:
            rec["certSha256"] = cert_sha256
        self.store.commit({f"auth/host/{label}": rec}, deletes)
        return token

    def check_issue_host(self, label: str, by: Principal) -> dict | None:
        """Raises what issue_host would refuse (before a certificate is made for the
        label); the host's current credential record, or None."""
        if not NAME.match(label):
            raise AuthError(400, f"hostLabel: {label!r} is not a valid host label")
        old = self.store.get(f"auth/host/{label}")
        if old is not None and by.kind == "bootstrap":
            raise AuthError(409, f"host {label} already holds a credential; the bootstrap token "
                                 f"cannot claim it again (an admin may revoke it: netctl host revoke {label})")
        return old

    def revoke_host(self, label: str) -> str:
        old = self.store.get(f"auth/host/{label}")
        if old is None:
            raise AuthError(404, f"host {label} holds no credential")
        self.store.commit({}, [f"auth/host/{label}", f"auth/token/{old['tokenHash']}"])
        return label


# ---------------------------------------------------------------- authorization
def _denied(p: Principal, method: str, what: str, need: str) -> AuthError:
    return AuthError(403, f"forbidden: {p.describe()} may not {method} {what}; needs {need}")


def authorize(p: Principal, method: str, rest: list[str]) -> None:
    """May `p` send `method` to /api/v1/<rest...>?  Raises AuthError(403) naming
    the missing right.  Ownership of endpoints (a host writes only its own) needs
    the record and is checked where the endpoint is written (RestApp)."""
    if p.kind == "local" or (p.kind == "user" and p.role == "admin"):
        if p.kind == "user" and method not in READ and rest[:1] in (["hosts"], ["endpoints"]) \
                and method != "DELETE":
            raise _denied(p, method, rest[0], "a host credential: hosts and endpoints are written "
                                              "only by the host's own agent")
        return
    head = rest[0] if rest else ""
    if p.kind == "bootstrap":
        if method == "POST" and head == "auth_proxy" and rest[1:2] == ["host_credentials"]:
            return
        raise _denied(p, method, "/api/v1/" + "/".join(rest),
                      "a user or host credential (a bootstrap token only obtains a host credential)")
    if head == "auth_proxy":
        if rest[1:2] == ["whoami"] and method in READ:
            return
        raise _denied(p, method, "/api/v1/" + "/".join(rest), "role admin")
    if method in READ:
        return                                  # every authenticated principal may read
    if p.kind == "host":
        if head == "hosts" and len(rest) == 2 and rest[1] == p.name and method in ("POST", "PUT"):
            return
        if head == "endpoints" and len(rest) == 2 and method in ("POST", "PUT", "DELETE"):
            return                              # the record's homingHost is checked by the caller
        raise _denied(p, method, "/api/v1/" + "/".join(rest),
                      f"role admin (host {p.name}'s credential may only register host {p.name} "
                      f"and write its endpoints)")
    # users: ops and viewer
    if p.role == "viewer":
        raise _denied(p, method, "/api/v1/" + "/".join(rest), "role admin or ops (viewer is read-only)")
    if head in TENANT_SCOPED and len(rest) == 2:
        tenant = rest[1].split(":", 1)[0]
        if tenant in p.tenants:
            return
        raise _denied(p, method, f"{head} of tenant {tenant}", f"role admin or ops of tenant {tenant}")
    if head == "tenants":
        raise _denied(p, method, "tenants", "role admin (ops work inside their tenants)")
    if head in ("hosts", "endpoints"):
        raise _denied(p, method, head, "a host credential: hosts and endpoints are written only by "
                                       "the host's own agent")
    raise _denied(p, method, "/api/v1/" + "/".join(rest), "role admin")


def audit(p: Principal, method: str, path: str, status: int, listener: str, remote: str) -> None:
    """One line per change or refusal: who, what, when, result."""
    audit_log.info("event=audit at=%s who=%s listener=%s remote=%s method=%s path=%s status=%d",
                   time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), p, listener, remote or "-",
                   method, path, status)


# ---------------------------------------------------------------- first start
def ensure_local_credentials(auth: Auth, folder: str) -> dict:
    """The admin's credential and the agents' bootstrap token, as root-only files
    in `folder` (netmaster's PKI folder), made on first start.  Deleting a file and
    restarting netmaster rotates it: the old secret stops working."""
    import os

    from netweave.pki import write_private
    paths = {"admin_token": os.path.join(folder, "admin.token"),
             "admin_password": os.path.join(folder, "admin.password"),
             "bootstrap_token": os.path.join(folder, "bootstrap.token")}

    def known(path, principal):
        try:
            rec = auth.store.get(f"auth/token/{token_hash(open(path).read().strip())}")
        except OSError:
            return False
        return rec is not None and rec["principal"] == principal

    if not (known(paths["admin_token"], "user:admin") and os.path.exists(paths["admin_password"])):
        password = secrets.token_urlsafe(18)
        auth.put_user("admin", {"password": password, "role": "admin", "tenants": []})
        auth.revoke("user:admin")
        token, _ = auth.mint("user:admin", "api", None)
        write_private(paths["admin_password"], password + "\n")
        write_private(paths["admin_token"], token + "\n")
        log.info("event=admin_credential_created user=admin token_file=%s password_file=%s",
                 paths["admin_token"], paths["admin_password"])
    if not known(paths["bootstrap_token"], "bootstrap:bootstrap"):
        auth.revoke(kind="bootstrap")
        token, _ = auth.mint("bootstrap:bootstrap", "bootstrap", None)
        write_private(paths["bootstrap_token"], token + "\n")
        log.info("event=bootstrap_token_created file=%s", paths["bootstrap_token"])
    return paths
