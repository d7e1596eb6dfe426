"""netweave-cni, the executable a container runtime runs: hands the request to netplugin.

A CNI plugin is a new process for every ADD, and most of what a cold one costs is not the work:
importing python-ovs and fetching the schema, connecting to OVSDB and waiting for the monitor
reply took about 0.25 s of a 0.3 s ADD. netplugin has that connection open already, so this
module, which imports nothing beyond the standard library's json, os and socket, forwards
the CNI environment and configuration to netplugin over a unix socket and prints its answer
(Contiv's netcontiv plugin talks to its netplugin the same way). The work itself is
``agent.cni.run`` in both places.

Which socket: the configuration's ``netpluginSocket``, else ``netweave-cni.sock`` next to the
OVSDB unix socket the configuration names (netplugin puts it there by default), so the plugin
always reaches the netplugin of the Open vSwitch it plugs into. When there is no socket, or
nobody listens on it (netplugin stopped or restarting), the plugin does the work in this
process (``agent.cni``): slower, same result.

``netweave-cni install ...`` (no CNI_COMMAND) installs the plugin and writes a network
configuration list for runtimes (``agent.cni_install``).

Wire format, one exchange per connection: the plugin sends
``{"env": {CNI_* variables}, "config": "<stdin text>"}`` and shuts down its write side; netplugin
answers ``{"rc": exit code, "stdout": "<CNI result or error JSON>"}`` and closes.
"""
import json
import os
import socket
import sys

SOCKET_NAME = "netweave-cni.sock"
DEFAULT_OVSDB = "unix:/var/run/openvswitch/db.sock"
ANSWER_TIMEOUT = 120.0          # an ADD waits on netmaster and OVS: generous, but finite
E_TRY_AGAIN = 11                # CNI's "try again later"


def beside_ovsdb(remote: str) -> str:
    """netplugin's default socket for an OVSDB remote: next to it when it is a unix socket."""
    if isinstance(remote, str) and remote.startswith("unix:"):
        return os.path.join(os.path.dirname(remote[len("unix:"):]), SOCKET_NAME)
    return ""


def socket_path(conf: dict) -> str:
    """Where this configuration's netplugin listens, or "" when it cannot be known."""
    explicit = conf.get("netpluginSocket")
    if isinstance(explicit, str):
        return explicit
    return beside_ovsdb(conf.get("ovsdb") or DEFAULT_OVSDB)


def read_all(sock) -> bytes:
    """Everything the peer sends until it shuts down its side (one message per connection)."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _connect(path: str):
    """A connected socket, or None when no netplugin listens there."""
    if not path:
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        s.close()
        return None
    return s


def _error(msg: str) -> str:
    return json.dumps({"cniVersion": "1.0.0", "code": E_TRY_AGAIN, "msg": msg, "details": ""})


def delegate(sock, env: dict, config: str) -> tuple[int, str]:
    """One request to netplugin: (exit code, stdout text)."""
    request = {"env": {k: v for k, v in env.items() if k.startswith("CNI_")}, "config": config}
    try:
        sock.settimeout(ANSWER_TIMEOUT)
        sock.sendall(json.dumps(request).encode())
        sock.shutdown(socket.SHUT_WR)
        raw = read_all(sock)
    except OSError as e:
        return 1, _error("netplugin did not answer the %s request: %s" %
                         (env.get("CNI_COMMAND", ""), e))
    finally:
        sock.close()
    try:
        answer = json.loads(raw)
        return int(answer["rc"]), str(answer["stdout"])
    except (ValueError, KeyError, TypeError):
        # netplugin went away mid-request: whatever it did is rolled back or resynced, and
        # the runtime retries on "try again"
        return 1, _error("netplugin closed the connection without a complete answer")


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    if not command and sys.argv[1:2] == ["install"]:
        from agent import cni_install       # a person's command, not a runtime's call
        return cni_install.main(sys.argv[2:])
    config = sys.stdin.read() if command in ("ADD", "DEL", "CHECK", "GC", "STATUS") else ""
    try:
        conf = json.loads(config) if config else {}
    except ValueError:
        conf = {}          # agent.cni reports the bad configuration with the right code
    sock = None
    if config and isinstance(conf, dict):       # VERSION and bad commands are answered here
        sock = _connect(socket_path(conf))
    if sock is None:
        import io
        from agent import cni      # the work, done here: netplugin is not listening
        sys.stdin = io.StringIO(config)
        return cni.main()
    rc, out = delegate(sock, dict(os.environ), config)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main())
