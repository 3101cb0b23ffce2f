#!/usr/bin/env bash
# Install the maskclf device runtime (no TensorFlow) into a fresh virtual environment.
#
# Usage: export/setup_pi.sh [SOURCE] [VENV]
#   SOURCE  a maskclf checkout folder or a maskclf-*.whl  (default: the checkout holding this script)
#   VENV    the virtual environment to create              (default: ~/maskclf-venv)
#
# Environment: PYTHON (default python3) picks the interpreter; PIP_* variables (PIP_CACHE_DIR,
# PIP_INDEX_URL, PIP_FIND_LINKS, ...) pass through to pip.
# It installs `maskclf[edge]`: numpy, pillow, pyyaml, defusedxml, ai-edge-litert, opencv-python-headless.
# Then it checks that `import maskclf.edge` and the YuNet face detector work and that TensorFlow is
# NOT installed, and prints the next steps.
set -euo pipefail

die() { echo "setup_pi.sh: $*" >&2; exit 1; }

case "${1:-}" in
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_arg="${1:-$(dirname "$here")}"
venv="${2:-$HOME/maskclf-venv}"
python="${PYTHON:-python3}"

if [[ -d "$source_arg" ]]; then
  [[ -f "$source_arg/pyproject.toml" ]] || die "$source_arg: not a maskclf checkout (no pyproject.toml)"
  source_path="$(cd "$source_arg" && pwd)"
elif [[ -f "$source_arg" && "$source_arg" == *.whl ]]; then
  source_path="$(cd "$(dirname "$source_arg")" && pwd)/$(basename "$source_arg")"
else
  die "$source_arg: give a maskclf checkout folder or a maskclf-*.whl file"
fi

command -v "$python" >/dev/null 2>&1 || die "$python not found; sudo apt install python3 python3-venv"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "maskclf needs Python >= 3.10 ($python is $("$python" -V 2>&1))"
[[ -e "$venv" ]] && die "$venv already exists; remove it or give another VENV"

echo "== creating $venv"
"$python" -m venv "$venv" || die "cannot create a venv; sudo apt install python3-venv"
vpy="$venv/bin/python"

echo "== pip install ${source_path}[edge]"
"$vpy" -m pip install --disable-pip-version-check "${source_path}[edge]"

echo "== checking the runtime"
"$vpy" - <<'EOF'
import importlib.util
import sys

import maskclf.edge
from maskclf.edge.detector import create_detector

create_detector("yunet")  # loads OpenCV and the shipped YuNet model
import ai_edge_litert.interpreter  # noqa: F401  the classifier's runtime

heavy = [m for m in ("tensorflow", "tensorflow_cpu", "keras") if importlib.util.find_spec(m) is not None]
if heavy:
    sys.exit(f"setup_pi.sh: {', '.join(heavy)} installed in this venv; the device runtime must not need it")
import cv2
import numpy
print(f"ok: maskclf.edge, OpenCV {cv2.__version__}, numpy {numpy.__version__}, no TensorFlow")
EOF
"$venv/bin/maskclf" detect --help >/dev/null || die "the maskclf command does not run"

cat <<EOF

Installed. Next steps:
  1. Copy an export folder here (from the training machine):  scp -r RUN_DIR/export pi:/opt/maskclf/export
  2. Try it on a photo:   $venv/bin/maskclf detect photo.jpg --model /opt/maskclf/export --json faces.json
     or the camera:       $venv/bin/maskclf detect --camera 0 --model /opt/maskclf/export --max-frames 100 \\
                              --no-save --events events.jsonl
  3. Run it as a service: see export/PI.md (export/maskclf-camera.service).
EOF
