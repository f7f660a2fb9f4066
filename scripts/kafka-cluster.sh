#!/usr/bin/env bash
# A local 3-node Apache Kafka 3.9.1 cluster on loopback (KRaft; each node broker+controller in one
# JVM, a 3-voter controller quorum) without Docker, for the replication and broker-failure tests.
# Usually run as `bash scripts/kafka.sh cluster …`; it reuses scripts/kafka.sh's jar cache and code.
#
#   bash scripts/kafka.sh cluster up         start the three nodes and wait until each answers
#   bash scripts/kafka.sh cluster down       stop them all (SIGTERM at once, SIGKILL after KAFKA_STOP_TIMEOUT s)
#   bash scripts/kafka.sh cluster status     one line per node (exit 0 if all three run and answer)
#   bash scripts/kafka.sh cluster brokers    print the bootstrap list, e.g. 127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096
#   bash scripts/kafka.sh cluster kill N     SIGKILL node N (1, 2 or 3), like a crash; returns once it is gone
#   bash scripts/kafka.sh cluster stop N     stop node N cleanly (controlled shutdown, SIGKILL after KAFKA_STOP_TIMEOUT s)
#   bash scripts/kafka.sh cluster start N    start node N again (same data) and wait until it answers
#   bash scripts/kafka.sh cluster topics [TopicCommand args]   e.g. `topics --describe --topic spans`
#
# Node N listens for clients on 127.0.0.1:BASE+2(N-1) and for the controller quorum on the port after
# it: 19092/19093, 19094/19095, 19096/19097 by default. Its node id and broker id are N.
# Topics default to replication factor 3 and min.insync.replicas=2 (a write with acks=all needs two
# replicas in sync), 6 partitions; unclean leader election off; the group and transaction logs RF 3.
#
# Environment (besides KAFKA_LIB_DIR, KAFKA_JVM_OPTS, KAFKA_OVERRIDES, KAFKA_UP_TIMEOUT and
# KAFKA_STOP_TIMEOUT, as for the single broker):
#   KAFKA_CLUSTER_BASE_PORT  client port of node 1 (default 19092); nodes use BASE..BASE+5
#   KAFKA_CLUSTER_DIR        state: node1/ node2/ node3/ (data, properties, pid, log) and cluster.id
#                            (default <repo>/.kafka-cluster)
#   KAFKA_CLUSTER_HEAP       heap flags of each node (default -Xmx512m)
set -euo pipefail

# shellcheck source=scripts/kafka.sh
source "$(dirname "${BASH_SOURCE[0]}")/kafka.sh"

NODES=(1 2 3)
KAFKA_CLUSTER_BASE_PORT="${KAFKA_CLUSTER_BASE_PORT:-19092}"
is_port "$KAFKA_CLUSTER_BASE_PORT" && is_port "$((KAFKA_CLUSTER_BASE_PORT + 5))" ||
  die "KAFKA_CLUSTER_BASE_PORT=$KAFKA_CLUSTER_BASE_PORT: it and the 5 ports after it must be port numbers"
KAFKA_CLUSTER_DIR="$(realpath -m -- "${KAFKA_CLUSTER_DIR:-$REPO_ROOT/.kafka-cluster}")"
KAFKA_HEAP="${KAFKA_CLUSTER_HEAP:--Xmx512m}"

say() { printf 'kafka cluster: %s\n' "$*"; }
die() { printf 'kafka cluster: error: %s\n' "$*" >&2; exit 1; }

client_port() { echo $((KAFKA_CLUSTER_BASE_PORT + 2 * ($1 - 1))); }
controller_port() { echo $((KAFKA_CLUSTER_BASE_PORT + 2 * ($1 - 1) + 1)); }

bootstrap() {
  local n list=()
  for n in "${NODES[@]}"; do list+=("127.0.0.1:$(client_port "$n")"); done
  (IFS=,; printf '%s\n' "${list[*]}")
}

voters() {
  local n list=()
  for n in "${NODES[@]}"; do list+=("$n@127.0.0.1:$(controller_port "$n")"); done
  (IFS=,; printf '%s\n' "${list[*]}")
}

# Points kafka.sh's per-broker variables (and so running_pid, wait_ready, format_storage, …) at node $1.
select_node() {
  [[ "$1" =~ ^[123]$ ]] || die "no node '$1': nodes are 1, 2 and 3"
  NODE="$1"
  KAFKA_DIR="$KAFKA_CLUSTER_DIR/node$NODE"
  KAFKA_PORT="$(client_port "$NODE")"
  KAFKA_CONTROLLER_PORT="$(controller_port "$NODE")"
  ADDRESS="127.0.0.1:$KAFKA_PORT"
  PID_FILE="$KAFKA_DIR/kafka.pid"
  LOG_FILE="$KAFKA_DIR/kafka.log"
  DATA_DIR="$KAFKA_DIR/data"
  PROPS="$KAFKA_DIR/server.properties"
  LOG4J="$KAFKA_DIR/log4j.properties"
  TOOLS_LOG4J="$KAFKA_DIR/tools-log4j.properties"
  CLIENT_PROPS="$KAFKA_DIR/client.properties"
}

# RF 3 and min ISR 2, so acks=all survives one broker down and unclean election never loses data.
CLUSTER_REPLICATION="num.partitions=6
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2"

write_node_configs() { write_configs "$NODE" "$(voters)" "$CLUSTER_REPLICATION"; }

