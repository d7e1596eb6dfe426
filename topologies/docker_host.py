"""A dockerd for one simulated host, leaving the machine's network alone.

dockerd runs in the host's network namespace (entered with nsenter, not `ip netns exec`,
which remounts /sys and hides the cgroup hierarchy dockerd needs) and in a mount namespace
of its own, where the host's plugin folder is bind-mounted over /run/docker/plugins: each
simulated host's dockerd finds its own netplugin there, as on a real machine. No bridge,
no iptables, no forwarding: `docker run --network none` and netweave's networks only.
Its containers live in the cgroup `<name>` so that removing them after a crash is exact.

The image is busybox-static's rootfs, imported (no registry is reachable here).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from topologies.ovs import pid_alive

IMAGE = "nwbusybox:latest"
# Debian's client, of the daemon's own version (a newer client elsewhere on PATH refuses some
# flags against Docker 20.10's API 1.41)
CLIENT = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
PLUGINS_MOUNT = "/run/docker/plugins"
CGROUP_ROOT = "/sys/fs/cgroup"


class DockerError(Exception):
    pass


BRIDGE_NF = ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables")


def quiet_bridge_netfilter() -> None:
    """dockerd loads br_netfilter, whose default sends every frame crossing a Linux bridge
    through the host's iptables and conntrack, the simulated underlays' bridges included
    (before any dockerd ran, the module was not loaded and they were plain L2). Put that back:
    with it on, a later cluster's host intermittently lost its TCP to netmaster here."""
    for name in BRIDGE_NF:
        path = f"/proc/sys/net/bridge/{name}"
        try:
            with open(path) as f:
                if f.read().strip() == "0":
                    continue
            with open(path, "w") as f:
                f.write("0")
        except OSError:
            pass                                  # module not loaded: nothing filters bridges


def available() -> bool:
    return bool(shutil.which("dockerd") and shutil.which("docker") and os.path.exists("/bin/busybox"))


def busybox_rootfs(path: str) -> str:
    """A tar of a busybox-static root filesystem at `path` (made once)."""
    if os.path.exists(path):
        return path
    with tempfile.TemporaryDirectory(prefix="nwrootfs-") as root:
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "tmp", "etc"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
        subprocess.run(["chroot", root, "/bin/busybox", "--install", "-s"], check=True,
                       capture_output=True)
        subprocess.run(["tar", "-C", root, "-cf", path + ".tmp", "."], check=True)
    os.replace(path + ".tmp", path)
    return path


