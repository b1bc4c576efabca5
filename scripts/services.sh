#!/usr/bin/env bash
# Make sure each named service answers on loopback; where one is missing (a fresh Debian machine),
# install it from Debian's packages and start it. Usage: scripts/services.sh postgres [redis] [nats]
# [chromium]. Services that are already running are left exactly as they are. chromium is a program,
# not a service: it is only installed (the browser tests start it themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do
    listening "$port" && return 0
    sleep 0.5
  done
  echo "$name did not start on 127.0.0.1:$port" >&2
  return 1
}

apt_ready=""
apt_install() {
  if [ -z "$apt_ready" ]; then as_root apt-get update -qq; apt_ready=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  listening 5432 && return 0
  echo "==> PostgreSQL is not on 127.0.0.1:5432; starting it"
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ ! -f "/etc/postgresql/$version/main/.cadastre-trust" ]; then
    # Tests connect as postgres over TCP without a password, as CI does. Only loopback is trusted.
    as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' \
      "/etc/postgresql/$version/main/pg_hba.conf"
    as_root touch "/etc/postgresql/$version/main/.cadastre-trust"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL 5432
}

ensure_redis() {
  listening 6379 && return 0
  echo "==> Redis is not on 127.0.0.1:6379; starting it"
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for Redis 6379
}

ensure_nats() {
  listening 4222 && return 0
  echo "==> NATS is not on 127.0.0.1:4222; starting it with JetStream"
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || apt_install nats-server
  local bin store
  bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  store="${TMPDIR:-/tmp}/cadastre-nats"
  mkdir -p "$store"
  nohup "$bin" -a 127.0.0.1 -p 4222 -js -sd "$store" >"$store/nats.log" 2>&1 &
  wait_for NATS 4222
}

# The browser tests (tests/e2e/conftest.py) drive Debian's Chromium through Playwright: Playwright's
# own browser downloads do not work everywhere, so the browser comes from the distribution. They use
# CADASTRE_CHROMIUM when it is set, /usr/bin/chromium otherwise; this checks the same place.
ensure_chromium() {
  if [ -n "${CADASTRE_CHROMIUM:-}" ]; then
    [ -x "$CADASTRE_CHROMIUM" ] && return 0
    # A browser the user named and that is not there is their mistake to fix, not ours to paper over.
    echo "CADASTRE_CHROMIUM=$CADASTRE_CHROMIUM is not an executable file" >&2
    return 1
  fi
  [ -x /usr/bin/chromium ] && return 0
  echo "==> Chromium is not installed; installing Debian's chromium"
  apt_install chromium
  if [ ! -x /usr/bin/chromium ]; then
    echo "the chromium package did not install /usr/bin/chromium" >&2
    return 1
  fi
}

for service in "$@"; do
  case "$service" in
    postgres) ensure_postgres ;;
    redis) ensure_redis ;;
    nats) ensure_nats ;;
    chromium) ensure_chromium ;;
    *) echo "unknown service: $service" >&2; exit 2 ;;
  esac
done
