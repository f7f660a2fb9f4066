#!/usr/bin/env bash
# A local single-node Apache Kafka 3.9.1 broker (KRaft, broker+controller in one JVM) without Docker.
#
#   bash scripts/kafka.sh up       start it (first run: fetch the jars with Maven) and wait until it answers
#   bash scripts/kafka.sh down     stop it (SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT seconds)
#   bash scripts/kafka.sh status   say whether it runs and answers (exit 0 if so, 1 if not)
#   (status and topics use the port the broker of KAFKA_DIR was started on, unless KAFKA_PORT is set)
#   bash scripts/kafka.sh topics [TopicCommand args]   e.g. `topics --list` (the default),
#                                  `topics --describe --topic spans`, `topics --create --topic t --partitions 3`
#   bash scripts/kafka.sh cluster up|down|status|…   a 3-broker KRaft cluster on loopback, ports from 19092
#                                  (scripts/kafka-cluster.sh; `cluster help` lists its commands)
#
# Needs java (11+, 17 recommended) and mvn on PATH. Environment:
#   KAFKA_PORT             client listener, 127.0.0.1:PORT, also the advertised one (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener on 127.0.0.1 (default KAFKA_PORT+1, i.e. 9093)
#   KAFKA_DIR              state: data/, server.properties, kafka.pid, kafka.log (default <repo>/.kafka)
#   KAFKA_LIB_DIR          jar cache, shared even when KAFKA_DIR changes (default <repo>/.kafka/lib)
#   KAFKA_HEAP             heap flags (default -Xmx1g)
#   KAFKA_JVM_OPTS         extra JVM flags
#   KAFKA_OVERRIDES        extra server properties, whitespace-separated key=value pairs
#   KAFKA_UP_TIMEOUT       seconds `up` waits for the broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT     seconds `down` waits after SIGTERM before SIGKILL (default 30)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$REPO_ROOT/scripts/kafka/pom.xml"
KAFKA_VERSION=3.9.1

KAFKA_PORT_SET="${KAFKA_PORT:+yes}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_DIR="${KAFKA_DIR:-$REPO_ROOT/.kafka}"
KAFKA_LIB_DIR="${KAFKA_LIB_DIR:-$REPO_ROOT/.kafka/lib}"
# Absolute paths: the broker runs in KAFKA_DIR, and its command line identifies it by its properties path.
KAFKA_DIR="$(realpath -m -- "$KAFKA_DIR")"
KAFKA_LIB_DIR="$(realpath -m -- "$KAFKA_LIB_DIR")"
KAFKA_HEAP="${KAFKA_HEAP:--Xmx1g}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
KAFKA_OVERRIDES="${KAFKA_OVERRIDES:-}"
KAFKA_UP_TIMEOUT="${KAFKA_UP_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

say() { printf 'kafka: %s\n' "$*"; }
die() { printf 'kafka: error: %s\n' "$*" >&2; exit 1; }

