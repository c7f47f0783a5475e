#!/usr/bin/env bash
# Launch the studio: set up (or reuse) .venv, then run app.py with any arguments given.
# Example: bash scripts/run.sh --port 7860
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/venv.sh")" || exit 1
cd "$root" && exec "$py" app.py "$@"
