# Sourced by scripts/demo.sh and scripts/test.sh: make .venv and install the project into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail

pick_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "Cadastre needs Python 3.11 or newer; none found on PATH" >&2
  return 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "need root to run: $*" >&2
    return 1
  fi
}

ensure_venv() {
  local extras="$1" python stamp want
  python=$(pick_python)
  if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
      # Debian ships venv separately (python3-venv); a fresh machine may not have it yet.
      rm -rf .venv
      as_root apt-get update -qq
      as_root apt-get install -y -qq python3-venv >/dev/null
      "$python" -m venv .venv
    fi
  fi
  stamp=.venv/.cadastre-installed
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
  # "dev" includes "postgres": after the test command, the demo needs no second install.
  if [ -f "$stamp" ] && [ "$extras" = postgres ] &&
    [ "$(cat "$stamp")" = "$(sha256sum pyproject.toml | cut -d' ' -f1) dev" ]; then
    return 0
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing Cadastre into .venv ($extras)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[$extras]"
    echo "$want" >"$stamp"
  fi
}
