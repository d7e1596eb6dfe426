"""A TCP forwarder for the simulated cluster: 127.0.0.1:PORT in the root
namespace reaches a live netmaster, whichever one it is.  Each new connection
goes to the backend that answered last, or the next that accepts a connection;
bytes are copied both ways until either side closes.

    python -m topologies.restproxy 127.0.0.1:9999 10.99.0.201:9999 10.99.0.202:9999
"""
from __future__ import annotations

import logging
import socket
import sys
import threading

log = logging.getLogger("restproxy")
CONNECT_TIMEOUT = 0.5


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class Proxy:
    def __init__(self, listen: tuple[str, int], backends: list[tuple[str, int]]):
        self.backends = backends
        self.cur = 0
        self.sock = socket.create_server(listen, reuse_port=False)

    def serve(self):
        while True:
            client, _ = self.sock.accept()
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _connect(self):
        for i in range(len(self.backends)):
            n = (self.cur + i) % len(self.backends)
            try:
                s = socket.create_connection(self.backends[n], timeout=CONNECT_TIMEOUT)
            except OSError:
                continue
            s.settimeout(None)
            if n != self.cur:
                log.info("event=proxy_backend to=%s:%d", *self.backends[n])
                self.cur = n
            return s
        return None

    def _handle(self, client):
        upstream = self._connect()
        if upstream is None:
            client.close()
            return
        left = [2, threading.Lock()]           # the second pipe to finish closes both
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b, left), daemon=True).start()


def _pipe(src, dst, left):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with left[1]:
            left[0] -= 1
            if left[0] == 0:
                src.close()
                dst.close()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s")
    Proxy(_addr(argv[0]), [_addr(a) for a in argv[1:]]).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
