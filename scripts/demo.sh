#!/usr/bin/env bash
# dicomnb's demo: install everything into a fresh virtual environment and open JupyterLab on
# notebooks/quickstart.ipynb (sample data bundled with pydicom; nothing else to download).
# Environment: DICOMNB_DEMO_VENV (default .venv-demo), DICOMNB_DEMO_PORT (default 8888).
# Extra arguments go to jupyter lab (e.g. --no-browser).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! python3 -m venv --help >/dev/null 2>&1; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends python3-venv python3-pip
fi

VENV="${DICOMNB_DEMO_VENV:-.venv-demo}"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[all]" 2>&1 | grep -v '^WARNING: Location' || true

extra=()
[ "$(id -u)" -eq 0 ] && extra+=(--allow-root)
exec "$VENV/bin/jupyter" lab notebooks/quickstart.ipynb --ip=127.0.0.1 \
  --port="${DICOMNB_DEMO_PORT:-8888}" "${extra[@]}" "$@"
