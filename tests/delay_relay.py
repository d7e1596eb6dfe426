"""A TCP relay that holds what its clients send for DELAY seconds (order kept) and passes the
answers back at once.  Run inside a simulated host's namespace between its switch and
netmaster (controller target tcp:127.0.0.1:PORT), it makes every flow netmaster sends arrive
late by a known amount, so that a race between the CNI and the flows is decided, not left to
chance.  Usage: python tests/delay_relay.py TARGET_HOST TARGET_PORT DELAY; prints its port."""
import queue
import socket
import sys
import threading
import time


def pump(src, dst, delay):
    """src -> dst, each chunk sent `delay` seconds after it was read."""
    q = queue.Queue()

    def sender():
        while True:
            item = q.get()
            if item is None:
                break
            left = item[0] - time.monotonic()
            if left > 0:
                time.sleep(left)
            try:
                dst.sendall(item[1])
            except OSError:
                break
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    threading.Thread(target=sender, daemon=True).start()
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        if not data:
            q.put(None)
            return
        q.put((time.monotonic() + delay, data))


def main():
    host, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    print(ls.getsockname()[1], flush=True)
    while True:
        c, _ = ls.accept()
        try:
            u = socket.create_connection((host, port), timeout=5)
        except OSError:
            c.close()
            continue
        u.settimeout(None)
        threading.Thread(target=pump, args=(c, u, delay), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, 0.0), daemon=True).start()


if __name__ == "__main__":
    main()
