"""``netweave-cni install``: make netweave usable by a CNI runtime with no hand-written JSON.

    netweave-cni install --network contiv-net [--tenant default] [--group web]
                         [--name NAME] [--chain portmap --chain bandwidth --chain tuning]
                         [--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d]
                         [--ovsdb unix:/var/run/openvswitch/db.sock]
                         [--netmaster URL] [--host-label LABEL]

writes two files:
  * ``BIN_DIR/netweave``, the plugin a runtime executes for ``"type": "netweave"``: a small
    launcher for this installation's Python and ``agent.cni_plugin``;
  * ``CONF_DIR/50-NAME.conflist``, a network configuration list named NAME (default
    ``netweave-NETWORK``, the name a runtime knows the network by: ``podman run --network NAME``)
    with netweave first and the chained plugins after it.

Everything a plugin needs lives in the file, since a runtime's cleanup may run plugins with
an almost empty environment (podman container cleanup). netmaster's URL and the host label
may be left out: netplugin records both in this host's OVSDB, where the plugin reads them.

``--chain`` adds a plugin after netweave: ``portmap`` (capability portMappings), ``bandwidth``
(capability bandwidth), ``tuning``, or a JSON object written as given (a bandwidth plugin with
fixed rates, a tuning plugin with sysctls). The reference plugins of Debian's
containernetworking-plugins 1.1 speak CNI up to 1.0.0, so a chained list says cniVersion
1.0.0; a list of netweave alone also offers ``cniVersions`` [1.0.0, 1.1.0], from which a CNI 1.1
runtime picks 1.1.0 (GC, STATUS) and an older one reads cniVersion 1.0.0.
"""
import argparse
import json
import os
import sys
import tempfile

import agent

PLUGIN_TYPE = "netweave"
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_OVSDB = "unix:/var/run/openvswitch/db.sock"
# where runtimes look for plugins when told nothing (podman's default cni_plugin_dirs)
COMMON_PLUGIN_DIRS = ["/usr/local/libexec/cni", "/usr/libexec/cni", "/usr/local/lib/cni",
                      "/usr/lib/cni", "/opt/cni/bin"]
KNOWN_CHAIN = {
    "portmap": {"type": "portmap", "capabilities": {"portMappings": True}},
    "bandwidth": {"type": "bandwidth", "capabilities": {"bandwidth": True}},
    "tuning": {"type": "tuning"},
}

LAUNCHER = """#!{python}
# netweave's CNI plugin, written by `netweave-cni install` (agent/cni_install.py).
import sys
sys.path.insert(0, {path!r})
from agent.cni_plugin import main
sys.exit(main())
"""


class InstallError(Exception):
    pass


def chain_entry(item):
    if item in KNOWN_CHAIN:
        return dict(KNOWN_CHAIN[item])
    try:
        obj = json.loads(item)
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise InstallError("--chain %r is neither %s nor a JSON object with a \"type\"" %
                           (item, ", ".join(sorted(KNOWN_CHAIN))))
    return obj


def build_conflist(name, network, tenant="default", group="", ovsdb=DEFAULT_OVSDB,
                   netmaster="", host_label="", chain=()):
    plugin = {"type": PLUGIN_TYPE, "tenant": tenant, "network": network, "ovsdb": ovsdb,
              "capabilities": {"ips": True, "mac": True}}
    if group:
        plugin["group"] = group
    if netmaster:
        plugin["netmaster"] = netmaster
    if host_label:
        plugin["hostLabel"] = host_label
    plugins = [plugin] + [chain_entry(c) for c in chain]
    conf = {"cniVersion": "1.0.0", "name": name, "plugins": plugins}
    if len(plugins) == 1:
        conf["cniVersions"] = ["1.0.0", "1.1.0"]
    return conf


def _write(path, text, mode):
    """Atomically: a runtime may read the folder at any moment."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".netweave-", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def install(bin_dir, conf_dir, conf, python=None):
    """Write the launcher and the conflist; returns their paths."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(agent.__file__)))
    plugin_path = os.path.join(bin_dir, PLUGIN_TYPE)
    _write(plugin_path, LAUNCHER.format(python=python or sys.executable, path=package_parent),
           0o755)
    conf_path = os.path.join(conf_dir, "50-%s.conflist" % conf["name"])
    _write(conf_path, json.dumps(conf, indent=2) + "\n", 0o644)
    return plugin_path, conf_path


def missing_chain_plugins(conf, bin_dir):
    dirs = [bin_dir] + COMMON_PLUGIN_DIRS
    return [p["type"] for p in conf["plugins"][1:]
            if not any(os.access(os.path.join(d, p["type"]), os.X_OK) for d in dirs)]


def build_parser():
    p = argparse.ArgumentParser(prog="netweave-cni install",
                                description="install netweave's CNI plugin and write a network "
                                            "configuration list for a netweave network")
    p.add_argument("--network", required=True,
                   help="netweave network (or endpoint group) the containers join")
    p.add_argument("--tenant", default="default")
    p.add_argument("--group", default="", help="endpoint group (optional)")
    p.add_argument("--name", default="",
                   help="the network's name for the runtime (default netweave-NETWORK)")
    p.add_argument("--chain", action="append", default=[],
                   help="a plugin after netweave: portmap, bandwidth, tuning or a JSON object "
                        "(repeatable, in order)")
    p.add_argument("--bin-dir", default=DEFAULT_BIN_DIR, help="CNI plugin folder")
    p.add_argument("--conf-dir", default=DEFAULT_CONF_DIR, help="CNI configuration folder")
    p.add_argument("--ovsdb", default=DEFAULT_OVSDB, help="this host's OVSDB")
    p.add_argument("--netmaster", default="",
                   help="netmaster URL (default: the one netplugin recorded in OVSDB)")
    p.add_argument("--host-label", default="",
                   help="this host's label (default: the one netplugin recorded in OVSDB)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    name = args.name or "netweave-%s" % args.network
    try:
        conf = build_conflist(name, args.network, args.tenant, args.group, args.ovsdb,
                              args.netmaster, args.host_label, args.chain)
        plugin_path, conf_path = install(args.bin_dir, args.conf_dir, conf)
    except (InstallError, OSError) as e:
        sys.stderr.write("netweave-cni install: %s\n" % e)
        return 2
    sys.stdout.write("installed %s\nwrote %s (network %s: %s/%s%s)\n" % (
        plugin_path, conf_path, name, args.tenant, args.network,
        ", group " + args.group if args.group else ""))
    missing = missing_chain_plugins(conf, args.bin_dir)
    if missing:
        sys.stderr.write("netweave-cni install: warning: no plugin binary %s found in %s; "
                         "install containernetworking-plugins\n" %
                         (", ".join(missing), ", ".join([args.bin_dir] + COMMON_PLUGIN_DIRS)))
    return 0
