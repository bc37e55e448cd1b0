#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv and install the package with its
# test extras. Prints the venv's python path on the last line.
#   PYTHON=/path/to/python  the interpreter to build the venv from
#   VENV=.venv              where the venv lives
#   DJANGO="django==5.2.*"  pin a Django version into the venv
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for v in 3.12 3.13 3.11 3.10; do
    for c in "$HOME"/.pyenv/versions/"$v".*/bin/python; do
      [ -x "$c" ] && { echo "$c"; return; }
    done
  done
  command -v python3
}

VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$(pick_python)" -m venv "$VENV" >&2
fi
stamp="$VENV/.installed-$(cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)-${DJANGO:-any}"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e ".[test,lint]" ${DJANGO:+"$DJANGO"} >&2
  rm -f "$VENV"/.installed-* && touch "$stamp"
fi
echo "$VENV/bin/python"
