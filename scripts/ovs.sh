#!/usr/bin/env bash
# Starts the machine's own Open vSwitch daemons if they are not running (the
# Debian service scripts are not used here: see README). Safe to run again.
set -euo pipefail
RUN=/var/run/openvswitch
DB=/etc/openvswitch/conf.db
mkdir -p $RUN /etc/openvswitch /var/log/openvswitch
running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
if ! running ovsdb-server; then
  [ -f $DB ] || ovsdb-tool create $DB /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server $DB -vconsole:off --remote=punix:$RUN/db.sock --pidfile=$RUN/ovsdb-server.pid --detach \
    --log-file=/var/log/openvswitch/ovsdb-server.log
  ovs-vsctl --db=unix:$RUN/db.sock --no-wait init
  echo "ovs: ovsdb-server started"
fi
if ! running ovs-vswitchd; then
  ovs-vswitchd unix:$RUN/db.sock -vconsole:off --pidfile=$RUN/ovs-vswitchd.pid --detach \
    --log-file=/var/log/openvswitch/ovs-vswitchd.log
  echo "ovs: ovs-vswitchd started"
fi
