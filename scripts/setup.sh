#!/usr/bin/env bash
# Installs nearmiss and, with --test, everything its tests drive: LibreOffice (headless),
# Debian's chromium for Playwright, and a PostgreSQL server. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ "$want_test" = 1 ]; then
  pkgs=()
  command -v soffice >/dev/null || pkgs+=(libreoffice-calc-nogui)
  [ -x /usr/bin/chromium ] || pkgs+=(chromium)
  command -v pg_ctlcluster >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || pkgs+=(postgresql)
  command -v pdftoppm >/dev/null || pkgs+=(poppler-utils)
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "Installing Debian packages: ${pkgs[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
  python3 -m pip install -q -e ".[test]"
else
  python3 -m pip install -q -e ".[postgres]"
fi
