"""The configuration file of netmaster and netplugin: their long flags, in TOML.

One file can serve both programs: each reads its own table.

    [netmaster]
    of-port = 6653                    # a key is a long flag without its dashes;
    store = "etcd://10.0.0.5:2379"    # "of_port" is accepted as well
    listen = ["0.0.0.0:9999"]         # a flag that may be repeated takes a list

    [netplugin]
    netmaster = "http://10.0.0.5:9999"
    vtep-ip = "10.0.0.7"

The program's own argparse parser is the one declaration of what is valid: a key names one of
its long options, and the value must have that option's type (an integer for ``type=int``, a
number for ``type=float``, a string for a string option, true/false for an on/off flag such as
``no-openflow``, a list for a repeatable one) and one of its choices, if it has choices. The
file's values become the parser's defaults, so a flag given on the command line still wins:
command line > file > built-in default. Anything the file says that the program would not
understand (an unknown table or key, a wrong type, a key given twice) is refused with the file,
the key and what was expected, and the program exits with 2, as argparse does for a bad flag.

Which file: ``--config FILE``, else the environment variable ``NETWEAVE_CONFIG``, else none
(``--config ""`` reads none even when the variable is set).
"""
from __future__ import annotations

import argparse
import os
import tomllib

ENV_VAR = "NETWEAVE_CONFIG"
SECTIONS = ("netmaster", "netplugin")   # the tables a file may hold
_NOT_IN_FILE = {"help", "config"}       # options that make no sense in the file


class ConfigError(ValueError):
    """The file is unreadable or says something the program would not understand."""


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML file whose [%s] table sets defaults for these flags "
                             "(default: $%s, if set); a flag given here wins"
                             % (parser.prog, ENV_VAR))


def parse_args(parser: argparse.ArgumentParser, argv=None, section: str | None = None):
    """``parser.parse_args(argv)`` with the configuration file's table as defaults.

    ``parser`` must have been given ``add_config_option``; ``section`` defaults to its prog.
    """
    section = section or parser.prog
    first = parser.parse_args(argv)          # which file: exactly as the parser reads the flags
    path = first.config if first.config is not None else os.environ.get(ENV_VAR, "")
    if not path:
        return first
    try:
        values = load(parser, path, section)
    except ConfigError as exc:
        parser.error(str(exc))               # usage, "prog: error: ...", exit 2
    parser.set_defaults(**values)
    args = parser.parse_args(argv)
    # A repeatable flag appends to its default: on the command line it replaces the file's list.
    for action in parser._actions:
        if isinstance(action, argparse._AppendAction) and action.dest in values:
            got, from_file = getattr(args, action.dest), values[action.dest]
            if len(got) > len(from_file):
                setattr(args, action.dest, got[len(from_file):])
    args.config = path
    return args


def options(parser: argparse.ArgumentParser) -> dict:
    """Every key a file may use for this parser -> the argparse action it sets."""
    keys = {}
    for action in parser._actions:
        if action.dest in _NOT_IN_FILE:
            continue
        for opt in action.option_strings:
            if opt.startswith("--"):
                name = opt[2:]
                keys[name] = action
                keys[name.replace("-", "_")] = action
    return keys


def load(parser: argparse.ArgumentParser, path: str, section: str) -> dict:
    """The file's ``[section]`` table, checked and converted: {argparse dest: value}."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError("config file %s: cannot read it: %s" % (path, exc.strerror or exc))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config file %s: not valid TOML: %s" % (path, exc))
    for key, value in data.items():
        if key not in SECTIONS:
            raise ConfigError("config file %s: unknown table or key '%s' at the top level; "
                              "expected a [netmaster] or [netplugin] table" % (path, key))
        if not isinstance(value, dict):
            raise ConfigError("config file %s: '%s' must be a table ([%s]), not a value"
                              % (path, key, key))
    table = data.get(section, {})
    known = options(parser)
    values, seen = {}, {}
    for key, raw in table.items():
        where = "config file %s: [%s] %s" % (path, section, key)
        action = known.get(key)
        if action is None:
            names = sorted(k for k in known if "_" not in k)
            raise ConfigError("%s: unknown key; %s understands: %s"
                              % (where, parser.prog, ", ".join(names)))
        if action.dest in seen:
            raise ConfigError("%s: the same setting as '%s' given again" % (where, seen[action.dest]))
        seen[action.dest] = key
        values[action.dest] = _convert(action, raw, where)
    return values


def _flag(action: argparse.Action) -> str:
    return next(o for o in action.option_strings if o.startswith("--"))


def _kind(value) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _convert(action: argparse.Action, raw, where: str):
    flag = _flag(action)
    if action.nargs == 0:                             # store_true, store_false, store_const
        if not isinstance(raw, bool):
            raise ConfigError("%s = %r: expected true or false (whether to give %s), got %s"
                              % (where, raw, flag, _kind(raw)))
        return action.const if raw else action.default
    if isinstance(action, argparse._AppendAction) or action.nargs not in (None, "?"):
        if not isinstance(raw, list):
            raise ConfigError("%s = %r: expected a list (%s may be repeated), got %s"
                              % (where, raw, flag, _kind(raw)))
        return [_scalar(action, item, "%s[%d]" % (where, i)) for i, item in enumerate(raw)]
    return _scalar(action, raw, where)


def _scalar(action: argparse.Action, raw, where: str):
    flag, typ = _flag(action), action.type
    if typ is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError("%s = %r: expected an integer (like %s), got %s"
                              % (where, raw, flag, _kind(raw)))
        value = raw
    elif typ is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError("%s = %r: expected a number (like %s), got %s"
                              % (where, raw, flag, _kind(raw)))
        value = float(raw)
    else:                                             # a string option, or a converter of strings
        if typ not in (None, str) and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = str(raw)                            # a converter (e.g. a positive int) reads its text
        if not isinstance(raw, str):
            raise ConfigError("%s = %r: expected a string (like %s), got %s"
                              % (where, raw, flag, _kind(raw)))
        value = raw
        if typ is not None and typ is not str:
            try:
                value = typ(raw)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                raise ConfigError("%s = %r: not a valid value for %s: %s" % (where, raw, flag, exc))
    if action.choices is not None and value not in action.choices:
        raise ConfigError("%s = %r: expected one of: %s"
                          % (where, raw, ", ".join(map(str, action.choices))))
    return value
