"""How a topology starts netweave's processes and calls its CNI plugin: one
place for the command lines that the simulated cluster and the Mininet
topologies share."""
from __future__ import annotations

import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def netmaster_cmd(python: str, listen: list[str], of_port: int, store: str, host_timeout: float = 5,
                  extra: list[str] = (), tls_listen: list[str] = (), pki_dir: str = "") -> list[str]:
    """listen: plain (unauthenticated) addresses; tls_listen: authenticated HTTPS ones
    (none when empty); extra: more netmaster flags (e.g. --deny-log-rate 10)."""
    cmd = [python, "-m", "controller.main"]
    for addr in listen:
        cmd += ["--listen", addr]
    for addr in tls_listen or ["none"]:
        cmd += ["--tls-listen", addr]
    if pki_dir:
        cmd += ["--pki-dir", pki_dir]
    if "--of-tls-port" not in extra:      # simulated clusters share one machine: no fixed TLS port
        cmd += ["--of-tls-port", "none"]
    return cmd + ["--of-port", str(of_port), "--store", store, "--host-timeout", str(host_timeout), *extra]


def netplugin_cmd(python: str, netns: str, netmaster: str, label: str, vtep: str, ovsdb: str,
                  controller: str, uplink: str = "", docker_plugin_dir: str = "",
                  docker_socket: str = "", state_dir: str = "", extra: list[str] = ()) -> list[str]:
    """netplugin inside a host's namespace, on the userspace datapath, beating every second.
    A simulated host has no Docker driver unless given its own plugin folder (all hosts
    share the machine's /run/docker/plugins otherwise) and its own dockerd's socket."""
    cmd = ["ip", "netns", "exec", netns, python, "-m", "agent.main", "--netmaster", netmaster,
           "--host-label", label, "--vtep-ip", vtep, "--ovsdb", ovsdb, "--controller", controller,
           "--datapath", "netdev", "--heartbeat-interval", "1", "--api-port", "0",
           "--docker-plugin-dir", docker_plugin_dir, "--docker-socket", docker_socket]
    # state_dir: the host's credential (agent/credential.py)
    cmd += (["--state-dir", state_dir] if state_dir else []) + list(extra)
    return cmd + (["--uplink", uplink] if uplink else [])


def net_conf(netmaster: str, tenant: str, network: str, group: str, ovsdb: str, host: str) -> dict:
    """The CNI network configuration netweave-cni reads on stdin."""
    return {"cniVersion": "1.0.0", "name": "netweave", "type": "netweave", "netmaster": netmaster,
            "tenant": tenant, "network": network, "group": group, "ovsdb": ovsdb, "bridge": "br-int",
            "hostLabel": host}


def cni(python: str, host_ns: str, command: str, container_id: str, netns: str, conf: dict,
        labels: list[str] = ()) -> tuple[int, dict, str]:
    """Run netweave-cni in the host's namespace, as a container runtime would:
    (exit code, its JSON answer, its stderr). labels: key=value, sent in CNI_ARGS."""
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=container_id, CNI_NETNS=f"/var/run/netns/{netns}",
               CNI_IFNAME="eth0", CNI_PATH=ROOT, PYTHONPATH=ROOT)
    if labels:
        env["CNI_ARGS"] = "LABELS=" + ",".join(labels)
    p = subprocess.run(["ip", "netns", "exec", host_ns, python, "-m", "agent.cni_plugin"], input=json.dumps(conf),
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    try:
        out = json.loads(p.stdout) if p.stdout.strip() else {}
    except ValueError:
        out = {"msg": p.stdout.strip()}
    return p.returncode, out, p.stderr.strip()
