"""Synthetic snapshots for the scale tests and benchmarks."""
from __future__ import annotations

from flows.snapshot import Endpoint, Group, Host, Network, Rule, Snapshot, Tenant


def scale_snapshot(n_eps: int, n_groups: int, n_rules: int, n_hosts: int = 10,
                   per_net_groups: int = 4) -> Snapshot:
    """One tenant; groups spread over networks; every group has one policy;
    rules cycle through in/out, group/network/ip peers and protocols."""
    n_groups = max(1, n_groups)
    n_nets = max(1, (n_groups + per_net_groups - 1) // per_net_groups)
    nets = tuple(Network("t", f"n{i}", "vxlan", 10000 + i, f"10.{i}.0.0/16", f"10.{i}.255.254", i + 1)
                 for i in range(n_nets))
    groups = tuple(Group("t", f"g{i}", f"n{i // per_net_groups}", 1000 + i, (f"p{i}",))
                   for i in range(n_groups))
    hosts = tuple(Host(f"h{i}", f"192.168.{i // 250}.{i % 250 + 1}", i + 1) for i in range(n_hosts))
    eps, ports = [], {h.label: {"vxlan0": 100} for h in hosts}
    for j in range(n_eps):
        g = groups[j % n_groups]
        net = int(g.network[1:])
        k = (j // n_groups) * per_net_groups + (j % n_groups) % per_net_groups   # unique in its network
        ip = f"10.{net}.{k // 250 % 250}.{k % 250 + 1}"
        mac = "02:02:" + ":".join(f"{int(o):02x}" for o in ip.split("."))
        host = hosts[j % n_hosts].label
        eps.append(Endpoint(f"ep{j}", "t", g.network, g.name, ip, mac, host, f"port{j}"))
        ports[host][f"port{j}"] = len(ports[host])
    rules = []
    for r in range(n_rules):
        kind = r % 4
        peer = f"g{(r + 1) % n_groups}"
        kw = [dict(from_group=peer, protocol="tcp", port=1 + r % 1000),
              dict(from_network=f"n{r % n_nets}", protocol="udp", port=53),
              dict(to_group=peer, protocol="tcp"),
              dict(to_ip=f"10.{r % n_nets}.0.1-50", protocol="icmp")][kind]
        rules.append(Rule("t", f"p{r % n_groups}", f"r{r}", "in" if kind < 2 else "out",
                          1 + r % 100, "deny" if r % 3 == 0 else "allow", rule_uid=r + 1, **kw))
    return Snapshot((Tenant("t", 7),), nets, tuple(eps), hosts, groups, tuple(rules), ports)
