#!/usr/bin/env bash
# Leaves only the headless OpenCV in a Python environment: usage `headless_opencv.sh PYTHON`.
#
# Why: `scenedetect` depends on `opencv-python`, the GUI build, which needs libGL (absent in
# slim images and on Spaces); it and `opencv-python-headless` both write `cv2/`, so whichever was
# installed last wins. The project now requires `scenedetect-headless`, but a venv made before
# keeps the old pair. Uninstalling them deletes files they share with the headless builds
# (`cv2/`, `scenedetect/`), so those are reinstalled afterwards, at the versions already there.
set -euo pipefail
PY=${1:?usage: headless_opencv.sh PYTHON}

installed() { "$PY" -m pip show "$1" >/dev/null 2>&1; }
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }

gui=()
for name in opencv-python scenedetect; do
  installed "$name" && gui+=("$name")
done
[ ${#gui[@]} -eq 0 ] && exit 0

echo "removing ${gui[*]} (replaced by the headless builds, see requirements.txt)"
keep=()
for name in opencv-python-headless scenedetect-headless; do
  installed "$name" && keep+=("$name==$(version "$name")")
done
"$PY" -m pip uninstall -q -y "${gui[@]}"
if [ ${#keep[@]} -gt 0 ]; then
  "$PY" -m pip install -q --force-reinstall --no-deps "${keep[@]}"
fi
