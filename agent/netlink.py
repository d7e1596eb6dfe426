"""In-process link plumbing: rtnetlink, one ethtool ioctl and sysctl files, no process per step.

Why not `ip`, `sysctl` and `ethtool`: every process a CNI ADD spawns costs it a few ms, and every
separate link change in the host's namespace costs ovs-vswitchd a re-read of its route table and
address list (one getifaddrs(), a dump of every link of the namespace: 30 ms with 3,334 links).
Here the veth is made and configured inside the container's namespace, and its host end
arrives in the host's namespace with its MTU and promiscuous (OVS would set that flag itself,
one more link change), then comes up: one burst of link changes for OVS.

A network namespace is entered by one short-lived thread (``setns`` changes the namespace of the
calling thread only), so a long-lived netplugin keeps its own. Netlink sockets keep the
namespace they were opened in, which lets that thread talk to both.

Only what the CNI ADD path needs is encoded here (a few message types, a handful of
attributes); ``pyroute2`` would do it too, but the stdlib's struct and socket are enough for
these few messages and add no dependency to a plugin that must stay quick to import.
"""
import ctypes
import errno
import fcntl
import ipaddress
import os
import socket
import struct
import threading

CLONE_NEWNET = 0x40000000
# netlink
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLMSG_ERROR = 2
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 20, 24
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFF_UP, IFF_PROMISC = 0x1, 0x100
IFA_ADDRESS, IFA_LOCAL, IFA_F_NODAD = 1, 2, 0x2
RTA_OIF, RTA_GATEWAY = 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
# ioctls
SIOCGIFHWADDR, SIOCETHTOOL = 0x8927, 0x8946
ETHTOOL_STXCSUM = 0x17

_libc = ctypes.CDLL(None, use_errno=True)


class LinkError(Exception):
    """A netlink request or ioctl the kernel refused: ``what`` names the step."""

    def __init__(self, what, err):
        super().__init__("%s: %s" % (what, os.strerror(err)))
        self.what = what
        self.errno = err


# -- namespaces ----------------------------------------------------------------------------------
def in_netns(path, fn, *args):
    """fn(*args) in a new thread that entered the network namespace at ``path``; its result
    (or its exception). The thread ends with the call, so no other code runs in that namespace."""
    box = {}

    def body():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise LinkError("entering network namespace %s" % path, err)
            finally:
                os.close(fd)
            box["result"] = fn(*args)
        except BaseException as e:       # handed to the caller's thread
            box["error"] = e

    t = threading.Thread(target=body, name="netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def own_netns_fd():
    """A descriptor of the calling thread's network namespace (caller closes it)."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def index_of(name):
    """The interface's index in the calling thread's namespace, or 0 when there is none."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return 0


# -- rtnetlink -----------------------------------------------------------------------------------
def _attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n % 4)


def _name(text):
    return text.encode() + b"\0"


def _ifinfo(index=0, flags=0, change=0):
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


