#!/usr/bin/env bash
# Create .venv in the checkout and install the pinned OpenMMLab stack plus gap_mm (editable).
#
# Idempotent: a stamp records a hash of this script and setup.py; when both are unchanged
# and the venv still imports the stack, the script returns in about a second.
# Every step names itself, and the script stops at the first failing step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GAP_MM_VENV:-$ROOT/.venv}"
PY_BOOT="${PYTHON:-python3.11}"
STAMP="$VENV/.gap_mm_setup_stamp"

step() { CURRENT_STEP="$1"; echo "[setup] $1" >&2; }
trap 'echo "[setup] FAILED at step: ${CURRENT_STEP:-start} (see the output above)" >&2' ERR

want_stamp="$(cat "$ROOT/scripts/setup.sh" "$ROOT/scripts/constraints.txt" "$ROOT/setup.py" "$ROOT"/requirements/*.txt | sha256sum | cut -d" " -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]] \
   && "$VENV/bin/python" -W ignore -c "import pkg_resources, torch, safetensors, mmengine, mmcv.ops, mmdet, mmdet3d, gap_mm" 2>/dev/null; then
  echo "[setup] environment in $VENV is up to date" >&2
  exit 0
fi

step "check the Python interpreter ($PY_BOOT)"
command -v "$PY_BOOT" >/dev/null || PY_BOOT=python3
"$PY_BOOT" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"gap_mm needs Python 3.11, got {sys.version.split()[0]}"'

step "create the virtual environment $VENV"
[[ -x "$VENV/bin/python" ]] || "$PY_BOOT" -m venv "$VENV"
export PIP_CONSTRAINT="$ROOT/scripts/constraints.txt"
PIP=("$VENV/bin/python" -m pip install --progress-bar off)

step "install build tools (pip, wheel, ninja)"
"${PIP[@]}" -q "pip>=23" wheel ninja

step "install torch 2.13.0 (CPU build)"
"${PIP[@]}" -q "torch==2.13.0" numpy

step "install mmengine 0.10.7 and the build needs of mmcv"
"${PIP[@]}" -q "mmengine==0.10.7" "opencv-python-headless<4.11" pyyaml addict yapf packaging

step "build mmcv 2.1.0 with ops (10 to 25 minutes the first time on 2 cores; pip caches the wheel)"
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  # mmcv 2.1.0's setup.py imports pkg_resources, which newer setuptools lack; the build was
  # measured with setuptools<70, installed for this build only (torch wants >=77,
  # which a later step restores: pip's conflict report would be a false alarm).
  "${PIP[@]}" -q --no-warn-conflicts "setuptools<70"
  MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" FORCE_CUDA=0 \
    "${PIP[@]}" --no-build-isolation "mmcv==2.1.0"
fi

step "install mmdet 3.3.0 and pycocotools"
"${PIP[@]}" -q "mmdet==3.3.0" "pycocotools==2.0.11"

step "install mmdet3d 1.4.0 (without its pinned deps) and its runtime needs"
"${PIP[@]}" -q --no-deps "mmdet3d==1.4.0"
# From here on pip's own conflict report would name open3d, which mmdet3d
# declares for its visualizer and gap_mm deliberately leaves out; the last
# step checks the environment instead and reports any other conflict.
PIP+=(--no-warn-conflicts)
"${PIP[@]}" -q numba nuscenes-devkit lyft_dataset_sdk plyfile scikit-image tensorboard trimesh networkx "opencv-python-headless<4.11"

step "install gap_mm in editable mode with its runtime and test needs"
"${PIP[@]}" -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" -q --no-deps -e "$ROOT"

step "pin setuptools to >=77.0.3 (torch) and <81 (mmengine imports pkg_resources at run time)"
"${PIP[@]}" -q "setuptools>=77.0.3,<81"

step "check the installed requirements (open3d, mmdet3d's visualizer dependency, is left out on purpose)"
conflicts="$("$VENV/bin/python" -m pip check 2>&1 | grep -v -e '^mmdet3d [0-9.]* requires open3d, which is not installed\.$' -e '^No broken requirements found\.$' || true)"
if [[ -n "$conflicts" ]]; then
  echo "[setup] pip check reports conflicts besides open3d:" >&2
  echo "$conflicts" >&2
  exit 1
fi

step "verify the stack imports"
"$VENV/bin/python" - <<'PY'
import pkg_resources  # noqa: F401  (mmengine resolves `mmdet::` configs with it)
import torch, safetensors, mmengine, mmcv, mmcv.ops, mmdet, mmdet3d, gap_mm
print(f"[setup] torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, "
      f"mmdet {mmdet.__version__}, mmdet3d {mmdet3d.__version__}, gap_mm {gap_mm.__version__}")
PY
echo "$want_stamp" > "$STAMP"
