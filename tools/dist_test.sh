#!/usr/bin/env bash
# Distributed testing with torchrun. On a machine without GPUs the Python
# side uses the gloo backend, so it also runs on CPUs.
#
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# Env:   NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500),
#        PYTHON (.venv/bin/python if present, else python)
set -e

if [ $# -lt 3 ]; then
    echo "Usage: $0 CONFIG CHECKPOINT GPUS [test.py args...]" >&2
    exit 2
fi

CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The checkout's .venv (scripts/setup.sh) when there is one.
if [ -x "$ROOT/.venv/bin/python" ]; then DEFAULT_PYTHON="$ROOT/.venv/bin/python"; else DEFAULT_PYTHON=python; fi
PYTHON=${PYTHON:-$DEFAULT_PYTHON}

# exec keeps this pid for torchrun: the workers check that it is alive and
# ask the kernel for SIGTERM when it dies (gap_mm/utils/launcher_guard.py),
# since torchrun starts them in sessions of their own.
GAP_MM_LAUNCHER_PID=$$ \
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$ROOT/tools/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
