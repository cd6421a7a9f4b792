#!/usr/bin/env bash
# One command from a fresh clone to a dancing example:
#   creates .venv (Python 3.11), installs everything, makes the bundled example song and dances
#   to it with the shipped weights, writing example/dance.bvh, .npz, .mp4 and .blend.
# Set SKIP_EXAMPLE=1 to only install.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
python_bin="${PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null || python_bin=python3
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
if [ "${SKIP_EXAMPLE:-0}" != "1" ]; then
  .venv/bin/python -m engine.example --out example --force
  .venv/bin/python blender_addon/batch.py -- --audio example/song.wav --out-blend example/dance.blend --force
  echo "example ready: example/dance.bvh example/dance.npz example/dance.mp4 example/dance.blend"
fi