# One cluster id for all nodes, kept in KAFKA_CLUSTER_DIR; each node's format_storage reads its copy.
share_cluster_id() {
  local id=""
  [[ -s "$KAFKA_CLUSTER_DIR/cluster.id" ]] && id="$(cat "$KAFKA_CLUSTER_DIR/cluster.id")"
  if ! is_cluster_id "$id"; then
    id="$(random_cluster_id)"
    printf '%s\n' "$id" >"$KAFKA_CLUSTER_DIR/cluster.id"
  fi
  printf '%s\n' "$id" >"$KAFKA_DIR/cluster.id"
}

# Starts node $NODE's JVM unless it runs already; its wait comes after (all nodes start before
# any can answer: a node serves clients only once a quorum of controllers elected a leader).
launch_node() {
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    say "node $NODE already started (pid $pid)"
    return 0
  fi
  rm -f "$PID_FILE"
  port_open "$KAFKA_PORT" && die "127.0.0.1:$KAFKA_PORT (node $NODE) is in use by another process; set KAFKA_CLUSTER_BASE_PORT"
  port_open "$KAFKA_CONTROLLER_PORT" && die "127.0.0.1:$KAFKA_CONTROLLER_PORT (node $NODE's controller) is in use by another process; set KAFKA_CLUSTER_BASE_PORT"
  write_node_configs
  share_cluster_id
  format_storage
  start_jvm
  say "starting node $NODE (pid $STARTED_PID, $ADDRESS, log $LOG_FILE)…"
}

wait_node() {
  local pid
  pid="$(running_pid)"
  # Just launched: its subshell may not have exec'd java yet (running_pid looks for java's command
  # line), so the pid file's process counts; wait_ready reports it if it exits.
  [[ -n "$pid" ]] || { [[ -f "$PID_FILE" ]] && pid="$(tr -dc '0-9' <"$PID_FILE")"; }
  if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
    # Say why: the JVM's own last words (a port taken, storage, memory) are in its log.
    [[ -f "$LOG_FILE" ]] && { say "node $NODE's last log lines ($LOG_FILE):"; tail -n 15 "$LOG_FILE" >&2; }
    die "node $NODE is not running"
  fi
  wait_ready "$pid"
}

up_locked() {
  need_java
  resolve_jars
  local n t0=$SECONDS
  for n in "${NODES[@]}"; do select_node "$n"; launch_node; done
  for n in "${NODES[@]}"; do select_node "$n"; wait_node; done
  say "up: $(bootstrap) in $((SECONDS - t0))s (KAFKA_CLUSTER_DIR=$KAFKA_CLUSTER_DIR)"
}

start_locked() {
  need_java
  resolve_jars
  local t0=$SECONDS
  launch_node
  wait_node
  say "node $NODE answers on $ADDRESS ($((SECONDS - t0))s)"
}

with_cluster_lock() {
  mkdir -p "$KAFKA_CLUSTER_DIR"
  # setsid: the nodes get their own session, so a Ctrl-C in the terminal that ran `up` does not reach them.
  if command -v setsid >/dev/null 2>&1; then SETSID=setsid; fi
  with_lock "$KAFKA_CLUSTER_DIR/.lock" "$@"
}

cmd_cluster_down() {
  local n pid pids=() start=$SECONDS
  for n in "${NODES[@]}"; do
    select_node "$n"
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$PID_FILE"
  done
  if (( ${#pids[@]} == 0 )); then
    say "not running ($KAFKA_CLUSTER_DIR)"
    return 0
  fi
  say "stopping ${#pids[@]} node(s) (pids ${pids[*]})…"
  # The last nodes to go may wait for a controller quorum that is already gone; hence the SIGKILL.
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if (( SECONDS - start >= KAFKA_STOP_TIMEOUT )); then
        say "pid $pid still running after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  done
  for pid in "${pids[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done
  say "stopped in $((SECONDS - start))s"
}

cmd_cluster_kill() {
  select_node "${1:-}"
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    say "node $NODE is not running"
    return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$PID_FILE"
  say "killed node $NODE (pid $pid) with SIGKILL"
}

cmd_cluster_stop() {
  select_node "${1:-}"
  say "node $NODE:"
  cmd_down
}

cmd_cluster_status() {
  local n pid bad=0
  need_java
  for n in "${NODES[@]}"; do
    select_node "$n"
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
      say "node $NODE: not running"
      bad=1
    elif port_open "$KAFKA_PORT" && jars_ready && broker_answers; then
      say "node $NODE: running on $ADDRESS (pid $pid), answering"
    else
      say "node $NODE: running (pid $pid) but not answering on $ADDRESS"
      bad=1
    fi
  done
  return "$bad"
}

cmd_cluster_topics() {
  need_java
  resolve_jars
  select_node 1
  [[ -f "$TOOLS_LOG4J" ]] || write_tool_configs
  (( $# )) || set -- --list
  exec java -Dlog4j.configuration="file:$TOOLS_LOG4J" -cp "$(classpath)" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$(bootstrap)" "$@"
}

cluster_usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

case "${1:-}" in
  up) with_cluster_lock up_locked ;;
  down) cmd_cluster_down ;;
  status) cmd_cluster_status ;;
  brokers) bootstrap ;;
  kill) cmd_cluster_kill "${2:-}" ;;
  stop) cmd_cluster_stop "${2:-}" ;;
  start) select_node "${2:-}"; with_cluster_lock start_locked ;;
  topics) shift; cmd_cluster_topics "$@" ;;
  -h | --help | help) cluster_usage ;;
  *) cluster_usage >&2; exit 2 ;;
esac
