#!/usr/bin/env bash
# A local S3-compatible server for the archive workers: versitygw (Apache-2.0) with its posix
# backend (objects are plain files under S3_DIR/data/<bucket>/<key>) on a loopback port.
#
#   bash scripts/s3.sh up       start it (first run: build versitygw, ~6 min), wait until it answers,
#                               create the bucket; exit 3 with one line when it cannot be built
#   bash scripts/s3.sh down     stop it (SIGTERM, then SIGKILL after S3_STOP_TIMEOUT seconds)
#   bash scripts/s3.sh status   say whether it runs and answers (exit 0 if so, 1 if not)
#   bash scripts/s3.sh env      print the export lines that point spanledger at it
#   bash scripts/s3.sh bin      print the versitygw binary it would run (building it if needed)
#
# The versitygw binary, in this order: VERSITYGW_BIN; <repo>/.cache/versitygw/versitygw (built
# here once per clone); $(go env GOPATH)/bin/versitygw (an earlier `go install`); otherwise built
# with `GOBIN=<repo>/.cache/versitygw go install github.com/versity/versitygw/cmd/versitygw@v1.8.0`.
# Without a binary and without Go, `up` and `bin` print one `s3: skipped: …` line and exit 3.
#
# Environment:
#   S3_PORT            listener 127.0.0.1:PORT (default 7070)
#   S3_DIR             state: data/ (the buckets), versitygw.pid, versitygw.log (default <repo>/.s3)
#   ARCHIVE_BUCKET     bucket created by `up` (default spanledger)
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY   root credentials of the server (default spanledger / spanledger-secret)
#   AWS_REGION         its region (default us-east-1)
#   S3_UP_TIMEOUT      seconds `up` waits for it to answer (default 30)
#   S3_STOP_TIMEOUT    seconds `down` waits after SIGTERM before SIGKILL (default 10)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSITYGW_VERSION=v1.8.0
VERSITYGW_MODULE="github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
BUILD_DIR="$REPO_ROOT/.cache/versitygw"

S3_PORT="${S3_PORT:-7070}"
S3_DIR="$(realpath -m -- "${S3_DIR:-$REPO_ROOT/.s3}")"
BUCKET="${ARCHIVE_BUCKET:-spanledger}"
ACCESS_KEY="${AWS_ACCESS_KEY_ID:-spanledger}"
SECRET_KEY="${AWS_SECRET_ACCESS_KEY:-spanledger-secret}"
REGION="${AWS_REGION:-us-east-1}"
S3_UP_TIMEOUT="${S3_UP_TIMEOUT:-30}"
S3_STOP_TIMEOUT="${S3_STOP_TIMEOUT:-10}"

ENDPOINT="http://127.0.0.1:$S3_PORT"
PID_FILE="$S3_DIR/versitygw.pid"
LOG_FILE="$S3_DIR/versitygw.log"
DATA_DIR="$S3_DIR/data"
SKIP_EXIT=3

say() { printf 's3: %s\n' "$*"; }
die() { printf 's3: error: %s\n' "$*" >&2; exit 1; }

