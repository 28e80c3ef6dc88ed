#!/usr/bin/env bash
# Install nearmiss and its Excel add-in for the current Mac user.
#
#   bash install-addin.sh                      # from a copy of the project, or the published package
#   bash install-addin.sh /path/to/nearmiss --server-url https://... --site-code OAK
#
# Needs Python 3.11 or later (python.org installer, or Homebrew's python3). Quit Excel first.
# Steps: a Python environment of its own in ~/.nearmiss/venv, pip installs nearmiss (and xlwings)
# into it, then `python -m addin.excel.install` (with that environment's Python) copies nearmiss.xlam to Excel's startup folder, writes the settings file in Excel's sandbox
# (~/Library/Containers/com.microsoft.Excel/Data/myaddin.conf) and installs xlwings' RunPython
# AppleScript. Any further arguments go to `python3 -m addin.excel.install`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
package="${1:-}"
if [[ -n "$package" && "$package" != --* ]]; then shift; else package=""; fi
if [[ -z "$package" ]]; then
    if [[ -f "$here/../../pyproject.toml" ]]; then package="$(cd "$here/../.." && pwd)"; else package="nearmiss"; fi
fi

python="$(command -v python3 || true)"
if [[ -z "$python" ]]; then
    echo "Python 3 was not found. Install Python 3.11 or later from python.org and run this again." >&2
    exit 1
fi
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "nearmiss needs Python 3.11 or later ($("$python" --version) found)." >&2; exit 1; }

venv="$HOME/.nearmiss/venv"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "Making a Python environment for nearmiss in $venv ..."
    "$python" -m venv "$venv"
fi
echo "Installing $package ..."
"$venv/bin/python" -m pip install --upgrade "$package"
"$venv/bin/python" -m addin.excel.install "$@"
