#!/usr/bin/env bash
# The GPU check of gap_mm: set up an environment offline from a folder of
# wheels, then run tools/misc/device_check.py, which writes one JSON of
# results (docs/en/advanced_guides/gpu_check.md).
#
#   bash tools/misc/device_check.sh --wheels DIR [--venv DIR] [--budget S]
#        [--out FILE] [--cpu] [-- more options of device_check.py]
#   bash tools/misc/device_check.sh --cpu      # the rehearsal, no set-up
#
# With --wheels, a venv (default work_dirs/device_check/venv) is created
# with the system site packages, so that the machine's CUDA build of torch
# is the one used (when that python3 is itself a venv, a .pth file adds its
# site-packages as well), and tools/misc/device_requirements.txt is
# installed into it from DIR with pip --no-index --no-deps. Without
# --wheels, $PYTHON (default python3) runs the check as it is.
#
# The whole run, set-up included, ends within --budget seconds (default
# 480). Exit status: 0 when no check failed, 1 when one did, 2 for a bad
# command line.
set -uo pipefail
START=$(date +%s)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-python3}"
WHEELS=""
VENV=""
BUDGET=480
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheels) WHEELS="$(cd "$2" && pwd)" || exit 2; shift 2 ;;
    --venv) VENV="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --) shift; ARGS+=("$@"); break ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
WORK="$ROOT/work_dirs/device_check"
mkdir -p "$WORK"
SETUP_JSON="$WORK/setup.json"
SETUP_LOG="$WORK/setup.log"
rm -f "$SETUP_JSON"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PYTHONUNBUFFERED=1

log() { echo "[device_check.sh] $(($(date +%s) - START)) s  $*"; }

# setup.json: the set-up as the first check of the JSON.
write_setup() {  # status reason
  "$PY" - "$1" "$2" "$(($(date +%s) - START))" "$VENV" "$WHEELS" "$SETUP_LOG" "$SETUP_JSON" <<'PY'
import json, sys
status, reason, elapsed, venv, wheels, log, out = sys.argv[1:]
tail = open(log, errors='replace').read()[-3000:] if status == 'failed' else None
entry = dict(status=status, reason=reason or None, elapsed_s=float(elapsed),
             results=dict(venv=venv or None, wheels=wheels or None,
                          requirements='tools/misc/device_requirements.txt'))
if tail:
    entry['error'] = tail
json.dump(entry, open(out, 'w'), indent=1)
PY
}

setup_venv() {
  : > "$SETUP_LOG"
  VENV="${VENV:-$WORK/venv}"
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating the venv $VENV (system site packages)"
    "$PY" -m venv --system-site-packages "$VENV" >>"$SETUP_LOG" 2>&1 \
      || { write_setup failed "python3 -m venv failed"; return 1; }
    # A venv made from a venv sees the base interpreter's site packages,
    # not its parent's: add the parent's (where its torch is) by a .pth.
    "$PY" - "$VENV" >>"$SETUP_LOG" 2>&1 <<'PY' || { write_setup failed "could not link the parent site-packages"; return 1; }
import glob, os, site, sys
venv = sys.argv[1]
if sys.prefix != sys.base_prefix:
    target = glob.glob(os.path.join(venv, 'lib', 'python3*', 'site-packages'))[0]
    with open(os.path.join(target, '_device_check_parent.pth'), 'w') as f:
        f.write('\n'.join(site.getsitepackages()) + '\n')
PY
  fi
  local vpy="$VENV/bin/python"
  "$vpy" -c "import torch" >>"$SETUP_LOG" 2>&1 \
    || { write_setup failed "torch does not import in $VENV"; return 1; }
  log "installing tools/misc/device_requirements.txt from $WHEELS"
  "$vpy" -m pip install -q --no-index --no-deps --find-links "$WHEELS" \
    -r "$ROOT/tools/misc/device_requirements.txt" >>"$SETUP_LOG" 2>&1 \
    || { write_setup failed "pip install from $WHEELS failed"; return 1; }
  # What the GPU image should have (device_requirements_base.txt): install
  # what it lacks from the folder, when the folder holds it.
  local lacking
  lacking="$("$vpy" "$ROOT/tools/misc/device_wheels.py" missing 2>>"$SETUP_LOG")"
  if [[ -n "$lacking" ]]; then
    log "the machine lacks: ${lacking//$'\n'/, }; installing them from $WHEELS"
    # shellcheck disable=SC2086
    "$vpy" -m pip install -q --no-index --no-deps --find-links "$WHEELS" \
      $lacking >>"$SETUP_LOG" 2>&1 \
      || log "not in $WHEELS either: the environment check names them"
  fi
  PY="$vpy"
  write_setup passed ""
}

if [[ -n "$WHEELS" ]]; then
  setup_venv || log "set-up failed (see $SETUP_LOG); checking with $PY as it is"
  ARGS+=(--wheels "$WHEELS")
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
NOW=$(date +%s)
LEFT=$((START + BUDGET - NOW))
log "running tools/misc/device_check.py with $PY ($LEFT s left)"
# device_check.py keeps to the deadline itself; timeout is the last guard.
timeout -k 10 $((LEFT + 20)) "$PY" "$ROOT/tools/misc/device_check.py" \
  --deadline $((START + BUDGET)) --setup-json "$SETUP_JSON" "${ARGS[@]}"
