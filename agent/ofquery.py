"""Ask a bridge over its OpenFlow management socket whether a port's flows are in place.

netplugin waits, at CNI ADD, until netmaster's flows for the new port are on its switch. It asks
the switch itself (what netmaster believes is not the question) over ``<bridge>.mgmt``, the unix
socket ovs-vswitchd offers ovs-ofctl, with one OpenFlow 1.3 connection held for the whole wait
and a flow-stats request per poll: an ``ovs-ofctl`` process per poll cost the ADD a few ms each
and the switch one more connection each. Only the three messages this needs are encoded.
"""
import contextlib
import socket
import struct
import time

OFP_VERSION = 4                       # OpenFlow 1.3
OFPT_HELLO, OFPT_ERROR, OFPT_ECHO_REQUEST, OFPT_ECHO_REPLY = 0, 1, 2, 3
OFPT_MULTIPART_REQUEST, OFPT_MULTIPART_REPLY = 18, 19
OFPMP_FLOW, OFPMPF_REPLY_MORE = 1, 1
OFPP_ANY = OFPG_ANY = 0xffffffff
OXM_OF_IN_PORT = (0x8000 << 16) | (0 << 9) | 4


class OfQueryError(OSError):
    pass


class Bridge:
    """One OpenFlow connection to a bridge's management socket (``path``)."""

    def __init__(self, path, timeout=2.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.xid = 0
        try:
            self.sock.connect(path)
            self._send(OFPT_HELLO, b"")
            version, kind, _, _ = self._recv()
            if kind != OFPT_HELLO or version < OFP_VERSION:
                raise OfQueryError("%s: no OpenFlow 1.3 hello (version %d, type %d)" % (path, version, kind))
        except BaseException:
            self.sock.close()
            raise

    def close(self):
        self.sock.close()

    def _send(self, kind, body, xid=None):
        if xid is None:
            self.xid += 1
            xid = self.xid
        self.sock.sendall(struct.pack("!BBHI", OFP_VERSION, kind, 8 + len(body), xid) + body)
        return xid

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise OfQueryError("the switch closed the management connection")
            buf += chunk
        return buf

    def _recv(self):
        version, kind, length, xid = struct.unpack("!BBHI", self._read(8))
        return version, kind, xid, self._read(length - 8)

    def port_has_flows(self, ofport, table=0):
        """Whether table ``table`` holds a flow matching exactly in_port=ofport."""
        match = struct.pack("!HHII", 1, 12, OXM_OF_IN_PORT, ofport) + b"\0" * 4
        body = struct.pack("!HH4x", OFPMP_FLOW, 0) + \
            struct.pack("!B3xII4xQQ", table, OFPP_ANY, OFPG_ANY, 0, 0) + match
        xid = self._send(OFPT_MULTIPART_REQUEST, body)
        found = False
        while True:
            _, kind, rxid, data = self._recv()
            if kind == OFPT_ECHO_REQUEST:
                self._send(OFPT_ECHO_REPLY, data, rxid)
                continue
            if rxid != xid:
                continue
            if kind == OFPT_ERROR:
                etype, code = struct.unpack("!HH", data[:4])
                raise OfQueryError("the switch refused a flow-stats request (error type %d code %d)"
                                   % (etype, code))
            if kind != OFPT_MULTIPART_REPLY:
                continue
            _, flags = struct.unpack("!HH", data[:4])
            found = found or len(data) > 8
            if not flags & OFPMPF_REPLY_MORE:
                return found


def wait_port_flows(path, ofport, limit, period=0.005):
    """Poll until the bridge holds ``ofport``'s table-0 flows; the seconds waited, or None when
    ``limit`` seconds went by first."""
    t0 = time.monotonic()
    with contextlib.closing(Bridge(path)) as br:
        while not br.port_has_flows(ofport):
            if time.monotonic() - t0 > limit:
                return None
            time.sleep(period)
    return time.monotonic() - t0