class DockerDaemon:
    def __init__(self, folder: str, netns: str, name: str):
        self.dir = folder
        self.netns = netns
        self.name = name                    # cgroup parent of its containers
        self.plugins = os.path.join(folder, "plugins")
        self.socket = os.path.join(folder, "docker.sock")
        self.pidfile = os.path.join(folder, "docker.pid")

    @property
    def host(self) -> str:
        return "unix://" + self.socket

    def start(self, timeout: float = 30.0) -> "DockerDaemon":
        for d in (self.plugins, os.path.join(self.dir, "data"), os.path.join(self.dir, "exec")):
            os.makedirs(d, exist_ok=True)
        mnt = self._mount_ns()
        self._containerd(mnt)
        dockerd = ["dockerd", "--containerd", self.containerd_socket, "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--bridge=none",
                   "--live-restore", "--data-root", f"{self.dir}/data", "--exec-root", f"{self.dir}/exec",
                   "--pidfile", self.pidfile, "-H", self.host, "--storage-driver", "overlay2",
                   "--cgroup-parent", self.name]
        log = open(os.path.join(self.dir, "dockerd.log"), "ab")
        subprocess.Popen(["nsenter", f"--net=/run/netns/{self.netns}", f"--mount=/proc/{mnt}/ns/mnt",
                          *dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cli("version", check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise DockerError(f"dockerd did not answer on {self.socket} in {timeout:.0f} s "
                              f"(see {self.dir}/dockerd.log)")
        quiet_bridge_netfilter()
        if self.cli("image", "inspect", IMAGE, check=False).returncode != 0:
            self.cli("import", busybox_rootfs(os.path.join(os.path.dirname(self.dir), "busybox.tar")), IMAGE)
        return self

    def _mount_ns(self) -> int:
        """The pid of the process that holds the host's mount namespace, made once. dockerd,
        its containerd and the containers' mounts live there; a dockerd started again after a
        crash must enter the same one to find its running containers' mounts."""
        holder = os.path.join(self.dir, "mountns.pid")
        try:
            pid = int(open(holder).read())
            if pid_alive(pid) and os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
                return pid
        except (OSError, ValueError):
            pass
        os.makedirs(PLUGINS_MOUNT, exist_ok=True)
        mark = os.path.join(self.dir, "mountns.hold")
        open(mark, "w").close()
        # one process that blocks for ever and whose command line names our folder, so that a
        # cleanup after a crash finds it (a shell looping on sleep left orphan sleeps behind)
        p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                              f"mount --bind {self.plugins} {PLUGINS_MOUNT} && echo ready && exec tail -f {mark}"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        line = p.stdout.readline().strip()
        if line != "ready":
            p.kill()
            raise DockerError(f"could not make a mount namespace for {self.name}: {line}")
        # the shell exec'd tail: same pid, inside the new namespace
        open(holder, "w").write(str(p.pid))
        return p.pid

    @property
    def containerd_socket(self) -> str:
        return os.path.join(self.dir, "containerd", "containerd.sock")

    def _containerd(self, mnt: int) -> None:
        """containerd as its own process, as a service manager runs it: a dockerd killed with
        -9 leaves it, and the containers' shims, running; the next dockerd talks to it again.
        (dockerd's own "managed" containerd survived a kill -9 unreachable here.)"""
        d = os.path.join(self.dir, "containerd")
        pidfile = os.path.join(d, "containerd.pid")
        try:
            if pid_alive(int(open(pidfile).read())):
                return
        except (OSError, ValueError):
            pass
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "config.toml")
        with open(conf, "w") as f:
            f.write(f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.containerd_socket}"\n'
                    f'[ttrpc]\n  address = "{self.containerd_socket}.ttrpc"\n'
                    f'[debug]\n  address = "{d}/debug.sock"\n')
        log = open(os.path.join(d, "containerd.log"), "ab")
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.netns}", f"--mount=/proc/{mnt}/ns/mnt",
                              "containerd", "--config", conf], stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        open(pidfile, "w").write(str(p.pid))
        deadline = time.monotonic() + 20
        while not os.path.exists(self.containerd_socket):
            if p.poll() is not None or time.monotonic() > deadline:
                raise DockerError(f"containerd did not start (see {d}/containerd.log)")
            time.sleep(0.05)

    def cli(self, *args, check=True, timeout=60) -> subprocess.CompletedProcess:
        p = subprocess.run([CLIENT, "-H", self.host, *args], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise DockerError(f"docker {' '.join(args)}: {(p.stderr or p.stdout).strip()}")
        return p

    def inspect(self, kind: str, name: str) -> dict:
        return json.loads(self.cli(kind, "inspect", name).stdout)[0]

    def pid(self) -> int | None:
        try:
            pid = int(open(self.pidfile).read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def kill(self, sig=signal.SIGKILL) -> None:
        """Kill dockerd alone (its containers live on: --live-restore)."""
        pid = self.pid()
        if pid:
            os.kill(pid, sig)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.05)

    def stop(self) -> None:
        """Remove every container, stop dockerd, and kill whatever is left in its cgroup."""
        if self.pid():
            ids = self.cli("ps", "-aq", check=False).stdout.split()
            if ids:
                self.cli("rm", "-f", *ids, check=False)
            self.kill(signal.SIGTERM)
        kill_cgroup(self.name)
        for pidfile in ("containerd/containerd.pid", "mountns.pid"):   # the mount namespace goes last
            try:
                os.kill(int(open(os.path.join(self.dir, pidfile)).read()), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def kill_cgroup(name: str) -> None:
    """SIGKILL every process in cgroup `name` (every hierarchy), then remove it."""
    if not name or "/" in name or name.startswith("."):
        return
    for _ in range(3):
        dirs = []
        for ctrl in os.listdir(CGROUP_ROOT) if os.path.isdir(CGROUP_ROOT) else []:
            top = os.path.join(CGROUP_ROOT, ctrl, name)
            if os.path.isdir(top):
                dirs += [root for root, _, _ in os.walk(top)]
        if not dirs:
            return
        for d in dirs:
            try:
                for pid in open(os.path.join(d, "cgroup.procs")).read().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except OSError:
                        pass
            except OSError:
                pass
        time.sleep(0.2)
        for d in sorted(dirs, key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass
