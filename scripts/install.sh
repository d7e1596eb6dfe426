#!/usr/bin/env bash
# make install: netweave as a service on this machine, as root.
#   - a virtualenv in $PREFIX (default /opt/netweave) with `pip install` of this tree
#     (non-editable; Debian 12's python refuses pip installs outside a venv);
#   - the systemd units in $UNITDIR (default /etc/systemd/system), ExecStart pointed at $PREFIX;
#   - $SYSCONFDIR/netweave/netweave.toml (default /etc), only when it does not exist yet.
# Safe to run again: it upgrades the venv and the units and keeps the configuration file.
# Then: systemctl enable --now netmaster (on one host), netplugin (on each host).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/netweave}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$SYSCONFDIR/systemd/system}
PY=${PYTHON:-python3}
conf=$SYSCONFDIR/netweave/netweave.toml

[ -x "$PREFIX/bin/python" ] || "$PY" -m venv "$PREFIX"
"$PREFIX/bin/pip" install -q --disable-pip-version-check "$src"

mkdir -p "$UNITDIR" "$SYSCONFDIR/netweave"
for unit in netmaster netplugin; do
  sed -e "s#/opt/netweave/#$PREFIX/#g" -e "s#/etc/netweave/netweave.toml#$conf#g" \
    "$src/packaging/systemd/$unit.service" > "$UNITDIR/$unit.service.tmp"
  chmod 0644 "$UNITDIR/$unit.service.tmp"
  mv "$UNITDIR/$unit.service.tmp" "$UNITDIR/$unit.service"
done
if [ -e "$conf" ]; then
  echo "install: kept $conf (the example is $src/packaging/netweave.toml)"
else
  install -m 0644 "$src/packaging/netweave.toml" "$conf"
fi
if [ "$UNITDIR" = /etc/systemd/system ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "install: $PREFIX/bin/{netmaster,netplugin,netctl,netweave-cni}, units in $UNITDIR, config $conf"
