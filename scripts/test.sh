#!/usr/bin/env bash
# Set up (idempotent) and run the test suite on the CPU.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k sparsity`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
set +e
.venv/bin/python -m pytest -q -rs "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "[test] pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit $rc
