#!/usr/bin/env bash
# One study, N workers, on this machine: a throwaway PostgreSQL server (deploy/postgres.py, from
# Debian's `postgresql` package) and N `autoclf search` processes sharing one study in it, one per
# GPU where there are GPUs. Waits for the workers, prints `autoclf status`, and stops the server
# when it exits, whichever way (done, a failed worker, Ctrl-C, SIGTERM: the workers get one
# SIGTERM and end their trials as FAIL "interrupted", which a rerun retries first).
#
#   deploy/local-cluster.sh [OPTIONS] SPEC N [-- AUTOCLF SEARCH ARGS...]
#
#   --dir DIR        the server's folder and the workers' logs (default: /tmp/autoclf-cluster.*)
#   --remove         delete DIR on exit (default: keep it; `python3 deploy/postgres.py start
#                    DIR/postgres` serves the study again, on a new port, for `autoclf status`/`best`)
#   --storage URL    join a PostgreSQL server that runs elsewhere: start no server, only workers
#                    (one machine's share of a study run across several machines)
#   --gpus auto|all|LIST
#                    auto (default): worker i sees GPU i mod G (CUDA_VISIBLE_DEVICES from the
#                    environment, else nvidia-smi's list; no GPU: the environment is left alone);
#                    LIST (e.g. 0,1): the same over these; all: every worker sees every GPU
#
# Arguments after `--` go to every `autoclf search` (e.g. --n-trials 40, --timeout 600, --jobs 2).
# Environment: AUTOCLF, the command to run (default `autoclf`; e.g. "python -m automl_clf.cli");
# PYTHON, the interpreter for deploy/postgres.py (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() {
  sed -n '8,22s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit "${1:-2}"
}
die() { echo "local-cluster: $*" >&2; exit 2; }

dir="" remove=0 storage="" gpu_mode="auto"
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) [ $# -ge 2 ] || usage; dir="$2"; shift 2 ;;
    --remove) remove=1; shift ;;
    --storage) [ $# -ge 2 ] || usage; storage="$2"; shift 2 ;;
    --gpus) [ $# -ge 2 ] || usage; gpu_mode="$2"; shift 2 ;;
    -h | --help) usage 0 ;;
    --) break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || usage
spec="$1" n="$2"
shift 2
if [ $# -gt 0 ]; then
  [ "$1" = "--" ] || die "unexpected argument '$1': put autoclf search arguments after --"
  shift
fi
extra=("$@")
[ -f "$spec" ] || die "spec $spec: no such file"
[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number of workers, got '$n'"
read -r -a autoclf <<<"${AUTOCLF:-autoclf}"
command -v "${autoclf[0]}" >/dev/null || die "${autoclf[0]} not found: install autoclf, or set AUTOCLF"
python="${PYTHON:-python3}"

# --- GPUs: one list of device ids to deal out to the workers, round robin --------------------
gpus=()
case "$gpu_mode" in
  all) ;;
  auto)
    if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
      IFS=, read -r -a gpus <<<"$CUDA_VISIBLE_DEVICES"
    elif listed="$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null)"; then
      mapfile -t gpus < <(grep -E '^[0-9]+$' <<<"$listed" || true)
    fi
    ;;
  *) IFS=, read -r -a gpus <<<"$gpu_mode" ;;
esac

# --- the folder, and what happens on the way out ---------------------------------------------
if [ -z "$dir" ]; then
  dir="$(mktemp -d /tmp/autoclf-cluster.XXXXXX)"
  chmod 755 "$dir" # as root, the server runs as `postgres`, which must reach $dir/postgres
fi
mkdir -p "$dir/logs"
dir="$(cd "$dir" && pwd)"
server=""
pids=()

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local rc=$? pid waited=0 hurry=0
  trap - EXIT
  trap 'hurry=1' INT TERM HUP # a second Ctrl-C: kill the workers now, still stop the server
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do # up to 60 s to end their trials in the study, then SIGKILL
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 600 ] && [ "$hurry" = 0 ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$server" ]; then
    "$python" "$here/postgres.py" stop "$server" && echo "stopped the PostgreSQL server"
  fi
  if [ "$remove" = 1 ]; then
    rm -rf "$dir"
  else
    echo "kept $dir (workers' logs in logs/)"
    [ -z "$server" ] || echo "serve the study again with: $python $here/postgres.py start $server"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "local-cluster: interrupted, stopping the workers" >&2; exit 130' INT TERM HUP

# --- the server ------------------------------------------------------------------------------
if [ -z "$storage" ]; then
  server="$dir/postgres"
  storage="$("$python" "$here/postgres.py" start "$server")" || exit 1
  echo "PostgreSQL at $storage (data and server.log in $server)"
fi

# --- the workers: each its own session, so a Ctrl-C reaches them once, from cleanup ----------
detach=()
if command -v setsid >/dev/null 2>&1; then detach=(setsid); fi
for ((i = 0; i < n; i++)); do
  device=()
  where="every GPU the environment shows"
  if [ ${#gpus[@]} -gt 0 ]; then
    gpu="${gpus[i % ${#gpus[@]}]}"
    device=(env "CUDA_VISIBLE_DEVICES=$gpu")
    where="GPU $gpu"
  fi
  PYTHONUNBUFFERED=1 "${detach[@]}" "${device[@]}" "${autoclf[@]}" search "$spec" \
    --storage "$storage" "${extra[@]}" </dev/null >"$dir/logs/worker-$i.log" 2>&1 &
  pids+=($!)
  echo "worker $i: pid $!, $where, log $dir/logs/worker-$i.log"
done

failed=0
for ((i = 0; i < n; i++)); do
  status=0
  wait "${pids[i]}" || status=$?
  echo "worker $i exited $status"
  if [ "$status" -ne 0 ]; then
    [ "$failed" -ne 0 ] || failed=$status
    tail -n 20 "$dir/logs/worker-$i.log" | sed "s/^/  worker $i | /" >&2
  fi
done
pids=()

"${autoclf[@]}" status "$spec" --storage "$storage" || { rc=$?; [ "$failed" -ne 0 ] || failed=$rc; }
exit "$failed"
