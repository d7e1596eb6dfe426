"""netweave/pki.py: the CA, certificates, and real TLS handshakes over loopback
with the contexts it builds (a peer of another CA is refused)."""
import os
import socket
import ssl
import stat
import threading

import pytest

from netweave import pki


@pytest.fixture
def ca(tmp_path):
    p = pki.PKI(str(tmp_path / "pki"))
    assert p.ensure_ca() is True
    assert p.ensure_ca() is False            # the second start keeps the CA
    return p


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_and_modes(ca):
    crt, key = ca.ensure_cert("netmaster", dns=["localhost"], ips=["127.0.0.1"])
    assert _mode(ca.ca_key) == 0o600 and _mode(key) == 0o600
    assert _mode(ca.ca_cert) == 0o644 and _mode(crt) == 0o644
    assert _mode(ca.dir) == 0o700
    before = open(crt).read()
    assert ca.ensure_cert("netmaster", dns=["localhost"], ips=["127.0.0.1"]) == (crt, key)
    assert open(crt).read() == before                       # still good: not reissued
    ca.ensure_cert("netmaster", dns=["localhost"], ips=["127.0.0.1", "10.9.9.9"])
    assert open(crt).read() != before                       # a new address: reissued
    assert len(pki.fingerprint(open(crt).read()).split(":")) == 32


def test_cert_of_another_ca_is_reissued(ca, tmp_path):
    other = pki.PKI(str(tmp_path / "other"))
    other.ensure_ca()
    crt, key = other.ensure_cert("netmaster")
    os.makedirs(ca.dir, exist_ok=True)
    mine_crt, _ = ca.cert_paths("netmaster")
    with open(mine_crt, "w") as f, open(crt) as g:
        f.write(g.read())
    with open(ca.cert_paths("netmaster")[1], "w") as f, open(key) as g:
        f.write(g.read())
    ca.ensure_cert("netmaster")
    assert pki.fingerprint(open(mine_crt).read()) != pki.fingerprint(open(crt).read())


def _handshake(server_ctx, client_ctx, server_hostname="localhost"):
    """One TLS handshake over loopback: (server's view of the peer CN, error or None)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    seen = {}

    def serve():
        conn, _ = lsock.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                seen["cn"] = pki.common_name(s.getpeercert())
                s.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            seen["error"] = exc

    t = threading.Thread(target=serve)
    t.start()
    try:
        with socket.create_connection(lsock.getsockname(), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as c:
                assert c.recv(2) == b"ok"
        err = None
    except (ssl.SSLError, OSError) as exc:
        err = exc
    t.join(10)
    lsock.close()
    return seen.get("cn", ""), err


def test_mutual_tls_and_refusals(ca, tmp_path):
    crt, key = ca.ensure_cert("server", dns=["localhost"], ips=["127.0.0.1"])
    ccrt, ckey = ca.ensure_cert("client", cn="netmaster", server=False)
    srv = pki.server_context(crt, key, ca.ca_cert, require_client=True)
    cn, err = _handshake(srv, pki.client_context(ca.ca_cert, ccrt, ckey))
    assert err is None and cn == "netmaster"
    # a client without a certificate is refused by a server that requires one
    _, err = _handshake(srv, pki.client_context(ca.ca_cert))
    assert err is not None
    # a client trusting another CA refuses this server
    other = pki.PKI(str(tmp_path / "other"))
    other.ensure_ca()
    _, err = _handshake(pki.server_context(crt, key), pki.client_context(other.ca_cert))
    assert isinstance(err, ssl.SSLCertVerificationError)
    # a name the certificate does not carry is refused
    _, err = _handshake(pki.server_context(crt, key), pki.client_context(ca.ca_cert),
                        server_hostname="evil.example")
    assert isinstance(err, ssl.SSLCertVerificationError)


def test_write_private_is_atomic_and_private(tmp_path):
    path = str(tmp_path / "sub" / "secret")
    pki.write_private(path, "s3cret")
    assert open(path).read() == "s3cret" and _mode(path) == 0o600
    assert [n for n in os.listdir(tmp_path / "sub") if n.startswith(".tmp-")] == []
