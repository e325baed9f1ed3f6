#!/usr/bin/env bash
# A single-node Ceph cluster with radosgw for the S3 tests (started by
# test/helpers/radosgw.ts): one monitor, one memstore OSD and radosgw on
# 127.0.0.1, everything under DIR. It writes DIR/ready once the S3 user exists, then
# stays until WATCH_PID (the test run) is gone or it gets SIGTERM, and then
# kills the daemons by the PIDs it started and removes DIR.
#
# Usage: radosgw.sh DIR MON_PORT RGW_PORT WATCH_PID ACCESS_KEY SECRET_KEY APPEND_ACCESS_KEY APPEND_SECRET_KEY
#
# The second pair is a second user's, with no rights of its own: the
# append-only tests grant it get, put and list by a bucket policy.
#
# What it takes to start (Ceph 16, Debian's packages):
# - `auth ... = none` needs no keyrings for the daemons, but `ceph-mon --mkfs`
#   still wants a keyring file with a mon. key.
# - `ms mon client mode = crc secure`: without it clients of the monitor on
#   loopback fail to connect.
# - memstore holds objects in memory; pools of size 1 need `mon allow pool
#   size one` and small fixed pg counts (no autoscaler, no mgr).
# - radosgw creates its pools on first start (about 10 s of the start-up);
#   radosgw-admin gets its own name (client.admin) so that its admin socket
#   does not collide with radosgw's.
set -u
DIR=$1 MON_PORT=$2 RGW_PORT=$3 WATCH_PID=$4 ACCESS_KEY=$5 SECRET_KEY=$6 APPEND_ACCESS_KEY=$7 APPEND_SECRET_KEY=$8
CONF=$DIR/ceph.conf
pids=()

stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  rm -rf "$DIR"
  exit 0
}
trap stop TERM INT HUP

# Says why in DIR.failed (which outlives DIR), for radosgw.ts to report.
fail() {
  { echo "$*"; tail -n 20 "$DIR/log/setup.log" 2>/dev/null; } >"$DIR.failed"
  stop
}

mkdir -p "$DIR/mon" "$DIR/osd/0" "$DIR/run" "$DIR/log" "$DIR/rgw"
fsid=$(cat /proc/sys/kernel/random/uuid)
cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$MON_PORT
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
ms bind ipv6 = false
public network = 127.0.0.0/8
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
keyring = $DIR/keyring
mon data = $DIR/mon/\$id
osd data = $DIR/osd/\$id
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
rgw data = $DIR/rgw
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
EOF

run() { timeout 60 "$@" >>"$DIR/log/setup.log" 2>&1 || fail "failed: $*"; }

run ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *'
run monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$fsid" "$DIR/monmap"
run ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
ceph-mon -c "$CONF" -i a -f >>"$DIR/log/mon.out" 2>&1 &
pids+=($!)
osd_uuid=$(cat /proc/sys/kernel/random/uuid)
run ceph -c "$CONF" --connect-timeout 30 osd new "$osd_uuid"
run ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid"
ceph-osd -c "$CONF" -i 0 -f >>"$DIR/log/osd.out" 2>&1 &
pids+=($!)
radosgw -c "$CONF" -n client.rgw -f >>"$DIR/log/rgw.out" 2>&1 &
pids+=($!)
run radosgw-admin -c "$CONF" -n client.admin user create --uid=coffer --display-name=coffer --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY"
run radosgw-admin -c "$CONF" -n client.admin user create --uid=coffer-append --display-name=coffer-append --access-key="$APPEND_ACCESS_KEY" --secret-key="$APPEND_SECRET_KEY"
echo "${pids[*]}" >"$DIR/ready"

while kill -0 "$WATCH_PID" 2>/dev/null; do
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || fail "a Ceph daemon (pid $p) exited: see $DIR/log"; done
  sleep 1 &
  wait $!
done
stop
