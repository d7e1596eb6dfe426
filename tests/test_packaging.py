"""netweave as installed by `pip install .`, and its systemd units.

* `make install`'s script with PREFIX and SYSCONFDIR in a temporary folder: a fresh virtualenv,
  a non-editable `pip install` of a copy of this tree (so no build/ or egg-info lands in the
  work tree), then the console scripts run from that venv's bin with the tree off sys.path:
  this fails when pyproject.toml misses a dependency, a package, or the web UI's package data.
  pip reaches PyPI and uses its cache, so a second run takes seconds (about 20 s here).
* `systemd-analyze verify` on packaging/systemd/*.service, with ExecStart pointed at a real
  console script: any line it prints about a unit fails the test.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = os.path.join(ROOT, "packaging", "systemd")
PROBE = "netweave-package-data-probe.css"      # stands for the web UI's static files


def clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(cmd, cwd, env=None, input=None, timeout=300):
    res = subprocess.run(cmd, cwd=cwd, env=env or clean_env(), input=input, capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, "%s -> %d\n%s\n%s" % (cmd, res.returncode, res.stdout, res.stderr)
    return res.stdout


def copy_tree(dst):
    skip = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "*.pyc",
                                  ".pytest_cache", "var", "tests", "bench")
    shutil.copytree(ROOT, dst, ignore=skip)
    web = os.path.join(dst, "rest", "web")
    os.makedirs(web, exist_ok=True)
    with open(os.path.join(web, PROBE), "w") as f:
        f.write("/* shipped as package data */\n")


def test_make_install_brings_dependencies_scripts_units_and_config():
    """scripts/install.sh (make install) into a temporary PREFIX and SYSCONFDIR."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        packages = tomllib.load(f)["tool"]["setuptools"]["packages"]
    with tempfile.TemporaryDirectory(prefix="netweave-pkg-") as tmp:
        src, prefix, etc, work = (os.path.join(tmp, d) for d in ("src", "opt", "etc", "work"))
        copy_tree(src)
        os.mkdir(work)                                   # cwd: neither the tree nor its copy
        env = dict(clean_env(), PREFIX=prefix, SYSCONFDIR=etc, PYTHON=sys.executable)
        run(["bash", os.path.join(src, "scripts", "install.sh")], work, env=env, timeout=600)
        py, bin_ = os.path.join(prefix, "bin", "python"), os.path.join(prefix, "bin")
        run([py, "-m", "pip", "check"], work)            # every declared requirement satisfied

        for prog in ("netmaster", "netplugin"):
            out = run([os.path.join(bin_, prog), "--help"], work)
            assert out.startswith("usage: %s" % prog) and "--config FILE" in out, out
        assert "usage:" in run([os.path.join(bin_, "netctl"), "--help"], work).lower()
        env = dict(clean_env(), CNI_COMMAND="VERSION")
        version = json.loads(run([os.path.join(bin_, "netweave-cni")], work, env=env, input=""))
        assert "1.0.0" in version["supportedVersions"], version

        # Every module of every declared package imports from site-packages, not from a tree
        # (the Mininet ones need the `mininet` extra); the web UI's files are there too; the
        # installed configuration file is read by both programs.
        conf = os.path.join(etc, "netweave", "netweave.toml")
        probe = """
import importlib, os, pkgutil, sys
site, conf = sys.argv[1:3]
for name in sys.argv[3:]:
    pkg = importlib.import_module(name)
    assert pkg.__file__.startswith(site), pkg.__file__
    for m in pkgutil.iter_modules(pkg.__path__):
        if not m.name.startswith("mininet_"):
            importlib.import_module(name + "." + m.name)
import rest
web = os.path.join(os.path.dirname(rest.__file__), "web")
assert os.path.isfile(os.path.join(web, %r)), "rest/web/* is not shipped: " + web
from controller.main import parse_args as nm
from agent.main import parse_args as np
assert nm(["--config", conf]).of_port == 6653 and np(["--config", conf]).bridge == "br-int"
""" % PROBE
        site = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).strip()
        run([py, "-c", probe, site, conf] + packages, work)

        # the installed units point at the installed scripts and file, and verify cleanly
        units = [os.path.join(etc, "systemd", "system", u + ".service") for u in ("netmaster", "netplugin")]
        for unit, prog in zip(units, ("netmaster", "netplugin")):
            with open(unit) as f:
                assert "ExecStart=%s/%s --config %s\n" % (bin_, prog, conf) in f.read()
        assert_verifies(units)


def test_every_package_of_the_tree_is_declared():
    """A new folder with an __init__.py that pyproject.toml does not list would not be installed."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        declared = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = {d for d in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, d, "__init__.py"))}
    assert found - {"tests", "bench"} == declared      # tests/ and bench/ run from the tree only


def test_systemd_units_verify_cleanly():
    bin_ = os.path.dirname(sys.executable)          # the dev venv's console scripts
    with tempfile.TemporaryDirectory(prefix="netweave-units-") as tmp:
        paths = []
        for name in ("netmaster", "netplugin"):
            with open(os.path.join(UNITS, name + ".service")) as f:
                text = f.read()
            installed = "/opt/netweave/bin/" + name
            assert text.count("ExecStart=%s --config /etc/netweave/netweave.toml\n" % installed) == 1
            script = os.path.join(bin_, name)
            assert os.access(script, os.X_OK), script
            path = os.path.join(tmp, name + ".service")
            with open(path, "w") as f:
                f.write(text.replace(installed, script))
            paths.append(path)
        assert_verifies(paths)


def assert_verifies(units):
    """systemd-analyze verify: exit 0 and not a word (it warns on stderr and still exits 0)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/setup.sh installs the systemd package"
    res = subprocess.run([analyze, "verify"] + units, capture_output=True, text=True, timeout=60)
    said = (res.stdout + res.stderr).strip()
    assert res.returncode == 0 and not said, said