[[ "$S3_PORT" =~ ^[0-9]+$ ]] && (( S3_PORT > 0 && S3_PORT < 65536 )) || die "S3_PORT=$S3_PORT is not a port number"
[[ "$BUCKET" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "ARCHIVE_BUCKET=$BUCKET is not a valid bucket name"

# The binary to run, built once per clone when none is found. Prints its path; exits 3 without Go.
find_binary() {
  if [[ -n "${VERSITYGW_BIN:-}" ]]; then
    [[ -x "$VERSITYGW_BIN" ]] || die "VERSITYGW_BIN=$VERSITYGW_BIN is not an executable"
    printf '%s\n' "$VERSITYGW_BIN"; return
  fi
  if [[ -x "$BUILD_DIR/versitygw" ]]; then printf '%s\n' "$BUILD_DIR/versitygw"; return; fi
  if command -v go >/dev/null 2>&1; then
    local gopath_bin
    gopath_bin="$(go env GOPATH)/bin/versitygw"
    # Only a binary of the pinned version (an older one may lack what the tests use).
    if [[ -x "$gopath_bin" ]] && go version -m "$gopath_bin" 2>/dev/null | grep -q "versitygw[[:space:]]*$VERSITYGW_VERSION"; then
      printf '%s\n' "$gopath_bin"; return
    fi
    mkdir -p "$BUILD_DIR"
    say "building versitygw $VERSITYGW_VERSION into $BUILD_DIR (once per clone; about six minutes)" >&2
    GOBIN="$BUILD_DIR" go install "$VERSITYGW_MODULE" >&2 || die "go install $VERSITYGW_MODULE failed"
    printf '%s\n' "$BUILD_DIR/versitygw"; return
  fi
  say "skipped: no versitygw binary (VERSITYGW_BIN, $BUILD_DIR) and no Go toolchain to build one" >&2
  exit "$SKIP_EXIT"
}

running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && grep -q versitygw "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

# SHA-256 of an empty body: S3 wants the payload hash in a signed header.
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

# A signed request without a body (curl's SigV4); prints the HTTP status.
signed() {
  local method="$1" path="$2"
  local head=()
  [[ "$method" == HEAD ]] && head=(--head)
  curl -s -o /dev/null -w '%{http_code}' -X "$method" "${head[@]}" --max-time 5 -H "x-amz-content-sha256: $EMPTY_SHA256" \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" "$ENDPOINT$path" || true
}

answers() { [[ "$(signed GET /)" == 200 ]]; }

cmd_up() {
  if pid="$(running_pid)"; then
    answers || die "versitygw (pid $pid) runs but does not answer on $ENDPOINT (log: $LOG_FILE)"
    ensure_bucket
    say "already running (pid $pid) on $ENDPOINT"; return
  fi
  local bin
  bin="$(find_binary)"
  mkdir -p "$DATA_DIR"
  say "starting $bin on $ENDPOINT (data: $DATA_DIR)"
  # --keep-alive: versitygw closes every connection after its answer unless told otherwise; AWS S3
  # and other stores keep them open, and a TCP connection per PUT is not what workers meet there.
  ROOT_ACCESS_KEY_ID="$ACCESS_KEY" ROOT_SECRET_ACCESS_KEY="$SECRET_KEY" VGW_REGION="$REGION" \
    setsid nohup "$bin" --port "127.0.0.1:$S3_PORT" --keep-alive posix "$DATA_DIR" >"$LOG_FILE" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  local deadline=$((SECONDS + S3_UP_TIMEOUT))
  until answers; do
    running_pid >/dev/null || { tail -n 20 "$LOG_FILE" >&2; die "versitygw exited (log: $LOG_FILE)"; }
    (( SECONDS < deadline )) || die "versitygw does not answer on $ENDPOINT after ${S3_UP_TIMEOUT}s (log: $LOG_FILE)"
    sleep 0.2
  done
  ensure_bucket
  say "up: $ENDPOINT, bucket $BUCKET"
}

ensure_bucket() {
  local status
  status="$(signed HEAD "/$BUCKET")"
  [[ "$status" == 200 ]] && return
  status="$(signed PUT "/$BUCKET")"
  [[ "$status" == 200 ]] || die "could not create bucket $BUCKET (HTTP $status)"
}

cmd_down() {
  local pid
  if ! pid="$(running_pid)"; then say "not running"; rm -f "$PID_FILE"; return; fi
  kill -TERM "$pid"
  local deadline=$((SECONDS + S3_STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.2
  done
  rm -f "$PID_FILE"
  say "stopped (pid $pid)"
}

cmd_status() {
  local pid
  if pid="$(running_pid)" && answers; then say "running (pid $pid) on $ENDPOINT"; return 0; fi
  say "not running on $ENDPOINT"; return 1
}

cmd_env() {
  cat <<EOF
export ARCHIVE_ENDPOINT=$ENDPOINT
export ARCHIVE_BUCKET=$BUCKET
export ARCHIVE_FORCE_PATH_STYLE=true
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
EOF
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  bin) find_binary ;;
  *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