class Rtnl:
    """A route netlink socket in the namespace of the thread that opens it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, what, kind, flags, body):
        """Send one request and wait for its acknowledgement; LinkError when refused."""
        self.seq += 1
        msg = struct.pack("=LHHLL", 16 + len(body), kind, flags | NLM_F_REQUEST | NLM_F_ACK,
                          self.seq, 0) + body
        self.sock.send(msg)
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _, seq, _ = struct.unpack_from("=LHHLL", data, off)
                if mtype == NLMSG_ERROR and seq == self.seq:
                    err = -struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        raise LinkError(what, err)
                    return
                off += (length + 3) & ~3
                if length < 16:
                    break

    def add_veth(self, name, peer, mtu, mac="", peer_netns_fd=None):
        """A veth pair made in one request, both ends down: ``name`` here (with ``mac``),
        ``peer`` in the namespace of ``peer_netns_fd`` (made there, not moved: a move waits
        for RCU, ~15 ms) and promiscuous, as OVS wants its ports (the kernel refuses a peer
        up at creation: it has no peer yet)."""
        peer_info = _ifinfo(flags=IFF_PROMISC, change=IFF_PROMISC)
        peer_info += _attr(IFLA_IFNAME, _name(peer)) + _attr(IFLA_MTU, struct.pack("=I", mtu))
        if peer_netns_fd is not None:
            peer_info += _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        linkinfo = _attr(IFLA_INFO_KIND, b"veth") + \
            _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
        body = _ifinfo() + _attr(IFLA_IFNAME, _name(name)) + \
            _attr(IFLA_MTU, struct.pack("=I", mtu)) + _attr(IFLA_LINKINFO, linkinfo)
        if mac:
            body += _attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
        self.request("creating veth %s/%s" % (name, peer), RTM_NEWLINK,
                     NLM_F_CREATE | NLM_F_EXCL, body)

    def set_up(self, index, what):
        self.request(what, RTM_NEWLINK, 0, _ifinfo(index, IFF_UP, IFF_UP))

    def delete(self, index, what):
        self.request(what, RTM_DELLINK, 0, _ifinfo(index))

    def add_addr(self, index, cidr, nodad=False):
        iface = ipaddress.ip_interface(cidr)
        family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
        raw = iface.ip.packed
        body = struct.pack("=BBBBI", family, iface.network.prefixlen,
                           IFA_F_NODAD if nodad else 0, RT_SCOPE_UNIVERSE, index)
        body += _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
        self.request("adding address %s" % cidr, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, body)

    def replace_default_route(self, gateway, index):
        gw = ipaddress.ip_address(gateway)
        family = socket.AF_INET if gw.version == 4 else socket.AF_INET6
        body = struct.pack("=BBBBBBBBI", family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                           RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
        body += _attr(RTA_GATEWAY, gw.packed) + _attr(RTA_OIF, struct.pack("=I", index))
        self.request("default route via %s" % gateway, RTM_NEWROUTE,
                     NLM_F_CREATE | NLM_F_REPLACE, body)


def delete_link(name):
    """Delete the link ``name`` of the calling thread's namespace; False when there was none."""
    index = index_of(name)
    if not index:
        return False
    with Rtnl() as nl:
        try:
            nl.delete(index, "deleting link %s" % name)
        except LinkError as e:
            if e.errno != errno.ENODEV:      # gone meanwhile
                raise
    return True


# -- ioctls and sysctls --------------------------------------------------------------------------
def _ifreq_ioctl(name, request, payload):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        return fcntl.ioctl(s.fileno(), request, struct.pack("=16s", name.encode()) + payload)


def hwaddr(name):
    """The link's MAC address, aa:bb:cc:dd:ee:ff."""
    out = _ifreq_ioctl(name, SIOCGIFHWADDR, b"\0" * 24)
    return ":".join("%02x" % b for b in out[18:24])


def tx_checksum_off(name):
    """`ethtool -K NAME tx off` as one ioctl: the userspace datapath forwards partial
    checksums as they are, so TCP breaks unless the sender fills them in."""
    value = ctypes.create_string_buffer(struct.pack("=II", ETHTOOL_STXCSUM, 0), 8)
    try:
        _ifreq_ioctl(name, SIOCETHTOOL, struct.pack("P", ctypes.addressof(value)) + b"\0" * 16)
    except OSError as e:
        raise LinkError("turning tx checksum offload off on %s" % name, e.errno) from None


