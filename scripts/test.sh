#!/usr/bin/env bash
# Sets up everything the tests need and runs them: the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
source scripts/postgres.sh   # starts PostgreSQL on loopback, exports NEARMISS_TEST_POSTGRES_URL
python3 -m pytest -n 2 --dist loadgroup "$@"
