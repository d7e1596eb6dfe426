"""netplugin's side of netweave-cni: CNI requests served on a unix socket.

The plugin process (``agent.cni_plugin``) forwards each ADD, CHECK and DEL here, so a request
costs the work (netmaster's allocation, the veth, one OVSDB transaction) and not a new OVSDB
connection. Requests run one at a time on OVSDB connections this server owns: an IDL is used
by one thread only, and netplugin's main-loop connection stays the main thread's.
"""
import io
import json
import logging
import os
import socket
import threading
import time

from agent import cni, metrics
from agent import netmaster_client as nmc
from agent import ovsdb as ovsdb_mod
from agent.cni_plugin import read_all

LOG = logging.getLogger("netplugin.cni")

READ_TIMEOUT = 10.0           # a plugin that connects sends its request at once
# answers after which the OVSDB connection is not trusted any more: the next request opens a
# fresh one (the IDL reconnects by itself, but a timed-out one may be mid-resync)
RECONNECT_CODES = {cni.E_TRY_AGAIN, cni.E_OVS, cni.E_INTERNAL}


CNI_COMMANDS = {"ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"}     # metric labels


class CniServer:
    def __init__(self, path: str, lender: ovsdb_mod.Lender | None = None):
        self.path = path
        self._sock = None
        self._inode = None
        self.lender = lender or ovsdb_mod.Lender()   # shared with the Docker driver
        self._closed = False
        # endpoint ids of ADDs received and not answered yet (waiting or running): netplugin's
        # resync must not release an endpoint whose port is still being made
        self._adding = {}
        self._adding_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> bool:
        """Listen; False (and one log line) when another netplugin already serves this path."""
        if os.path.exists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.path)
                LOG.error("event=cni_socket_taken path=%s", self.path)
                return False
            except OSError:
                os.unlink(self.path)        # left by a netplugin that died
            finally:
                probe.close()
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)               # root's runtime only: it plugs containers
        try:
            s.bind(self.path)
        finally:
            os.umask(old)
        s.listen(64)
        self._sock = s
        self._inode = os.stat(self.path).st_ino
        threading.Thread(target=self._accept_loop, name="cni-accept", daemon=True).start()
        LOG.info("event=cni_socket_listening path=%s", self.path)
        return True

    def stop(self):
        self._closed = True
        if self._sock is not None:
            try:
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)    # ours still: the plugin falls back to in-process
            except OSError:
                pass
            self._sock.close()
        with self.lender.lock:
            self.lender.drop()

    # -- requests --------------------------------------------------------------------------------
    def _accept_loop(self):
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._closed:
                    return
                LOG.exception("event=cni_accept_failed")
                time.sleep(0.1)
                continue
            threading.Thread(target=self._serve, args=(conn,), name="cni-request",
                             daemon=True).start()

    def _serve(self, conn):
        with conn:
            try:
                conn.settimeout(READ_TIMEOUT)
                request = json.loads(read_all(conn))
                env, config = request["env"], request["config"]
                if not isinstance(env, dict) or not isinstance(config, str):
                    raise ValueError("env must be an object and config a string")
            except (OSError, ValueError, KeyError, TypeError) as e:
                LOG.warning("event=cni_bad_request error=%r", str(e))
                return
            env = {str(k): str(v) for k, v in env.items() if str(k).startswith("CNI_")}
            rc, out = self.handle(env, config)
            try:
                conn.sendall(json.dumps({"rc": rc, "stdout": out}).encode())
            except OSError as e:        # the plugin was killed: its runtime will retry or DEL
                LOG.warning("event=cni_answer_lost command=%s container=%s error=%r",
                            env.get("CNI_COMMAND"), env.get("CNI_CONTAINERID"), str(e))

    def adding(self) -> set:
        """Endpoint ids whose ADD is in flight here."""
        with self._adding_lock:
            return {k for k, n in self._adding.items() if n > 0}

    def handle(self, env: dict, config: str) -> tuple[int, str]:
        """Run one request as the plugin would: (exit code, stdout)."""
        t0 = time.monotonic()
        command = env.get("CNI_COMMAND", "")
        ep_id = None
        if command == "ADD":
            ep_id = nmc.endpoint_id(env.get("CNI_CONTAINERID", ""), env.get("CNI_IFNAME", ""))
            with self._adding_lock:
                self._adding[ep_id] = self._adding.get(ep_id, 0) + 1
        try:
            with self.lender.lock:
                out = io.StringIO()
                rc = cni.run(env, io.StringIO(config), out, connect=self.lender.connect)
                answer = out.getvalue()
                if rc != 0 and self._error_code(answer) in RECONNECT_CODES:
                    self.lender.drop()
        finally:
            if ep_id is not None:
                with self._adding_lock:
                    self._adding[ep_id] -= 1
                    if not self._adding[ep_id]:
                        del self._adding[ep_id]
        took = time.monotonic() - t0
        metrics.CNI_SECONDS.labels(command if command in CNI_COMMANDS else "other",
                                   "ok" if rc == 0 else "error").observe(took)
        LOG.info("event=cni_request command=%s container=%s ifname=%s rc=%d ms=%.0f",
                 env.get("CNI_COMMAND"), env.get("CNI_CONTAINERID"), env.get("CNI_IFNAME"),
                 rc, took * 1000)
        return rc, answer

    @staticmethod
    def _error_code(answer: str):
        try:
            return json.loads(answer).get("code")
        except (ValueError, AttributeError):
            return None
