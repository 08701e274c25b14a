#!/usr/bin/env bash
# Download, on a machine with PyPI, the wheels tools/misc/device_check.sh
# installs on a GPU machine without network (CPython 3.12, manylinux
# x86_64), then check that the folder is complete.
#
#   bash tools/misc/prepare_device_wheels.sh DIR [--with-base]
#
# DIR gets:
# * a wheel for each line of device_requirements.txt and
#   device_requirements_3d.txt (every version pinned, downloaded with
#   --no-deps: the lists are the resolved set, and a resolver would pull
#   torch, opencv-python and open3d, which the GPU machine has or the check
#   leaves out);
# * mmcv's sdist (mmcv has no CPython 3.12 wheel; the check builds it);
# * with --with-base, also a wheel for each line of
#   device_requirements_base.txt, for a machine that lacks the GPU image's
#   own packages (numpy, scipy, opencv, ...: about 250 MB more).
# torch is never downloaded: the GPU machine has its CUDA build.
#
# Then `python tools/misc/device_wheels.py verify DIR` checks that each
# pinned line has a wheel for CPython 3.12 and that every requirement of
# those wheels is pinned, in the base list, or left out on purpose, and a
# pip dry run installs the pinned lines from DIR alone for CPython 3.12.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tools/misc"
DIR="${1:?usage: prepare_device_wheels.sh DIR [--with-base]}"
WITH_BASE="${2:-}"
PY="${PYTHON:-python3}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PLATFORM=(--only-binary=:all: --python-version 3.12
          --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux_2_28_x86_64 --implementation cp --abi cp312)
REQS=(-r "$HERE/device_requirements.txt" -r "$HERE/device_requirements_3d.txt")

echo "[prepare] the pinned wheels into $DIR" >&2
"$PY" -m pip download -q --no-deps "${PLATFORM[@]}" -d "$DIR" "${REQS[@]}"
echo "[prepare] mmcv's sdist" >&2
"$PY" -m pip download -q --no-deps --no-binary :all: -d "$DIR" mmcv==2.1.0
if [[ "$WITH_BASE" == --with-base ]]; then
  echo "[prepare] the base packages (device_requirements_base.txt)" >&2
  "$PY" -m pip download -q --no-deps "${PLATFORM[@]}" -d "$DIR" \
    -r "$HERE/device_requirements_base.txt"
fi

echo "[prepare] checking the folder" >&2
"$PY" "$HERE/device_wheels.py" verify "$DIR"
TARGET="$(mktemp -d)"
trap 'rm -rf "$TARGET"' EXIT
"$PY" -m pip install -q --dry-run --no-index --no-deps --find-links "$DIR" \
  "${PLATFORM[@]}" --target "$TARGET" "${REQS[@]}"
echo "[prepare] pip resolves every pinned line from $DIR alone for CPython 3.12" >&2
echo "[prepare] $(find "$DIR" -maxdepth 1 -type f | wc -l) files, $(du -sh "$DIR" | cut -f1) in $DIR" >&2
