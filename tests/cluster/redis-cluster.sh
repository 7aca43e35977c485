#!/usr/bin/env bash
# A local Redis Cluster for tests: six `redis-server --cluster-enabled yes` nodes on
# 127.0.0.1, three masters and three replicas.
#
#   tests/cluster/redis-cluster.sh start        # prints redis://127.0.0.1:P,… on stdout
#   tests/cluster/redis-cluster.sh status       # every node's role and link; exit 1 if not ok
#   tests/cluster/redis-cluster.sh kill-master  # SIGKILL one master, print the failover time
#   tests/cluster/redis-cluster.sh restart-node PORT  # start a killed node again
#   tests/cluster/redis-cluster.sh fail-over    # kill-master, then restart it as a replica
#   tests/cluster/redis-cluster.sh stop         # stop every node, remove the directory
#
#   export TEST_REDIS_CLUSTER_URLS=$(tests/cluster/redis-cluster.sh start)
#
# start is idempotent: a cluster that is already up and healthy is reused (its URLs are
# printed again); a broken one is stopped and replaced. The URLs are also written to
# $REDIS_CLUSTER_DIR/urls. Progress and errors go to stderr, only the URLs to stdout.
#
# REDIS_CLUSTER_DIR (default: one directory per checkout under $TMPDIR, so two checkouts
# on one machine never share or stop each other's cluster) holds each node's directory,
# pid file, log and nodes.conf. REDIS_CLUSTER_NODE_TIMEOUT_MS (default 1000) sets
# cluster-node-timeout. Every wait is bounded.
#
# Settings, and why:
# - cluster-node-timeout 1000: a master that stops answering is failed over in about
#   2-3 s (the timeout, the vote, the election delay of 0.5-1 s) instead of 15-20 s.
# - repl-diskless-sync-delay 0: replicas sync at once, so start waits only as long as
#   the sync itself.
# - save "" and appendonly no: test data need not survive a node restart; durability
#   across a master's loss is what the replicas (and WAIT) are tested for.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
checkout_id=$(printf '%s' "$root" | cksum | cut -d' ' -f1)
dir=${REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/auth-blog-redis-cluster.$checkout_id}
node_timeout_ms=${REDIS_CLUSTER_NODE_TIMEOUT_MS:-1000}
nodes=6

say() { echo "redis-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

for tool in redis-server redis-cli ss; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install redis-server iproute2)"
done

cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$1" "${@:2}" 2>/dev/null; }

# The ports of the nodes this directory describes, one per line.
ports() { [ -f "$dir/ports" ] && cat "$dir/ports"; }

# A port is free when nothing on this machine uses it in any TCP state (listening,
# connected, or waiting to close), so neither it nor its bus port will fail to bind.
port_free() { [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]; }

# Picks six ports below 55536 whose bus ports (port + 10000) are free too, below the
# ephemeral range when there is room, so outgoing connections cannot take them meanwhile.
pick_ports() {
  local ephemeral_low low=20000 high=55535 picked=() port tries=0
  ephemeral_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  if [ $((ephemeral_low - 10001)) -ge $((low + 500)) ]; then high=$((ephemeral_low - 10001)); fi
  while [ "${#picked[@]}" -lt "$nodes" ]; do
    tries=$((tries + 1))
    [ "$tries" -le 1000 ] || die "found no $nodes free port pairs (port, port + 10000) in $low-$high"
    port=$((low + RANDOM % (high - low + 1)))
    [[ " ${picked[*]} " == *" $port "* ]] && continue
    port_free "$port" && port_free $((port + 10000)) && picked+=("$port")
  done
  printf '%s\n' "${picked[@]}"
}

# The pid in a node's pid file, only if that process is still that node.
node_pid() {
  local pidfile="$dir/$1/redis.pid" pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE "redis-server.*:$1( |$)" || return 1
  echo "$pid"
}

urls() {
  local list=() port
  while read -r port; do list+=("redis://127.0.0.1:$port"); done < <(ports)
  (IFS=,; echo "${list[*]}")
}

field() { tr -d '\r' | sed -n "s/^$1:\(.*\)$/\1/p"; }

