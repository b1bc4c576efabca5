#!/usr/bin/env bash
# Set up and run the main job on the embedded default (SQLite under ./var, no services needed).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv postgres
exec .venv/bin/cadastre demo "$@"
