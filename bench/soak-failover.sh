#!/usr/bin/env bash
# The checked soak across a failover: the soak of bench/soak.sh on PostgreSQL + the
# local Redis Cluster, with one Redis master SIGKILLed SOAK_FAULT_AT (20s) into the
# measured window and started again once its replica has taken over, as a supervisor
# would (`tests/cluster/redis-cluster.sh fail-over`): it rejoins as the new master's
# replica. Without that restart the promoted master has no replica, and with
# AUTH_REDIS_MIN_REPLICAS at its cluster default of 1 every revocation of its users is
# refused until one returns (README, "The trade-off"). UNAVAILABLE is expected only of
# calls that overlap the SOAK_FAULT_WINDOW (15s) after the kill; any other error,
# anywhere in the run, fails it. After the run every acknowledged revocation (the access token each successful
# Refresh or Logout gave up) is introspected again and every acknowledged post read
# again: a write lost in the failover fails the soak too.
#
# Writes bench/results/soak-failover-cluster.json (+ .txt); exits 1 when the soak
# failed.
#
#   bash bench/soak-failover.sh
#   SOAK_DURATION=120s SOAK_FAULT_AT=60s bash bench/soak-failover.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${SOAK_DURATION:=60s}"
export SOAK_DURATION
export SOAK_FAULT="bash $root/tests/cluster/redis-cluster.sh fail-over"
BACKENDS=cluster SOAK=only exec bash "$root/bench/run.sh" "$@"