is_port() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 > 0 && $1 < 65536 )); }
is_port "$KAFKA_PORT" || die "KAFKA_PORT=$KAFKA_PORT is not a port number"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
is_port "$KAFKA_CONTROLLER_PORT" || die "KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT is not a port number"
[[ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT are both $KAFKA_PORT"

ADDRESS="127.0.0.1:$KAFKA_PORT"
PID_FILE="$KAFKA_DIR/kafka.pid"
LOG_FILE="$KAFKA_DIR/kafka.log"
DATA_DIR="$KAFKA_DIR/data"
PROPS="$KAFKA_DIR/server.properties"
LOG4J="$KAFKA_DIR/log4j.properties"
TOOLS_LOG4J="$KAFKA_DIR/tools-log4j.properties"
CLIENT_PROPS="$KAFKA_DIR/client.properties"
LIB_STAMP="$KAFKA_LIB_DIR/.pom.sha256"

# status and topics without KAFKA_PORT: the port this KAFKA_DIR's broker was last started on.
use_configured_port() {
  [[ -z "$KAFKA_PORT_SET" && -f "$PROPS" ]] || return 0
  local port
  port="$(sed -n 's|^advertised.listeners=PLAINTEXT://127.0.0.1:\([0-9]*\)$|\1|p' "$PROPS")"
  if [[ -n "$port" ]]; then
    KAFKA_PORT="$port"
    ADDRESS="127.0.0.1:$KAFKA_PORT"
  fi
}

need_java() {
  command -v java >/dev/null 2>&1 ||
    die "java not found on PATH: install a JDK/JRE 17 (e.g. 'apt-get install openjdk-17-jre-headless')"
  local v major
  v="$(java -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')"
  major="${v%%.*}"
  [[ "$major" == 1 ]] && major="$(cut -d. -f2 <<<"$v")"
  if ! [[ "$major" =~ ^[0-9]+$ ]] || (( major < 11 )); then
    die "java ${v:-(version unknown)} is too old: Kafka $KAFKA_VERSION needs Java 11+ (17 recommended)"
  fi
}

# Runs "$@" holding an exclusive lock on file $1 (when flock exists): two `up`s at once (the dev
# broker and a test suite's) must not both fill the shared jar cache or start the same broker.
with_lock() {
  local lock="$1"; shift
  if command -v flock >/dev/null 2>&1; then
    mkdir -p "$(dirname "$lock")"
    (
      flock -w 600 9 || die "could not lock $lock within 600 s"
      "$@"
    ) 9>"$lock"
  else
    "$@"
  fi
}

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

jars_ready() { [[ -f "$LIB_STAMP" && "$(cat "$LIB_STAMP")" == "$(pom_hash)" ]] && compgen -G "$KAFKA_LIB_DIR/kafka_2.13-*.jar" >/dev/null; }

resolve_jars_locked() {
  jars_ready && return 0
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found on PATH: it fetches the broker jars once (e.g. 'apt-get install maven')"
  say "resolving broker jars with Maven into $KAFKA_LIB_DIR (first run only)…"
  local tmp="$KAFKA_LIB_DIR.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1; then
    tail -n 30 "$tmp.mvn.log" >&2 || true
    rm -rf "$tmp" "$tmp.mvn.log"
    die "Maven could not resolve the Kafka $KAFKA_VERSION jars (see above)"
  fi
  rm -f "$tmp.mvn.log"
  pom_hash >"$tmp/.pom.sha256"
  # The lib dir may hold the lock file and the stamp only; replace its jars as a whole.
  find "$KAFKA_LIB_DIR" -maxdepth 1 -name '*.jar' -delete 2>/dev/null || true
  mkdir -p "$KAFKA_LIB_DIR"
  mv "$tmp"/*.jar "$KAFKA_LIB_DIR"/
  mv "$tmp/.pom.sha256" "$LIB_STAMP"
  rm -rf "$tmp"
  say "$(find "$KAFKA_LIB_DIR" -maxdepth 1 -name '*.jar' | wc -l) jars in $KAFKA_LIB_DIR"
}

resolve_jars() {
  jars_ready && return 0
  mkdir -p "$KAFKA_LIB_DIR"
  with_lock "$KAFKA_LIB_DIR/.lock" resolve_jars_locked
}

classpath() { printf '%s/*' "$KAFKA_LIB_DIR"; }

# The pid from the pid file if that process is alive and is our broker, else nothing.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 0
  local pid
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $PROPS"; then
    echo "$pid"
  fi
}

# Is something accepting TCP connections on 127.0.0.1:$1? (bash's /dev/tcp, no java)
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Replication for one broker; kafka-cluster.sh passes its own (RF 3, min ISR 2).
SINGLE_BROKER_REPLICATION="num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1"

# server.properties for the broker in KAFKA_DIR. $1 node id, $2 controller.quorum.voters, $3 the
# partition and replication lines (defaults: the single broker of `up`).
write_configs() {
  local node_id="${1:-1}" voters="${2:-1@127.0.0.1:$KAFKA_CONTROLLER_PORT}" replication="${3:-$SINGLE_BROKER_REPLICATION}"
  mkdir -p "$KAFKA_DIR" "$DATA_DIR"
  cat >"$PROPS" <<EOF
# Written by scripts/kafka.sh; rewritten on every start (edit KAFKA_* variables instead).
process.roles=broker,controller
node.id=$node_id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR
auto.create.topics.enable=true
group.initial.rebalance.delay.ms=0
$replication
EOF
  local kv
  for kv in $KAFKA_OVERRIDES; do
    [[ "$kv" == *=* ]] || die "KAFKA_OVERRIDES: '$kv' is not key=value"
    printf '%s\n' "$kv" >>"$PROPS"
  done

  write_tool_configs
  write_log4j
}

write_log4j() {
  # What bin/kafka-run-class.sh would pass: the broker logs to stdout (nohup sends it to kafka.log),
  # chatty request/state-change loggers quieter.
  cat >"$LOG4J" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
}

write_tool_configs() {
  mkdir -p "$KAFKA_DIR"
  cat >"$TOOLS_LOG4J" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.stderr.Target=System.err
log4j.logger.org.apache.kafka.clients=ERROR
EOF
  # Short timeouts for the admin checks, so a broker that is not ready yet fails fast and is polled again.
  cat >"$CLIENT_PROPS" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=8000
reconnect.backoff.max.ms=500
EOF
}

# A Kafka Uuid: 16 bytes in unpadded base64url, 22 characters. Like Kafka's Uuid.randomUuid() (what
# `kafka-storage.sh random-uuid` prints), never one that starts with '-': `format -t -X…` would read
# it as an option. 1 random id in 64 does, so draw again until it does not.
is_cluster_id() { [[ "$1" =~ ^[A-Za-z0-9_][A-Za-z0-9_-]{20}[AQgw]$ ]]; }

random_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    is_cluster_id "$id" && break
  done
  printf '%s\n' "$id"
}

format_storage() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  local cluster_id=""
  [[ -s "$KAFKA_DIR/cluster.id" ]] && cluster_id="$(cat "$KAFKA_DIR/cluster.id")"
  # An id cached by an earlier run whose format failed (e.g. one starting with '-') is replaced:
  # the storage is not formatted yet, so nothing refers to it.
  if ! is_cluster_id "$cluster_id"; then
    cluster_id="$(random_cluster_id)"
    printf '%s\n' "$cluster_id" >"$KAFKA_DIR/cluster.id"
  fi
  say "formatting KRaft storage in $DATA_DIR (cluster id $cluster_id)…"
  local out
  if ! out="$(java -Dlog4j.configuration="file:$TOOLS_LOG4J" -cp "$(classpath)" kafka.tools.StorageTool \
      format -t "$cluster_id" -c "$PROPS" --ignore-formatted 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "formatting $DATA_DIR failed"
  fi
}

# One real round trip: list topics through the admin client (metadata request to the broker).
broker_answers() {
  timeout 20 java -Xshare:auto -XX:TieredStopAtLevel=1 -Dlog4j.configuration="file:$TOOLS_LOG4J" \
    -cp "$(classpath)" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$ADDRESS" --command-config "$CLIENT_PROPS" --list >/dev/null 2>&1
}

log_tail() {
  if [[ -f "$LOG_FILE" ]]; then
    printf -- '--- last lines of %s ---\n' "$LOG_FILE" >&2
    tail -n "${1:-40}" "$LOG_FILE" >&2
    printf -- '---\n' >&2
  fi
}

# Wait until pid $1 listens on the port and answers a metadata request.
wait_ready() {
  local pid="$1" start=$SECONDS dotted=0
  printf 'kafka: waiting for %s ' "$ADDRESS"
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      printf '\n'
      log_tail 60
      rm -f "$PID_FILE"
      die "the broker (pid $pid) exited during startup; see the log above ($LOG_FILE)"
    fi
    if port_open "$KAFKA_PORT" && broker_answers; then
      (( dotted )) && printf ' '
      printf 'ok\n'
      return 0
    fi
    if (( SECONDS - start >= KAFKA_UP_TIMEOUT )); then
      printf '\n'
      log_tail 60
      die "the broker (pid $pid) did not answer on $ADDRESS within ${KAFKA_UP_TIMEOUT}s; still running, stop it with: KAFKA_DIR=$KAFKA_DIR bash scripts/kafka.sh down"
    fi
    printf '.'
    dotted=1
    sleep 0.5
  done
}

# Starts the broker JVM of KAFKA_DIR in the background (its pid in PID_FILE and STARTED_PID);
# the previous log is kept as kafka.log.1.
start_jvm() {
  [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
  # shellcheck disable=SC2086  # KAFKA_HEAP and KAFKA_JVM_OPTS are lists of flags
  (
    cd "$KAFKA_DIR"
    exec nohup ${SETSID:-} java -server $KAFKA_HEAP \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true \
      -Dlog4j.configuration="file:$LOG4J" -Dkafka.logs.dir="$KAFKA_DIR" \
      $KAFKA_JVM_OPTS \
      -cp "$(classpath)" kafka.Kafka "$PROPS" </dev/null >"$LOG_FILE" 2>&1 9>&-
  ) &
  STARTED_PID=$!
  echo "$STARTED_PID" >"$PID_FILE"
}

up_locked() {
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    need_java
    resolve_jars
    if port_open "$KAFKA_PORT" && broker_answers; then
      say "already running on $ADDRESS (pid $pid)"
      return 0
    fi
    say "already started (pid $pid) but not answering yet"
    wait_ready "$pid"
    say "running on $ADDRESS (pid $pid)"
    return 0
  fi
  rm -f "$PID_FILE"

  need_java
  if port_open "$KAFKA_PORT"; then
    die "127.0.0.1:$KAFKA_PORT is in use by another process (not the broker of $KAFKA_DIR); set KAFKA_PORT, or stop it"
  fi
  if port_open "$KAFKA_CONTROLLER_PORT"; then
    die "controller port 127.0.0.1:$KAFKA_CONTROLLER_PORT is in use by another process; set KAFKA_CONTROLLER_PORT"
  fi
  resolve_jars
  write_configs
  format_storage

  local t0=$SECONDS
  start_jvm
  pid="$STARTED_PID"
  say "starting broker $KAFKA_VERSION (pid $pid, log $LOG_FILE)…"
  wait_ready "$pid"
  say "started on $ADDRESS (pid $pid) in $((SECONDS - t0))s"
}

cmd_up() {
  mkdir -p "$KAFKA_DIR"
  # setsid: the broker gets its own session, so a Ctrl-C in the terminal that ran `up` does not reach it.
  if command -v setsid >/dev/null 2>&1; then SETSID=setsid; fi
  with_lock "$KAFKA_DIR/.lock" up_locked
}

cmd_down() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    say "not running ($KAFKA_DIR)"
    return 0
  fi
  say "stopping broker (pid $pid)…"
  kill -TERM "$pid" 2>/dev/null || true
  local start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS - start >= KAFKA_STOP_TIMEOUT )); then
      say "still running after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$PID_FILE"
  say "stopped (pid $pid) in $((SECONDS - start))s"
}

cmd_status() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    say "not running ($KAFKA_DIR)"
    return 1
  fi
  need_java
  if port_open "$KAFKA_PORT" && jars_ready && broker_answers; then
    say "running on $ADDRESS (pid $pid), answering"
    return 0
  fi
  say "running (pid $pid) but not answering on $ADDRESS"
  return 1
}

cmd_topics() {
  need_java
  resolve_jars
  [[ -n "$(running_pid)" ]] || port_open "$KAFKA_PORT" || die "no broker on $ADDRESS: run 'bash scripts/kafka.sh up' first"
  (( $# )) || set -- --list
  [[ -f "$TOOLS_LOG4J" && -f "$CLIENT_PROPS" ]] || write_tool_configs
  exec java -Dlog4j.configuration="file:$TOOLS_LOG4J" -cp "$(classpath)" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$ADDRESS" "$@"
}

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

# Sourced (by scripts/kafka-cluster.sh): the functions above only, no command.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

case "${1:-}" in
  cluster) shift; exec bash "$REPO_ROOT/scripts/kafka-cluster.sh" "$@" ;;
  up) cmd_up ;;
  down | stop) cmd_down ;;
  status) use_configured_port; cmd_status ;;
  topics) shift; use_configured_port; cmd_topics "$@" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
