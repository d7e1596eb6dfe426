"""netmaster: the REST API and the OpenFlow controller in one process.

Concurrency model: eventlet.  os-ken's hub runs on eventlet when
OSKEN_HUB_TYPE=eventlet, and eventlet.wsgi serves REST in the same hub, so
REST handlers, store watch callbacks and switch handlers are green threads
of one OS thread and never race on the model.  Both lines below must run
before anything else imports socket or threading.
"""
import os

os.environ.setdefault("OSKEN_HUB_TYPE", "eventlet")

from flows import gcpause  # noqa: E402  (gc and contextlib only: nothing to monkey-patch)

# The start builds a large, long-lived, acyclic heap (modules, the store's records, the
# engine's tables): the cyclic GC rescanned it to find nothing. It stays off until the
# first recompute is done (_gc_after_start), which freezes that heap (controller/fabric.py).
# From here when run as a program; from main() for the console script (tests that only
# import this module keep their collector).
_gc_held = __name__ == "__main__"
if _gc_held:
    gcpause.hold()

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
# eventlet announces its own deprecation at import: it is still the hub os-ken runs on.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import eventlet.wsgi  # noqa: E402

from netweave import config  # noqa: E402

log = logging.getLogger("netmaster")


def _positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return n


def _positive_float(text: str) -> float:
    x = float(text)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return x


def _port_or_none(text) -> int:
    """A TCP port, or 0 for 'none' (the listener is off)."""
    if str(text).lower() in ("none", "off", "", "0"):
        return 0
    n = int(text)
    if not 0 < n < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return n


def build_parser():
    p = argparse.ArgumentParser(prog="netmaster", description="netweave's netmaster: REST API and OpenFlow controller")
    p.add_argument("--listen", "--listen-url", action="append", dest="listen",
                   help="REST address HOST:PORT; repeat to listen on several (default 127.0.0.1:9999)")
    p.add_argument("--tls-listen", action="append", dest="tls_listen",
                   help="authenticated HTTPS address HOST:PORT for agents and remote users; repeat "
                        "for several; 'none' for no such listener (default 0.0.0.0:10000)")
    p.add_argument("--pki-dir", default=None,
                   help="folder of the local CA, certificates, the admin credential and the agents' "
                        "bootstrap token (default: 'pki' beside the SQLite file, else "
                        "/var/lib/netweave/pki)")
    p.add_argument("--tls-san", action="append", default=[],
                   help="another DNS name or address clients use to reach netmaster, put in its "
                        "certificate; repeat for several")
    p.add_argument("--token-ttl", type=_positive_float, default=12.0 * 3600,
                   help="seconds a login token lives (default 43200)")
    p.add_argument("--of-listen", default="127.0.0.1",
                   help="address of the plain (tcp, unauthenticated) OpenFlow listener (default "
                        "127.0.0.1: switches of other hosts use TLS; 0.0.0.0 or an address opens it "
                        "to them, each switch then checked by the address it connects from)")
    p.add_argument("--of-port", type=int, default=6653, help="plain OpenFlow port (default 6653)")
    p.add_argument("--of-tls-listen", default="0.0.0.0",
                   help="address of the OpenFlow over TLS listener (default 0.0.0.0)")
    p.add_argument("--of-tls-port", type=_port_or_none, default=6643,
                   help="OpenFlow over TLS port, for switches with `ssl:` targets holding a "
                        "certificate of netmaster's CA (default 6643; 'none' to disable)")
    p.add_argument("--no-openflow", action="store_true", help="serve REST only (no OpenFlow controller)")
    p.add_argument("--store", "--cluster-store", dest="store", default="sqlite:///var/lib/netweave/state.db",
                   help="sqlite:///PATH (embedded, default), etcd://HOST:PORT[,HOST:PORT][/prefix], or etcds://... over TLS")
    p.add_argument("--etcd-cacert", default="", help="CA bundle that verifies etcd's certificate (etcds://; default the system's)")
    p.add_argument("--etcd-cert", default="", help="client certificate netmaster shows etcd (etcd --client-cert-auth)")
    p.add_argument("--etcd-key", default="", help="the client certificate's key")
    p.add_argument("--host-timeout", type=float, default=6.0,
                   help="seconds without a heartbeat before a host is marked down (default 6)")
    p.add_argument("--underlay-mtu", type=int, default=1500, help="underlay MTU (default 1500)")
    p.add_argument("--deny-log-rate", type=_positive_int, default=100,
                   help="packets/s per host that logged deny rules may send to netmaster (default 100)")
    p.add_argument("--advertise", default="",
                   help="this netmaster's address as other members, hosts and clients reach it "
                        "(default: the first non-loopback REST listen address, else this host's)")
    p.add_argument("--election-ttl", type=_positive_int, default=3,
                   help="seconds of the leader's etcd lease: a dead leader is replaced, and a leader "
                        "cut off from etcd steps down, within this time (default 3)")
    p.add_argument("--log-level", default="INFO")
    config.add_config_option(p)
    return p


