"""`make demo`: Contiv's tutorial, end to end, on a 3-host simulated cluster.

Tenants with the same network and subnet stay apart; a policy opens port 8888
of a database tier and nothing else; the trace says why a packet was dropped.
Everything it makes is removed at the end, also when a step fails.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

import requests

from topologies import docker_host
from topologies.cluster import Cluster
from topologies.common import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ECHO = os.path.join(ROOT, "topologies", "tcpecho.py")


class Demo:
    def __init__(self, cluster: Cluster):
        self.c = cluster
        self.servers = []
        self.failed = 0

    def say(self, text: str):
        print(f"\n== {text}", flush=True)

    def netctl(self, *args) -> str:
        p = subprocess.run([sys.executable, "-m", "netctl.cli", "--netmaster", self.c.url, *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
        print(f"$ netctl {' '.join(args)}")
        out = (p.stdout + p.stderr).rstrip()
        if out:
            print("  " + out.replace("\n", "\n  "))
        if p.returncode != 0:
            raise SystemExit(f"netctl failed ({p.returncode})")
        return p.stdout

    def run(self, host, ep, net, tenant="default", group=""):
        e = self.c.run(host, ep, net, tenant, group)
        where = f"tenant {tenant}" + (f", group {group}" if group else "")
        v6 = f" {e['ip6']}" if e.get("ip6") else ""
        print(f"  endpoint {ep:<6} on {host}: {e['ip']:<10}{v6} ({where})")
        return e["ip"]

    def expect(self, what: str, check, want: bool):
        """A reachable peer may need a moment after its endpoint was attached
        (its flows follow the CNI call): a positive check gets a few seconds."""
        t0 = time.monotonic()
        got = check()
        while got != want and time.monotonic() < t0 + (5.0 if want else 0):
            time.sleep(0.2)
            got = check()
        ok = got == want
        waited = time.monotonic() - t0
        if want and waited > 2:
            what += f" (after {waited:.1f} s)"
        self.failed += 0 if ok else 1
        print(f"  {'ok  ' if ok else 'FAIL'} {what}: {'yes' if got else 'no'}")

    def ping(self, src, ip) -> bool:
        # three tries: the userspace datapath drops the first packet to a new VTEP while it resolves it
        return self.c.exec(src, "ping", "-c", "3", "-i", "0.2", "-W", "1", ip).stdout.count(" bytes from ") > 0

    def tcp(self, src, ip, port) -> bool:
        return self.c.exec(src, sys.executable, ECHO, "connect", ip, str(port), "1.5").returncode == 0

    def serve(self, ep, port):
        ns = self.c.state["endpoints"][ep]["ns"]
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, ECHO, "serve", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        p.stdout.readline()
        self.servers.append(p)

    def tutorial(self):
        c = self.c
        self.say("Two tenants, one network name, one subnet")
        self.netctl("net", "create", "--subnet=10.1.2.0/24", "--gateway=10.1.2.1", "contiv-net")
        self.netctl("tenant", "create", "blue")
        self.netctl("net", "create", "-t", "blue", "--subnet=10.1.2.0/24", "-g", "10.1.2.1", "contiv-net")
        self.netctl("net", "ls", "-a")
        self.run("h1", "web1", "contiv-net")
        web2 = self.run("h2", "web2", "contiv-net")
        self.run("h1", "bweb1", "contiv-net", tenant="blue")
        bweb2 = self.run("h2", "bweb2", "contiv-net", tenant="blue")
        bweb3 = self.run("h3", "bweb3", "contiv-net", tenant="blue")
        self.say("Each endpoint reaches its own tenant's peers, across hosts, through VXLAN")
        self.expect(f"default web1 -> web2 ({web2}) on h2", lambda: self.ping("web1", web2), True)
        self.expect(f"blue bweb1 -> bweb2 ({bweb2}) on h2", lambda: self.ping("bweb1", bweb2), True)
        self.expect(f"blue bweb2 -> bweb3 ({bweb3}) on h3", lambda: self.ping("bweb2", bweb3), True)
        self.say("...and never the other tenant's, though the addresses are the same")
        self.expect(f"default web1 -> {bweb3} (only blue has it)", lambda: self.ping("web1", bweb3), False)
        self.serve("bweb2", 9000)
        self.expect(f"blue bweb1 -> {bweb2}:9000 (blue's service)", lambda: self.tcp("bweb1", bweb2, 9000), True)
        self.expect(f"default web1 -> {web2}:9000 (same address, default's web2: no service)", lambda: self.tcp("web1", web2, 9000), False)

        self.say("A policy for the database tier: deny TCP in, allow port 8888")
        self.netctl("policy", "create", "db-policy")
        self.netctl("policy", "rule-add", "db-policy", "1", "-direction=in", "-protocol=tcp", "-action=deny")
        self.netctl("policy", "rule-add", "db-policy", "2", "-direction=in", "-protocol=tcp", "-port=8888",
                    "-action=allow", "-priority=10")
        self.netctl("group", "create", "-policy=db-policy", "contiv-net", "db-group")
        self.netctl("policy", "rule-ls", "db-policy")
        dbs = [self.run(h, f"db{i}", "contiv-net", group="db-group") for i, h in enumerate(("h1", "h2", "h3"), 1)]
        for i in (1, 2, 3):
            self.serve(f"db{i}", 8888)
            self.serve(f"db{i}", 5432)
        self.say("From web1 (no group, on h1) to the three db-group endpoints")
        for i, ip in enumerate(dbs, 1):
            self.expect(f"web1 -> db{i} {ip}:8888", lambda: self.tcp("web1", ip, 8888), True)
            self.expect(f"web1 -> db{i} {ip}:5432", lambda: self.tcp("web1", ip, 5432), False)
        self.say("Why was web1 -> db2:5432 dropped?")
        eps = {e["containerID"]: e["endpointID"] for e in requests.get(c.url + "/api/v1/endpoints/", timeout=10).json()}
        self.netctl("trace", eps["web1"], dbs[1], "-protocol=tcp", "-port=5432")
        self.netctl("policy", "rule-ls", "db-policy", "--stats")
        self.service_step(eps["web1"])
        self.dual_stack_step()
        if c.state.get("docker"):
            self.docker_tutorial()
        self.say("Tear down")
        for ep in list(c.state["endpoints"]):
            c.rm(ep)
        self.netctl("group", "rm", "db-group")
        self.netctl("policy", "rm", "db-policy")
        self.netctl("net", "rm", "contiv-net")
        self.netctl("net", "rm", "v6-net")
        self.netctl("net", "rm", "-t", "blue", "contiv-net")
        self.netctl("tenant", "rm", "blue")

    def dual_stack_step(self):
        self.say("Dual stack: a network with an IPv6 subnet gives each endpoint both addresses")
        self.netctl("net", "create", "--subnet=10.1.6.0/24", "-g", "10.1.6.1", "--subnetv6=fd00:6::/64", "v6-net")
        self.run("h1", "v6a", "v6-net")
        self.run("h3", "v6b", "v6-net")
        v6b = self.c.ip6("v6b")
        self.expect(f"v6a (h1) -> v6b {v6b} (h3), ping6", lambda: self.ping("v6a", v6b), True)
        self.serve("v6b", 9006)
        self.expect(f"v6a -> [{v6b}]:9006, TCP over IPv6", lambda: self.tcp("v6a", v6b, 9006), True)

    def service_step(self, web1_id):
        """Contiv's serviceLB: a VIP balanced over the endpoints that carry its labels."""
        c = self.c
        self.say("A service: VIP:80 balanced over three endpoints labelled app=shop (port 8080)")
        for i, h in enumerate(("h1", "h2", "h3"), 1):
            e = c.run(h, f"shop{i}", "contiv-net", labels=["app=shop"])
            print(f"  endpoint shop{i:<2} on {h}: {e['ip']:<10} (labels app=shop)")
            ns = c.state["endpoints"][f"shop{i}"]["ns"]
            p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, ECHO, "serve", "8080", f"shop{i}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            p.stdout.readline()
            self.servers.append(p)
        self.netctl("service", "create", "shop", "-s", "contiv-net", "-l", "app=shop", "-p", "80:8080:TCP")
        self.netctl("service", "ls")
        vip = requests.get(c.url + "/api/v1/inspect/serviceLBs/default:shop/", timeout=10).json()["Oper"]["serviceVip"]

        def spread():
            p = c.exec("web1", sys.executable, ECHO, "names", vip, "80", "12")
            got = p.stdout.split()
            print(f"  12 new connections from web1 to {vip}:80 reached: "
                  f"{', '.join(f'{n} x{got.count(n)}' for n in sorted(set(got)))}")
            return p.returncode == 0 and set(got) == {"shop1", "shop2", "shop3"}
        self.expect(f"web1 -> service shop {vip}:80 spread over shop1..3", spread, True)
        self.netctl("trace", web1_id, vip, "-protocol=tcp", "-port=80")
        self.netctl("service", "rm", "shop")

    def docker(self, host, *args, show=True) -> subprocess.CompletedProcess:
        """`docker ARGS` against the host's dockerd, printed as a person types it there."""
        p = self.c.docker(host).cli(*args, check=False)
        if show:
            print(f"[{host}]$ docker {' '.join(args)}")
            out = (p.stdout + p.stderr).rstrip()
            if out:
                print("  " + out.replace("\n", "\n  "))
        if p.returncode != 0 and show:
            raise SystemExit(f"docker failed ({p.returncode})")
        return p

    def docker_ip(self, host, name) -> str:
        nets = self.c.docker(host).inspect("container", name)["NetworkSettings"]["Networks"]
        return next(iter(nets.values()))["IPAddress"]

    def docker_tutorial(self):
        """The seed's steps as Contiv ran them: real `docker run --net`, on netplugin's networks."""
        img = docker_host.IMAGE
        self.say("The same with Docker: netplugin made a Docker network for each network and group")
        for h in ("h1", "h2"):
            deadline = time.monotonic() + 15
            while "db-group" not in self.docker(h, "network", "ls", show=False).stdout \
                    and time.monotonic() < deadline:
                time.sleep(0.2)
        self.docker("h1", "network", "ls", "--filter", "driver=netplugin")
        self.docker("h1", "network", "inspect", "--format",
                    "{{.Driver}} {{json .IPAM.Config}} {{json .Options}}", "contiv-net")
        self.docker("h1", "run", "-d", "--net=contiv-net", "--name=dweb1", img, "sleep", "3600")
        self.docker("h2", "run", "-d", "--net=contiv-net", "--name=dweb2", img, "sleep", "3600")
        self.docker("h1", "run", "-d", "--net=contiv-net/blue", "--name=dblue1", img, "sleep", "3600")
        self.docker("h3", "run", "-d", "--net=db-group", "--name=ddb", img, "sleep", "3600")
        ips = {n: self.docker_ip(h, n) for h, n in (("h1", "dweb1"), ("h2", "dweb2"), ("h3", "ddb"))}
        print(f"  addresses from netweave's IPAM: {ips}")
        dping = lambda h, n, ip: self.docker(h, "exec", n, "ping", "-c", "3", "-i", "0.2", "-W", "1", ip,
                                             show=False).stdout.count(" bytes from ") > 0
        self.expect(f"dweb1 (h1) -> dweb2 {ips['dweb2']} (h2)", lambda: dping("h1", "dweb1", ips["dweb2"]), True)
        self.expect(f"dblue1 (blue, h1) -> {ips['ddb']} (only default has it)",
                    lambda: dping("h1", "dblue1", ips["ddb"]), False)
        for port in (8888, 5432):
            self.docker("h3", "exec", "-d", "ddb", "nc", "-ll", "-p", str(port), "-e", "/bin/true")
        dtcp = lambda port: self.docker("h1", "exec", "dweb1", "nc", "-w", "1", ips["ddb"], str(port),
                                        show=False).returncode == 0
        self.expect(f"dweb1 -> ddb {ips['ddb']}:8888 (db-policy rule 2)", lambda: dtcp(8888), True)
        self.expect(f"dweb1 -> ddb {ips['ddb']}:5432 (db-policy rule 1)", lambda: dtcp(5432), False)
        for h, n in (("h1", "dweb1"), ("h2", "dweb2"), ("h1", "dblue1"), ("h3", "ddb")):
            self.docker(h, "rm", "-f", n)

    def stop(self):
        for p in self.servers:
            p.kill()
            p.wait()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m topologies.demo", description=__doc__.splitlines()[0])
    p.add_argument("--name", default="nwd")
    p.add_argument("--rest-port", type=int, default=9999)
    p.add_argument("--of-port", type=int, default=6653)
    p.add_argument("--underlay", default="10.94.0.0/24")
    p.add_argument("--no-docker", action="store_true", help="skip the Docker steps even where Docker is installed")
    args = p.parse_args(argv)
    rest = args.rest_port if _port_free(args.rest_port) else free_port()
    ofp = args.of_port if _port_free(args.of_port) else free_port()
    t0 = time.monotonic()
    Cluster(args.name).down()                     # leftovers of an interrupted run
    docker = docker_host.available() and not args.no_docker
    c = Cluster(args.name, underlay=args.underlay, rest_port=rest, of_port=ofp, docker=docker)
    demo = Demo(c)
    try:
        demo.say(f"A cluster of 3 simulated hosts (namespaces {args.name}-h1..3, one OVS"
                 f"{' and one dockerd' if docker else ''} each); netmaster {c.url}")
        c.up(3)
        print(json.dumps(c.ls()["hosts"]))
        demo.tutorial()
    finally:
        demo.stop()
        c.down()
    print(f"\n{'tutorial passed' if not demo.failed else f'{demo.failed} checks FAILED'} "
          f"in {time.monotonic() - t0:.0f} s; cluster removed")
    return 1 if demo.failed else 0


if __name__ == "__main__":
    sys.exit(main())
