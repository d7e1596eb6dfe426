"""netmaster: the REST API and the OpenFlow controller in one process.

Concurrency model: eventlet.  os-ken's hub runs on eventlet when
OSKEN_HUB_TYPE=eventlet, and eventlet.wsgi serves REST in the same hub, so
REST handlers, store watch callbacks and switch handlers are green threads
of one OS thread and never race on the model.  Both lines below must run
before anything else imports socket or threading.
"""
import os

os.environ.setdefault("OSKEN_HUB_TYPE", "eventlet")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
# eventlet announces its own deprecation at import: it is still the hub os-ken runs on.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import eventlet.wsgi  # noqa: E402

from netweave import config  # noqa: E402

log = logging.getLogger("netmaster")


def _positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return n


def build_parser():
    p = argparse.ArgumentParser(prog="netmaster", description="netweave's netmaster: REST API and OpenFlow controller")
    p.add_argument("--listen", "--listen-url", action="append", dest="listen",
                   help="REST address HOST:PORT; repeat to listen on several (default 127.0.0.1:9999)")
    p.add_argument("--of-listen", default="0.0.0.0", help="OpenFlow listen address (default 0.0.0.0)")
    p.add_argument("--of-port", type=int, default=6653, help="OpenFlow port (default 6653)")
    p.add_argument("--no-openflow", action="store_true", help="serve REST only (no OpenFlow controller)")
    p.add_argument("--store", "--cluster-store", dest="store", default="sqlite:///var/lib/netweave/state.db",
                   help="sqlite:///PATH (embedded, default) or etcd://HOST:PORT[/prefix]")
    p.add_argument("--host-timeout", type=float, default=6.0,
                   help="seconds without a heartbeat before a host is marked down (default 6)")
    p.add_argument("--underlay-mtu", type=int, default=1500, help="underlay MTU (default 1500)")
    p.add_argument("--deny-log-rate", type=_positive_int, default=100,
                   help="packets/s per host that logged deny rules may send to netmaster (default 100)")
    p.add_argument("--log-level", default="INFO")
    config.add_config_option(p)
    return p


def parse_args(argv=None):
    """Flags > the configuration file's [netmaster] table (netweave/config.py) > defaults."""
    return config.parse_args(build_parser(), argv)


def _split(addr: str):
    host, _, port = addr.rpartition(":")
    return host or "0.0.0.0", int(port)


class _WsgiLog:
    """eventlet.wsgi writes access lines to a file-like object; send them to logging."""

    def write(self, line):
        line = line.strip()
        if line:
            logging.getLogger("netmaster.access").debug("event=http_request %s", line)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from controller.netmaster import Netmaster

    listen = args.listen or ["127.0.0.1:9999"]
    nm = Netmaster(args.store, host_timeout=args.host_timeout, underlay_mtu=args.underlay_mtu,
                   openflow=None if args.no_openflow else (args.of_listen, args.of_port),
                   deny_log_rate=args.deny_log_rate)
    socks = []
    for addr in listen:
        try:
            socks.append(eventlet.listen(_split(addr)))
        except OSError as exc:
            log.error("event=listen_failed address=%s error=%s", addr, exc)
            return 1
    stop = eventlet.event.Event()

    def _stop(*_):
        if not stop.ready():
            stop.send()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from rest.accept_guard import GuardedListener
    servers = [eventlet.spawn(eventlet.wsgi.server, GuardedListener(s), nm.rest, log=_WsgiLog(), log_output=True,
                              keepalive=True, socket_timeout=30) for s in socks]
    nm.start()
    log.info("event=netmaster_started rest=%s openflow=%s store=%s", ",".join(listen),
             "off" if args.no_openflow else f"{args.of_listen}:{args.of_port}", args.store)
    try:
        stop.wait()
    finally:
        log.info("event=netmaster_stopping")
        for s in servers:
            s.kill()
        for s in socks:
            s.close()
        nm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
