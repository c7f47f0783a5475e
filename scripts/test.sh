#!/usr/bin/env bash
# Run the whole test suite: set up (or reuse) .venv and the browser the UI tests drive, then pytest.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k parser). A skipped test fails the run.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/venv.sh")" || exit 1
bash "$root/scripts/browser.sh" || exit 1
cd "$root" && exec "$py" -m pytest "$@"