# ok when every live node says cluster_state:ok, 3 masters own slots, and every replica's
# link to its master is up. Prints what is missing otherwise.
healthy() {
  local port state role known masters=0 replicas=0 problems=()
  while read -r port; do
    if ! node_pid "$port" >/dev/null; then problems+=("$port down"); continue; fi
    state=$(cli "$port" cluster info | field cluster_state)
    [ "$state" = ok ] || problems+=("$port cluster_state=${state:-?}")
    # Every node must know every replica (gossip spreads them after create): a client
    # asking this node would otherwise see a shard without one.
    known=$(cli "$port" cluster nodes | grep -cE '[ ,]slave ' || true)
    [ "$known" -eq 3 ] || problems+=("$port knows $known replicas")
    role=$(cli "$port" info replication | field role)
    case $role in
      master) masters=$((masters + 1)) ;;
      slave)
        replicas=$((replicas + 1))
        [ "$(cli "$port" info replication | field master_link_status)" = up ] ||
          problems+=("$port replica link not up")
        ;;
      *) problems+=("$port role=${role:-?}") ;;
    esac
  done < <(ports)
  [ "$masters" -eq 3 ] || problems+=("$masters masters")
  [ "$replicas" -eq 3 ] || problems+=("$replicas replicas")
  if [ "${#problems[@]}" -gt 0 ]; then
    echo "${problems[*]}"
    return 1
  fi
}

stop() {
  local port pid
  [ -d "$dir" ] || { say "not running ($dir does not exist)"; return 0; }
  while read -r port; do
    pid=$(node_pid "$port") || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "node $port did not stop within 5 s of SIGTERM: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done < <(ports)
  rm -rf "$dir"
  say "stopped; removed $dir"
}

start_node() {
  local port=$1
  mkdir -p "$dir/$port"
  redis-server --bind 127.0.0.1 --port "$port" \
    --cluster-enabled yes --cluster-config-file "$dir/$port/nodes.conf" \
    --cluster-node-timeout "$node_timeout_ms" \
    --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
    --save "" --appendonly no \
    --dir "$dir/$port" --daemonize yes \
    --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log"
}

# Whether the server answering on a port is this directory's node. Another cluster
# started at the same moment may have picked the same free port and bound it first: its
# node answers PONG too, and a cluster created over it would join the two.
answering_node_is_ours() {
  local pid
  pid=$(node_pid "$1") || return 1
  [ "$(cli "$1" info server | field process_id)" = "$pid" ]
}

start() {
  local port problems attempt
  if [ -f "$dir/urls" ]; then
    if problems=$(healthy); then
      say "already running in $dir"
      cat "$dir/urls"
      return 0
    fi
    say "the cluster in $dir is not healthy ($problems): replacing it"
    stop
  elif [ -d "$dir" ]; then
    say "$dir holds a cluster that never finished starting: replacing it"
    stop
  fi
  mkdir -p "$dir"
  # Another process may take a picked port between the check and the bind: pick again.
  for attempt in 1 2 3; do
    pick_ports >"$dir/ports"
    while read -r port; do start_node "$port" || true; done < <(ports)
    local up=0
    for _ in $(seq 1 50); do
      up=0
      while read -r port; do
        answering_node_is_ours "$port" && up=$((up + 1))
      done < <(ports)
      [ "$up" -eq "$nodes" ] && break
      sleep 0.1
    done
    [ "$up" -eq "$nodes" ] && break
    say "only $up of $nodes nodes answered within 5 s (attempt $attempt of 3)"
    while read -r port; do
      [ -f "$dir/$port/redis.log" ] && tail -n 3 "$dir/$port/redis.log" >&2
    done < <(ports)
    stop
    [ "$attempt" -lt 3 ] || die "could not start $nodes nodes"
    mkdir -p "$dir"
  done

  local addresses=()
  while read -r port; do addresses+=("127.0.0.1:$port"); done < <(ports)
  say "creating the cluster: ${addresses[*]}"
  timeout 60 redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes \
    >"$dir/create.log" 2>&1 || { cat "$dir/create.log" >&2; stop; die "redis-cli --cluster create failed"; }

  # Replicas sync after create; tests need every replica in sync, or a master's loss
  # could not be failed over.
  for _ in $(seq 1 300); do
    problems=$(healthy) && break
    sleep 0.1
  done
  if ! problems=$(healthy); then
    say "not healthy 30 s after create: $problems"
    stop
    exit 1
  fi
  urls >"$dir/urls"
  say "up: 3 masters, 3 replicas in sync, cluster_state:ok (node timeout ${node_timeout_ms} ms, $dir)"
  cat "$dir/urls"
}