def write_sysctl(path, value):
    """A sysctl of the calling thread's namespace by its path under /proc/sys (the parts of
    net/ follow the namespace of the thread that opens them; a link name may hold dots, so
    the path uses slashes)."""
    try:
        with open("/proc/sys/" + path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise LinkError("setting %s" % path, e.errno) from None


# -- a container's veth, made in one go ---------------------------------------------------------
def plumb_veth(netns, ifname, host_port, mtu, mac="", addrs=(), gateways=(), quiet_ipv6=False,
               tx_csum_off=False):
    """Make the container's link ``ifname`` in ``netns`` and its peer ``host_port`` in the
    calling thread's namespace, which sees one burst of link changes: the host end made
    (promiscuous, as OVS sets its ports: one change less when OVS adds it), up, then its
    carrier within a ms. Returns (container MAC, host MAC).

    Inside the container the pair is made with the container end down, checksum offload goes
    off and ``addrs`` ((cidr, nodad) pairs) are added; then the host end comes up, and only
    then the container end, and its default route via each of ``gateways``. Why that order:
    a veth end opened while its peer is already up gets its carrier and its queue discipline
    in the open itself; an end that was up first gets them later, from the kernel's linkwatch
    work, and whatever it sends meanwhile (the container's first ARP) goes to the no-op qdisc
    and is dropped: the kernel retries a second later (bench/README.md §3, 1 s attaches).
    ``quiet_ipv6``: the link is made with IPv6's DAD and router discovery off (a new link
    copies its namespace's ``conf/default``, so those are set there for the one request and
    put back). The host end gets no IPv6: it carries only what OVS switches, and its
    link-local address, valid a second later, would be one more route change for
    ovs-vswitchd. On failure nothing is left: the pair is deleted before the error is raised."""
    host_fd = own_netns_fd()
    try:
        c_mac = in_netns(netns, _make_inside, host_fd, ifname, host_port, mtu, mac, addrs,
                         quiet_ipv6, tx_csum_off)
    finally:
        os.close(host_fd)
    try:
        if os.path.isdir("/proc/sys/net/ipv6/conf/" + host_port):
            write_sysctl("net/ipv6/conf/%s/disable_ipv6" % host_port, 1)
        with Rtnl() as nl:
            nl.set_up(index_of(host_port), "bringing %s up" % host_port)
        in_netns(netns, _up_inside, ifname, gateways)
        return c_mac, hwaddr(host_port)
    except BaseException as e:
        delete_link(host_port)                               # takes its peer along
        if isinstance(e, OSError) and not isinstance(e, LinkError):
            raise LinkError("setting %s up" % host_port, e.errno) from None
        raise


QUIET_IPV6 = ("accept_dad", "router_solicitations", "accept_ra")


def _make_inside(host_fd, ifname, host_port, mtu, mac, addrs, quiet_ipv6, tx_csum_off):
    with Rtnl() as nl:
        saved = {}
        try:
            if quiet_ipv6:
                for key in QUIET_IPV6:
                    path = "net/ipv6/conf/default/" + key
                    with open("/proc/sys/" + path) as f:
                        saved[path] = f.read().strip()
                    write_sysctl(path, 0)
            nl.add_veth(ifname, host_port, mtu, mac, peer_netns_fd=host_fd)
        finally:
            for path, value in saved.items():
                write_sysctl(path, value)
        index = index_of(ifname)
        try:
            if tx_csum_off:
                tx_checksum_off(ifname)
            for cidr, nodad in addrs:
                nl.add_addr(index, cidr, nodad)
            return hwaddr(ifname)
        except BaseException:
            try:
                nl.delete(index, "deleting %s" % ifname)     # takes its peer along
            except LinkError:
                pass
            raise


def _up_inside(ifname, gateways):
    with Rtnl() as nl:
        index = index_of(ifname)
        nl.set_up(index, "bringing %s up" % ifname)
        for gw in gateways:
            nl.replace_default_route(gw, index)


def pair_for_docker(port, tmp, mtu, mac, tx_csum_off=False):
    """Docker's veth, in the calling thread's namespace: ``tmp`` (MAC, MTU, checksum offload
    off: kept when Docker moves it into the container) and ``port``, promiscuous and up, for
    OVS. No process; on failure nothing is left."""
    with Rtnl() as nl:
        nl.add_veth(tmp, port, mtu, mac)
        try:
            if tx_csum_off:
                tx_checksum_off(tmp)
            nl.set_up(index_of(port), "bringing %s up" % port)
        except BaseException:
            delete_link(tmp)
            raise
