#!/usr/bin/env bash
# Installs what netweave needs on Debian 12, as root; safe to run again
# (it installs only what is missing and rebuilds the venv only when
# requirements.txt changed).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="openvswitch-switch etcd-server etcd-client iproute2 iputils-ping ethtool iperf3 tcpdump mininet
python3-venv procps psmisc curl systemd chromium chromium-driver docker.io podman containernetworking-plugins
busybox-static iptables"

missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing >/dev/null
fi

PY=${PYTHON:-python3}
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: building .venv from requirements.txt"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>/dev/null \
    || .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > $stamp
fi
