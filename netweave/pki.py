"""netweave's local PKI: one CA, and certificates it signs, kept as PEM files in
one folder (netmaster's `--pki-dir`).

Used by the REST TLS listener, the agents' local API (mutual TLS with
netmaster's client certificate), and reusable for OpenFlow `ssl:` and etcd
TLS.  Keys are ECDSA P-256 (milliseconds to make, so a first start stays
instant); every private key file is written 0600 and atomically.

    pki = PKI("/var/lib/netweave/pki")
    pki.ensure_ca()                                  # ca.crt, ca.key
    crt, key = pki.ensure_cert("netmaster", dns=["localhost"], ips=["10.0.0.1"])
    ctx = server_context(crt, key)                   # or client_context(pki.ca_cert, crt, key)
    cert_pem, key_pem = pki.issue("host:h1", client=True, server=True)   # in memory, not stored
"""
from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

CA_DAYS = 3650
CERT_DAYS = 825          # the longest validity browsers and most clients still accept
RENEW_BEFORE = datetime.timedelta(days=30)


def write_private(path: str, data: bytes | str, mode: int = 0o600) -> None:
    """Write a file readable by its owner only, atomically (temp file + rename),
    so a reader never sees half a key and the mode is right from the first byte."""
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "netweave"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class PKI:
    def __init__(self, directory: str):
        self.dir = directory
        self.ca_cert = os.path.join(directory, "ca.crt")
        self.ca_key = os.path.join(directory, "ca.key")
        self._ca = None

    # ------------------------------------------------------------ the CA
    def ensure_ca(self) -> bool:
        """Create the CA unless it exists; True when it was created now."""
        if os.path.exists(self.ca_cert) and os.path.exists(self.ca_key):
            return False
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        name = _name("netweave CA")
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        write_private(self.ca_key, _key_pem(key))
        # the CA certificate is public: others (agents, operators) need to read it
        write_private(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        self._ca = None
        log.info("event=pki_ca_created cert=%s", self.ca_cert)
        return True

    def _load_ca(self):
        if self._ca is None:
            with open(self.ca_key, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), None)
            with open(self.ca_cert, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            self._ca = (cert, key)
        return self._ca

    def ca_pem(self) -> str:
        with open(self.ca_cert) as f:
            return f.read()

    # ------------------------------------------------------------ certificates
    def issue(self, cn: str, dns=(), ips=(), server: bool = True, client: bool = True,
              days: int = CERT_DAYS) -> tuple[str, str]:
        """A new key and a certificate for it signed by the CA: (cert PEM, key PEM).
        `cn` is the identity peers check (netmaster, host:<label>, ...)."""
        ca_cert, ca_key = self._load_ca()
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                            critical=False))
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key).decode()

    def cert_paths(self, name: str) -> tuple[str, str]:
        return os.path.join(self.dir, f"{name}.crt"), os.path.join(self.dir, f"{name}.key")

    def ensure_cert(self, name: str, cn: str | None = None, dns=(), ips=(), server: bool = True,
                    client: bool = True) -> tuple[str, str]:
        """`<name>.crt` and `<name>.key` in the folder, (re)issued when missing, near
        expiry, not signed by the current CA, or lacking one of the asked names."""
        crt, key = self.cert_paths(name)
        if not self._usable(crt, key, dns, ips):
            cert_pem, key_pem = self.issue(cn or name, dns, ips, server, client)
            write_private(key, key_pem)
            write_private(crt, cert_pem, mode=0o644)
            log.info("event=pki_cert_issued name=%s cert=%s dns=%s ips=%s", name, crt,
                     ",".join(dns) or "-", ",".join(ips) or "-")
        return crt, key

    def _usable(self, crt: str, key: str, dns, ips) -> bool:
        if not (os.path.exists(crt) and os.path.exists(key)):
            return False
        try:
            with open(crt, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            ca_cert, _ = self._load_ca()
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, OSError, Exception):     # unreadable, or another CA's
            return False
        if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
            return False
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have_dns = set(san.get_values_for_type(x509.DNSName))
            have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
        except x509.ExtensionNotFound:
            have_dns, have_ips = set(), set()
        return set(dns) <= have_dns and {str(ipaddress.ip_address(i)) for i in ips} <= have_ips


def fingerprint(cert_pem: str | bytes) -> str:
    """SHA-256 fingerprint, hex with colons (what `openssl x509 -fingerprint -sha256` shows)."""
    if isinstance(cert_pem, str):
        cert_pem = cert_pem.encode()
    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def cert_sha256(cert: str | bytes) -> str:
    """SHA-256 of a certificate's DER bytes, plain hex; `cert` is PEM text or DER
    (what ssl's getpeercert(binary_form=True) gives)."""
    import hashlib
    if isinstance(cert, str) or cert.lstrip().startswith(b"-----"):
        cert = ssl.PEM_cert_to_DER_cert(cert if isinstance(cert, str) else cert.decode())
    return hashlib.sha256(cert).hexdigest()


def common_name(peercert: dict | None) -> str:
    """The CN of a peer certificate as ssl's getpeercert() gives it ('' when none)."""
    for rdn in (peercert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return ""


def server_context(certfile: str, keyfile: str, cafile: str | None = None,
                   require_client: bool = False) -> ssl.SSLContext:
    """TLS 1.2+ server side; with `require_client`, only peers holding a
    certificate signed by `cafile` complete the handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    return ctx


def client_context(cafile: str | None, certfile: str | None = None, keyfile: str | None = None,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """TLS 1.2+ client side trusting `cafile` (the system's roots when None),
    presenting a client certificate when given."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx
