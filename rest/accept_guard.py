"""A listening socket whose accept() never kills the server loop.

eventlet.wsgi.server re-raises any accept error but a few, and stops for
good on those few: with its descriptors used up (EMFILE), netmaster stayed
up with no REST listener. Here running out of descriptors waits (backing off,
the pending connections stay in the kernel's backlog) until some are freed,
and a connection that failed before it was accepted (reset, TLS handshake)
is skipped. Only a closed listener ends the loop.
"""
from __future__ import annotations

import errno
import logging
import socket
import ssl

import eventlet

log = logging.getLogger(__name__)

EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
ONE_CONNECTION = {errno.ECONNABORTED, errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.EPROTO,
                  errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH}
MAX_BACKOFF = 0.5


class GuardedListener:
    def __init__(self, sock):
        self._sock = sock
        self.exhausted = 0          # accept() calls that found no descriptor left

    def accept(self):
        delay = 0.01
        while True:
            try:
                conn = self._sock.accept()
            except OSError as exc:
                if exc.errno in EXHAUSTED:
                    if delay == 0.01:
                        log.warning("event=accept_exhausted listener=%s error=%s",
                                    self._name(), errno.errorcode.get(exc.errno, exc.errno))
                    self.exhausted += 1
                    eventlet.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                if exc.errno in ONE_CONNECTION or isinstance(exc, (ssl.SSLError, socket.timeout)):
                    log.info("event=accept_failed listener=%s error=%s", self._name(), exc)
                    continue
                raise
            if delay > 0.01:
                log.info("event=accept_recovered listener=%s", self._name())
            return conn

    def _name(self):
        try:
            host, port = self._sock.getsockname()[:2]
            return f"{host}:{port}"
        except OSError:
            return "closed"

    def __getattr__(self, name):
        return getattr(self._sock, name)
