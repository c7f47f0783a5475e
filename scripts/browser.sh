#!/usr/bin/env bash
# Make sure Debian's Chromium is present for the browser tests (Playwright drives it; it never
# downloads a browser of its own). Installs it with apt-get when missing (root or sudo needed).
if command -v chromium >/dev/null 2>&1; then exit 0; fi
echo "[setup] installing Debian's chromium for the browser tests" >&2
sudo_cmd=""
[ "$(id -u)" = "0" ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -qq >&2 && $sudo_cmd apt-get install -y -qq chromium >&2 \
  || { echo "[setup] could not install chromium; the browser tests need it (apt-get install chromium)" >&2; exit 1; }
