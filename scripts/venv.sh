#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install requirements.txt into it.
# Idempotent: when requirements.txt has not changed since the last successful install, nothing is
# reinstalled. Prints the venv's python on stdout; progress goes to stderr.
# Usage: py="$(bash scripts/venv.sh)" || exit 1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${STUDIO_VENV:-$root/.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
fail() { echo "[setup] $*" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment in $venv" >&2
  "$python" -m venv "$venv" || fail "could not create a virtual environment with $python (need Python 3.11 with venv)"
fi
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$root/requirements.txt" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing requirements.txt into $venv (torch first, no torchvision)" >&2
  rm -f "$stamp"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$(grep -E '^torch==' "$root/requirements.txt")" >&2 \
    || fail "installing torch failed"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/requirements.txt" >&2 \
    || fail "installing requirements.txt failed"
  echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
