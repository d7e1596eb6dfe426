"""A tiny TCP echo server and client for tests, run inside endpoint namespaces.

    python -m topologies.tcpecho serve PORT [NAME]     echo every connection until killed (first
                                                       sending NAME and a newline, when given)
    python -m topologies.tcpecho names IP PORT N       N new connections to a named server: print
                                                       the name each one got; exit 0 if all did
    python -m topologies.tcpecho stay IP PORT SECONDS  one connection to a named server: print its
                                                       name, echo every 0.1 s; exit 0 if none failed
    python -m topologies.tcpecho connect IP PORT [TIMEOUT]   exit 0 when the echo came back
    python -m topologies.tcpecho hold IP PORT SECONDS        one connection, an echo every 0.1 s; exit 0 if none failed
"""
import socket
import sys
import threading


def serve(port: int, name: str = "") -> None:
    try:         # one dual-stack socket: IPv4 and IPv6 clients alike
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
    except OSError:     # IPv6 disabled in this namespace
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
    s.listen(64)
    print("listening", flush=True)

    def echo(c):
        with c:
            if name:
                c.sendall(name.encode() + b"\n")
            while True:
                data = c.recv(65536)
                if not data:
                    return
                c.sendall(data)

    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def connect(ip: str, port: int, timeout: float) -> int:
    try:
        with socket.create_connection((ip, port), timeout=timeout) as c:
            c.settimeout(timeout)
            c.sendall(b"netweave")
            return 0 if c.recv(64) == b"netweave" else 1
    except OSError as exc:
        print(f"connect {ip}:{port}: {exc}", file=sys.stderr)
        return 1


def _echo_for(c, seconds: float) -> int:
    """An echo every 0.1 s on connection c for `seconds`; 0 if every one came back."""
    import time
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        c.sendall(b"x%d" % n)
        if c.recv(64) != b"x%d" % n:
            return 1
        n += 1
        time.sleep(0.1)
    print(f"echoes {n}", flush=True)
    return 0


def hold(ip: str, port: int, seconds: float) -> int:
    try:
        with socket.create_connection((ip, port), timeout=2) as c:
            c.settimeout(2)
            print("connected", flush=True)
            return _echo_for(c, seconds)
    except OSError as exc:
        print(f"hold {ip}:{port}: {exc}", file=sys.stderr, flush=True)
        return 1


def _greeting(c) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = c.recv(64)
        if not chunk:
            raise OSError("closed before its name")
        data += chunk
    return data.decode().strip()


def names(ip: str, port: int, n: int) -> int:
    failed = 0
    for _ in range(n):
        try:
            with socket.create_connection((ip, port), timeout=3) as c:
                c.settimeout(3)
                print(_greeting(c), flush=True)
        except OSError as exc:
            print(f"failed {exc}", flush=True)
            failed += 1
    return 1 if failed else 0


def stay(ip: str, port: int, seconds: float) -> int:
    try:
        with socket.create_connection((ip, port), timeout=3) as c:
            c.settimeout(3)
            print("connected", _greeting(c), flush=True)
            return _echo_for(c, seconds)
    except OSError as exc:
        print(f"stay {ip}:{port}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    if sys.argv[1] == "names":
        sys.exit(names(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    if sys.argv[1] == "stay":
        sys.exit(stay(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    if sys.argv[1] == "hold":
        sys.exit(hold(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "")
    else:
        sys.exit(connect(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 3.0))
