"""Run inside an endpoint's namespace: for each IPv4 address read on stdin,
send ICMP echo requests every INTERVAL seconds until the first reply, then
print the CLOCK_MONOTONIC time of that reply (or "timeout").  A raw socket
in one long-lived process, so the loop costs no process start per probe."""
import os
import select
import socket
import struct
import sys
import time

INTERVAL = 0.005
TIMEOUT = float(os.environ.get("PINGER_TIMEOUT", "20"))


def checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    seq = 0
    print("ready", flush=True)
    for line in sys.stdin:
        ip = line.strip()
        if not ip:
            continue
        deadline = time.monotonic() + TIMEOUT
        got = None
        while got is None and time.monotonic() < deadline:
            seq = (seq + 1) & 0xFFFF
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + b"nwb"), ident, seq) + b"nwb"
            try:
                sock.sendto(pkt, (ip, 0))
            except OSError:
                pass                      # no neighbour yet, unreachable: try again
            end = time.monotonic() + INTERVAL
            while got is None:
                left = end - time.monotonic()
                if left <= 0:
                    break
                r, _, _ = select.select([sock], [], [], left)
                if not r:
                    break
                data, addr = sock.recvfrom(2048)
                ihl = (data[0] & 0x0F) * 4
                typ, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                if typ == 0 and rid == ident and addr[0] == ip:
                    got = time.monotonic()
        print(f"{got:.6f}" if got is not None else "timeout", flush=True)


if __name__ == "__main__":
    main()
