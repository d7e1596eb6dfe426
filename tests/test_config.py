"""netmaster's and netplugin's configuration file (netweave/config.py), through their real parsers.

Milliseconds: parse_args only, with a file in a temporary folder. Importing controller.main
monkey-patches eventlet into this process, as the OpenFlow tests of this pytest process do.
"""
import os
import re
import tomllib

import pytest

from agent import main as agent_main
from agent.main import parse_args as netplugin_args
from controller import main as controller_main
from controller.main import parse_args as netmaster_args
from netweave import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "packaging", "netweave.toml")


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)


def write(tmp_path, text, name="netweave.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def refused(capsys, parse, argv):
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_no_file_gives_the_defaults():
    args = netmaster_args([])
    assert (args.of_port, args.listen, args.no_openflow, args.host_timeout) == (6653, None, False, 6.0)
    assert args.config is None


def test_flag_beats_file_beats_default(tmp_path):
    path = write(tmp_path, '[netmaster]\nof-port = 7000\nhost_timeout = 9\nlog-level = "DEBUG"\n')
    args = netmaster_args(["--config", path, "--log-level", "WARNING"])
    assert args.of_port == 7000                  # file over default
    assert args.host_timeout == 9.0 and isinstance(args.host_timeout, float)   # underscore key
    assert args.log_level == "WARNING"           # flag over file
    assert args.underlay_mtu == 1500             # default where neither says
    assert args.config == path
    assert netmaster_args(["--config", path, "--of-port", "6000"]).of_port == 6000


def test_on_off_flag_and_repeated_flag(tmp_path):
    path = write(tmp_path, '[netmaster]\nno-openflow = true\nlisten = ["127.0.0.1:1", "127.0.0.1:2"]\n')
    args = netmaster_args(["--config", path])
    assert args.no_openflow is True
    assert args.listen == ["127.0.0.1:1", "127.0.0.1:2"]
    # on the command line, --listen replaces the file's list (it does not add to it)
    assert netmaster_args(["--config", path, "--listen", "0.0.0.0:3"]).listen == ["0.0.0.0:3"]
    off = write(tmp_path, "[netmaster]\nno_openflow = false\n", "off.toml")
    assert netmaster_args(["--config", off]).no_openflow is False


def test_one_file_holds_both_tables(tmp_path):
    path = write(tmp_path, '[netmaster]\nof-port = 7001\n\n'
                           '[netplugin]\ndatapath = "netdev"\napi-port = -1\nheartbeat-interval = 1\n'
                           'netmaster = "http://10.9.9.9:9999"\n')
    assert netmaster_args(["--config", path]).of_port == 7001
    args = netplugin_args(["--config", path])
    assert (args.datapath, args.api_port, args.heartbeat_interval) == ("netdev", -1, 1.0)
    assert args.netmaster == "http://10.9.9.9:9999"
    assert netplugin_args(["--config", path, "--datapath", "system"]).datapath == "system"


def test_environment_variable_names_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "[netmaster]\nof-port = 7002\n")
    monkeypatch.setenv(config.ENV_VAR, path)
    assert netmaster_args([]).of_port == 7002
    assert netmaster_args(["--config", ""]).of_port == 6653      # --config "" reads none


def test_unknown_key_is_refused(tmp_path, capsys):
    path = write(tmp_path, "[netmaster]\nof-prot = 6653\n")
    err = refused(capsys, netmaster_args, ["--config", path])
    assert "netmaster: error: config file %s: [netmaster] of-prot: unknown key" % path in err
    assert "of-port" in err                       # and what it would understand
    # a key of the other program is unknown too, not silently ignored
    path = write(tmp_path, "[netplugin]\nof-port = 6653\n", "p.toml")
    assert "[netplugin] of-port: unknown key" in refused(capsys, netplugin_args, ["--config", path])


def test_unknown_table_or_top_level_key_is_refused(tmp_path, capsys):
    for text, words in [("[netmastr]\nof-port = 1\n", "unknown table or key 'netmastr'"),
                        ("of-port = 1\n", "unknown table or key 'of-port'"),
                        ("netmaster = 1\n", "'netmaster' must be a table")]:
        path = write(tmp_path, text)
        err = refused(capsys, netmaster_args, ["--config", path])
        assert path in err and words in err, err


@pytest.mark.parametrize("parse,text,expected", [
    (netmaster_args, '[netmaster]\nof-port = "6653"\n',
     "[netmaster] of-port = '6653': expected an integer (like --of-port), got a string"),
    (netmaster_args, "[netmaster]\nof-port = 6653.5\n", "expected an integer (like --of-port), got a number"),
    (netmaster_args, "[netmaster]\nof-port = true\n", "expected an integer (like --of-port), got true/false"),
    (netmaster_args, '[netmaster]\nhost-timeout = "6"\n', "expected a number (like --host-timeout)"),
    (netmaster_args, "[netmaster]\nstore = 5\n", "[netmaster] store = 5: expected a string (like --store)"),
    (netmaster_args, '[netmaster]\nno-openflow = "yes"\n',
     "expected true or false (whether to give --no-openflow), got a string"),
    (netmaster_args, '[netmaster]\nlisten = "127.0.0.1:9999"\n',
     "expected a list (--listen may be repeated), got a string"),
    (netmaster_args, "[netmaster]\nlisten = [9999]\n", "[netmaster] listen[0] = 9999: expected a string"),
    (netplugin_args, '[netplugin]\ndatapath = "kernel"\n', "expected one of: system, netdev, auto"),
    (netplugin_args, "[netplugin]\napi-port = 9090\napi_port = 9091\n",
     "[netplugin] api_port: the same setting as 'api-port' given again"),
])
def test_wrong_value_is_refused(tmp_path, capsys, parse, text, expected):
    path = write(tmp_path, text)
    err = refused(capsys, parse, ["--config", path])
    assert "error: config file %s:" % path in err
    assert expected in err, err


def test_unreadable_or_broken_file_is_refused(tmp_path, capsys):
    missing = str(tmp_path / "missing.toml")
    assert "config file %s: cannot read it" % missing in refused(capsys, netmaster_args, ["--config", missing])
    path = write(tmp_path, "[netmaster]\nof-port = \n")
    assert "config file %s: not valid TOML" % path in refused(capsys, netmaster_args, ["--config", path])


def test_example_file_lists_every_key_with_its_default(tmp_path):
    """packaging/netweave.toml: each key commented out, with the parser's default."""
    text = open(EXAMPLE).read()
    assert tomllib.loads(text) == {"netmaster": {}, "netplugin": {}}   # all commented out
    uncommented = re.sub(r"(?m)^# ([a-z][a-z-]* = )", r"\1", text)
    path = write(tmp_path, uncommented)
    data = tomllib.loads(uncommented)
    dynamic = {"host-label", "vtep-ip", "controller", "cni-socket", "pki-dir"}    # computed when unset
    for prog, build in [("netmaster", controller_main.build_parser), ("netplugin", agent_main.build_parser)]:
        parser = build()
        keys = {k for k in config.options(parser) if "_" not in k} - {"listen-url", "cluster-store"}
        assert set(data[prog]) == keys, (prog, set(data[prog]) ^ keys)  # every key, no other
        values = config.load(parser, path, prog)                        # and each one valid
        defaults = parser.parse_args([])
        for key in data[prog]:
            dest = key.replace("-", "_")
            if key == "listen":
                assert values[dest] == ["127.0.0.1:9999"]               # main()'s default
            elif key == "tls-listen":
                assert values[dest] == ["0.0.0.0:10000"]
            elif key not in dynamic:
                assert values[dest] == getattr(defaults, dest), key