status() {
  local port pid role link state slots problems
  [ -f "$dir/ports" ] || { say "not running ($dir has no cluster)"; return 1; }
  while read -r port; do
    if ! pid=$(node_pid "$port"); then
      printf '%s  down\n' "$port"
      continue
    fi
    role=$(cli "$port" info replication | field role)
    link=$(cli "$port" info replication | field master_link_status)
    state=$(cli "$port" cluster info | field cluster_state)
    slots=$(cli "$port" cluster info | field cluster_slots_assigned)
    printf '%s  pid %s  %-6s  cluster_state:%s  slots_assigned:%s%s\n' \
      "$port" "$pid" "$role" "$state" "$slots" "${link:+  master_link:$link}"
  done < <(ports)
  if problems=$(healthy); then
    say "healthy: $(cat "$dir/urls" 2>/dev/null || urls)"
  else
    say "not healthy: $problems"
    return 1
  fi
}

# Kills one master with SIGKILL and waits until its replica has taken over its slots and
# every surviving node says cluster_state:ok; prints the time that took. The killed node
# stays down (its directory is kept, so stop still cleans up).
kill_master() {
  local port victim="" pid started now elapsed_ms promoted=""
  healthy >/dev/null || die "the cluster is not healthy before the kill: run status"
  while read -r port; do
    [ "$(cli "$port" info replication | field role)" = master ] && { victim=$port; break; }
  done < <(ports)
  pid=$(node_pid "$victim") || die "no pid for master $victim"
  local replica
  replica=$(cli "$victim" cluster replicas "$(cli "$victim" cluster myid)" | awk '{split($2,a,"[:@]"); print a[2]; exit}')
  [ -n "$replica" ] || die "master $victim has no replica"
  started=$(date +%s%N)
  kill -KILL "$pid"
  say "killed master $victim (pid $pid); its replica is $replica"
  for _ in $(seq 1 300); do
    if [ "$(cli "$replica" info replication | field role)" = master ]; then
      local all_ok=1
      while read -r port; do
        [ "$port" = "$victim" ] && continue
        [ "$(cli "$port" cluster info | field cluster_state)" = ok ] || all_ok=0
      done < <(ports)
      if [ "$all_ok" = 1 ]; then promoted=1; break; fi
    fi
    sleep 0.05
  done
  now=$(date +%s%N)
  elapsed_ms=$(((now - started) / 1000000))
  [ -n "$promoted" ] || die "no failover within 15 s of killing $victim"
  say "failover: $replica is master, every node cluster_state:ok, ${elapsed_ms} ms after the kill"
  echo "$elapsed_ms"
}

# A whole failover as operations would see it: kill_master, then the killed node started
# again (as a supervisor would restart it) once its replica has taken over; it rejoins as
# a replica of the new master. Waits until every node knows three replicas and every
# replica's link is up, so writes that need a replica's confirmation can have it again;
# prints the milliseconds from the kill to that.
fail_over() {
  local started victim now said
  started=$(date +%s%N)
  said=$(kill_master 2>&1 >/dev/null) || die "fail-over: $said"
  echo "$said" >&2
  victim=$(echo "$said" | sed -n 's/.*killed master \([0-9]*\).*/\1/p')
  [ -n "$victim" ] || die "fail-over: kill-master did not say which master it killed"
  start_node "$victim"
  for _ in $(seq 1 300); do
    if healthy >/dev/null 2>&1; then
      now=$(date +%s%N)
      say "fail-over: $victim is back as a replica, the cluster is whole $(((now - started) / 1000000)) ms after the kill"
      echo $(((now - started) / 1000000))
      return 0
    fi
    sleep 0.05
  done
  die "fail-over: the cluster was not whole again within 15 s of restarting $victim"
}

case ${1:-} in
  start) start ;;
  fail-over) fail_over ;;
  stop) stop ;;
  status) status ;;
  kill-master) kill_master ;;
  restart-node)
    # A node that was killed starts again with its nodes.conf: it rejoins the cluster
    # (a killed master as a replica of the replica that took over).
    port=${2:-}
    grep -qx "$port" <(ports) || die "restart-node: $port is not a node of $dir"
    node_pid "$port" >/dev/null && die "restart-node: node $port is running"
    start_node "$port"
    ;;
  *)
    echo "usage: $0 start|stop|status|kill-master|fail-over|restart-node PORT" >&2
    exit 2
    ;;
esac
