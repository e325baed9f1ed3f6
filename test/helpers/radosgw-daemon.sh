#!/usr/bin/env bash
# One more radosgw daemon on the run's cluster (test/helpers/radosgw.ts,
# ownRadosgw), for a test that stops its server without touching the
# other files' one. It stays until WATCH_PID (the test process) is gone or
# it gets SIGTERM, and then kills radosgw at once (SIGKILL, a crash as far
# as clients can tell).
#
# Usage: radosgw-daemon.sh CONF NAME PORT WATCH_PID
set -u
CONF=$1 NAME=$2 PORT=$3 WATCH_PID=$4
radosgw -c "$CONF" -n "$NAME" -f --rgw-frontends="beast endpoint=127.0.0.1:$PORT" >/dev/null 2>&1 &
rgw=$!
stop() {
  kill -9 "$rgw" 2>/dev/null
  wait "$rgw" 2>/dev/null
  exit 0
}
trap stop TERM INT HUP
while kill -0 "$WATCH_PID" 2>/dev/null && kill -0 "$rgw" 2>/dev/null; do
  sleep 1 &
  wait $!
done
stop
