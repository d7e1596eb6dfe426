"""A stand-in OpenFlow 1.3 switch for tests that need netmaster to see a
connected switch (its datapath id and port numbers) but no packet to move:
no Open vSwitch, no network namespace, just a TCP connection to netmaster's
OpenFlow port from a thread of the test process.

It speaks what netmaster's reconcile needs and nothing more: HELLO, FEATURES,
ECHO, PORT_DESC (the ports it was given), empty flow-stats and group-desc
replies, ONF bundle control (open/commit/discard are acknowledged) and
BARRIER.  Flow mods inside a bundle are accepted and forgotten, so every
reconcile finds an empty switch again; that is enough for `GET
/api/v1/switches/` and for `GET /api/v1/trace/`, whose simulator needs only
the endpoints' port numbers.
"""
from __future__ import annotations

import socket
import struct
import threading

VERSION = 0x04
HDR = struct.Struct("!BBHI")                # version, type, length, xid
T_HELLO, T_ECHO_REQUEST, T_ECHO_REPLY, T_EXPERIMENTER = 0, 2, 3, 4
T_FEATURES_REQUEST, T_FEATURES_REPLY = 5, 6
T_MULTIPART_REQUEST, T_MULTIPART_REPLY = 18, 19
T_BARRIER_REQUEST, T_BARRIER_REPLY = 20, 21
MP_FLOW, MP_GROUP_DESC, MP_PORT_DESC = 1, 7, 13
ONF_EXPERIMENTER_ID = 0x4F4E4600
ONF_ET_BUNDLE_CONTROL = 2300
PORT = struct.Struct("!I4x6s2x16sIIIIIIII")  # ofp_port


class FakeSwitch:
    def __init__(self, of_port: int, dpid: int, ports: dict[str, int], host="127.0.0.1", source=None):
        self.addr = (host, of_port)
        self.source = source                 # the local address to connect from (127.0.0.2, ...)
        self.dpid = dpid
        self.ports = dict(ports)
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.seen: list[int] = []            # message types received, for debugging
        self.error: BaseException | None = None
        self._stop = threading.Event()

    def start(self) -> "FakeSwitch":
        self.sock = socket.create_connection(self.addr, timeout=10,
                                             source_address=(self.source, 0) if self.source else None)
        self.sock.settimeout(0.5)
        self._send(T_HELLO, 1, b"")
        self.thread = threading.Thread(target=self._run, name=f"fake-switch-{self.dpid:x}", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.thread is not None:
            self.thread.join(5)
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = self.thread = None

    # ------------------------------------------------------------ wire
    def _send(self, mtype: int, xid: int, body: bytes) -> None:
        self.sock.sendall(HDR.pack(VERSION, mtype, HDR.size + len(body), xid) + body)

    def _recv_exact(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            if self._stop.is_set():
                return None
            try:
                chunk = self.sock.recv(n - len(buf))
            except socket.timeout:
                continue
            if not chunk:
                return None
            buf += chunk
        return buf

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                head = self._recv_exact(HDR.size)
                if head is None:
                    return
                _, mtype, length, xid = HDR.unpack(head)
                body = self._recv_exact(length - HDR.size) if length > HDR.size else b""
                if body is None:
                    return
                self.seen.append(mtype)
                self._handle(mtype, xid, body)
        except OSError as exc:
            if not self._stop.is_set():
                self.error = exc

    def _handle(self, mtype: int, xid: int, body: bytes) -> None:
        if mtype == T_ECHO_REQUEST:
            self._send(T_ECHO_REPLY, xid, body)
        elif mtype == T_FEATURES_REQUEST:
            # datapath_id, n_buffers, n_tables, auxiliary_id, capabilities, reserved
            self._send(T_FEATURES_REPLY, xid, struct.pack("!QIBB2xII", self.dpid, 0, 254, 0, 0x4F, 0))
        elif mtype == T_MULTIPART_REQUEST:
            mp_type, = struct.unpack_from("!H", body)
            payload = b""
            if mp_type == MP_PORT_DESC:
                for name, no in sorted(self.ports.items(), key=lambda x: x[1]):
                    mac = bytes([2, 0, 0, 0, (no >> 8) & 0xFF, no & 0xFF])
                    payload += PORT.pack(no, mac, name.encode()[:15], 0, 4, 0, 0, 0, 0, 10_000_000, 10_000_000)
            # flow stats and group descriptions: an empty switch
            self._send(T_MULTIPART_REPLY, xid, struct.pack("!HH4x", mp_type, 0) + payload)
        elif mtype == T_BARRIER_REQUEST:
            self._send(T_BARRIER_REPLY, xid, b"")
        elif mtype == T_EXPERIMENTER:
            exp_id, exp_type = struct.unpack_from("!II", body)
            if exp_id == ONF_EXPERIMENTER_ID and exp_type == ONF_ET_BUNDLE_CONTROL:
                bundle_id, ctrl, flags = struct.unpack_from("!IHH", body, 8)
                # every *_REQUEST is answered by its *_REPLY (request + 1)
                self._send(T_EXPERIMENTER, xid, struct.pack("!IIIHH", exp_id, exp_type, bundle_id, ctrl + 1, flags))
        # HELLO, flow and group mods, bundle adds, set-config: nothing to answer
