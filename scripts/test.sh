#!/usr/bin/env bash
# Set up and run everything CI runs: lint, formatting, types, import contracts and the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh --full for the heavy trials at full count).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv dev

# The services the suite talks to over real connections (the embedded default needs none), and
# the Chromium the browser tests drive.
bash scripts/services.sh postgres redis nats chromium
# They are up now: a test that cannot reach one fails instead of skipping (tests/conftest.py).
export CADASTRE_TEST_SERVICES=postgres,redis,nats,chromium

echo "==> ruff";          .venv/bin/ruff check src tests tools bench
echo "==> ruff format";   .venv/bin/ruff format --check src tests tools bench
echo "==> mypy";          .venv/bin/mypy
echo "==> import-linter"; .venv/bin/lint-imports --no-cache
echo "==> pytest";        .venv/bin/pytest "$@"