def parse_args(argv=None):
    """Flags > the configuration file's [netmaster] table (netweave/config.py) > defaults."""
    return config.parse_args(build_parser(), argv)


def _split(addr: str):
    host, _, port = addr.rpartition(":")
    return host or "0.0.0.0", int(port)


def pki_dir(args) -> str:
    if args.pki_dir:
        return args.pki_dir
    if args.store.startswith("etcd"):
        return "/var/lib/netweave/pki"
    path = args.store[len("sqlite://"):] if args.store.startswith("sqlite://") else args.store
    return os.path.join(os.path.dirname(os.path.abspath(path)), "pki")


def _local_addresses() -> list[str]:
    """This machine's IPv4 addresses, for the certificate of a listener on 0.0.0.0."""
    import subprocess
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3]


def tls_setup(args, tls_listen: list[str]):
    """The CA, netmaster's server and client certificates, and the PKI."""
    import ipaddress
    import socket as _socket

    from netweave.pki import PKI
    pki = PKI(pki_dir(args))
    pki.ensure_ca()
    ips, dns = {"127.0.0.1"}, {"localhost", _socket.gethostname()}
    for addr in tls_listen:
        host = _split(addr)[0]
        ips.update(_local_addresses() if host in ("0.0.0.0", "") else [host])
    for name in args.tls_san:
        try:
            ips.add(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.add(name)
    crt, key = pki.ensure_cert("netmaster", dns=sorted(dns), ips=sorted(ips))
    # netmaster's client identity towards agents' local APIs (CN netmaster)
    pki.ensure_cert("netmaster-client", cn="netmaster", server=False)
    return pki, crt, key


class _Listener:
    """Marks each request with the listener it came through (rest/app.py decides
    from it whether a credential is needed)."""

    def __init__(self, app, kind: str):
        self.app, self.kind = app, kind

    def __call__(self, environ, start_response):
        environ["netweave.listener"] = self.kind
        return self.app(environ, start_response)


def _member(args, listen: list[str], tls_listen: list[str]) -> dict:
    """This netmaster's record in the cluster: where others and clients reach it."""
    addr = args.advertise
    if not addr:
        for a in listen + tls_listen:
            host = _split(a)[0]
            if host not in ("0.0.0.0", "::") and not ipaddress.ip_address(host).is_loopback:
                addr = host
                break
    if not addr:
        try:
            addr = socket.gethostbyname(socket.gethostname())
        except OSError:
            addr = "127.0.0.1"
    rest_port = _split(listen[0])[1] if listen else 0
    return {"id": f"{addr}:{rest_port}", "address": addr, "restPort": rest_port,
            "tlsPort": _split(tls_listen[0])[1] if tls_listen else 0,
            "ofPort": 0 if args.no_openflow else args.of_port}


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def listeners_summary(args, listen: list[str], tls_listen: list[str]) -> str:
    """Every open listener and how it authenticates, for the start-up line:
    KIND@ADDRESS/HOW, comma-separated."""
    out = []
    for a in listen:
        out.append(f"rest@{a}/" + ("none-loopback-admin" if _is_loopback(_split(a)[0]) else "NONE"))
    out += [f"https@{a}/token" for a in tls_listen]
    if not args.no_openflow:
        out.append(f"openflow@{args.of_listen}:{args.of_port}/" +
                   ("none-loopback" if _is_loopback(args.of_listen) else "source-address"))
        if args.of_tls_port:
            out.append(f"openflow-tls@{args.of_tls_listen}:{args.of_tls_port}/certificate")
    return ",".join(out)


def _gc_after_start(nm) -> None:
    nm.fabric.wait_loaded()
    gcpause.release()


class _WsgiLog:
    """eventlet.wsgi writes access lines to a file-like object; send them to logging."""

    def write(self, line):
        line = line.strip()
        if line:
            logging.getLogger("netmaster.access").debug("event=http_request %s", line)


def main(argv=None):
    global _gc_held
    if not _gc_held:
        gcpause.hold()
        _gc_held = True
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # The OpenFlow port is bound before the slow part of the start (imports, the store,
    # the first full compile): a switch retrying meanwhile waits in the kernel's backlog
    # instead of being refused and backing off for another second or more.
    of_sock = None
    if not args.no_openflow:
        try:
            of_sock = eventlet.listen((args.of_listen, args.of_port),
                                      family=socket.AF_INET6 if ":" in args.of_listen else socket.AF_INET)
        except OSError as exc:
            log.error("event=listen_failed address=%s:%d error=%s", args.of_listen, args.of_port, exc)
            return 1
    from controller.netmaster import Netmaster

    from rest.auth import ensure_local_credentials
    from netweave.pki import server_context

    listen = args.listen or ["127.0.0.1:9999"]
    tls_listen = [a for a in (args.tls_listen or ["0.0.0.0:10000"]) if a.lower() not in ("none", "")]
    pki, crt, key = tls_setup(args, tls_listen)
    from store.base import StoreError
    from store.etcd_tls import with_flags
    try:
        store = with_flags(args.store, args.etcd_cacert, args.etcd_cert, args.etcd_key)
        nm = Netmaster(store, host_timeout=args.host_timeout, underlay_mtu=args.underlay_mtu,
                       openflow=None if args.no_openflow else (args.of_listen, args.of_port),
                       deny_log_rate=args.deny_log_rate, pki=pki, token_ttl=args.token_ttl,
                       member=_member(args, listen, tls_listen), election_ttl=args.election_ttl,
                       of_tls_port=args.of_tls_port or None, of_tls_listen=args.of_tls_listen,
                       of_sock=of_sock)
    except StoreError as exc:             # unreachable, refused TLS, a bad option: say which, exit
        log.error("event=store_failed store=%s error=%s", args.store, exc)
        return 1
    creds = ensure_local_credentials(nm.auth, pki.dir)
    socks = []
    ctx = server_context(crt, key)
    for addr, kind in [(a, "local") for a in listen] + [(a, "tls") for a in tls_listen]:
        try:
            sock = eventlet.listen(_split(addr))
            if kind == "tls":
                # eventlet's green SSL socket: the handshake runs in each connection's
                # own green thread, so a silent client cannot stall accept()
                sock = ctx.wrap_socket(sock, server_side=True)
            elif not ipaddress.ip_address(_split(addr)[0]).is_loopback:
                log.warning("event=listener_unauthenticated address=%s note=every client reaching "
                            "it is the administrator; use --tls-listen for other hosts", addr)
            socks.append((sock, kind))
        except (OSError, ValueError) as exc:
            log.error("event=listen_failed address=%s error=%s", addr, exc)
            return 1
    stop = eventlet.event.Event()

    def _stop(*_):
        if not stop.ready():
            stop.send()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from rest.accept_guard import GuardedListener
    servers = [eventlet.spawn(eventlet.wsgi.server, GuardedListener(s), _Listener(nm.rest, kind), log=_WsgiLog(),
                              log_output=True, keepalive=True, socket_timeout=30) for s, kind in socks]
    if not args.no_openflow and not _is_loopback(args.of_listen):
        log.warning("event=listener_unauthenticated address=%s:%d protocol=openflow note=a switch "
                    "there is taken for a host by the address it connects from only; switches "
                    "with a host certificate use --of-tls-port", args.of_listen, args.of_port)
    nm.start()
    eventlet.spawn(_gc_after_start, nm)
    log.info("event=netmaster_started listeners=%s store=%s", listeners_summary(args, listen, tls_listen),
             args.store)
    log.info("event=credentials ca=%s admin_token=%s admin_password=%s bootstrap_token=%s",
             pki.ca_cert, creds["admin_token"], creds["admin_password"], creds["bootstrap_token"])
    try:
        stop.wait()
    finally:
        log.info("event=netmaster_stopping")
        for s in servers:
            s.kill()
        for s, _ in socks:
            s.close()
        nm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
