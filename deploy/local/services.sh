#!/usr/bin/env bash
# Local PostgreSQL and Redis for `make run`.
#   services.sh up    use what answers on 127.0.0.1:5432/6379; otherwise start
#                     throwaway servers from the machine's binaries under .data/
#   services.sh down  stop the servers that `up` started (nothing else)
#   services.sh env   write .env: a generated webhook secret and admin token, and the DATABASE_URL and
#                     REDIS_URL in use, each only if .env has none
#   services.sh clean `down`, then remove .data and .env
# Skipped for a service whose URL (DATABASE_URL, REDIS_URL) is set.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="$PWD/.data"
mkdir -p "$DATA"

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

find_pg_bin() {
  command -v "$1" 2>/dev/null && return
  ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1
}

as_pg_user() {
  # initdb and postgres refuse to run as root; use the postgres account if there is one.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "PostgreSQL cannot run as root and there is no 'postgres' user: set DATABASE_URL" >&2; exit 1; }
    chown -R postgres "$DATA/pg" "$DATA/pg.log" 2>/dev/null || true
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

up_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then echo "PostgreSQL: using DATABASE_URL"; return; fi
  if answers 5432; then echo "PostgreSQL: using the server on 127.0.0.1:5432"; return; fi
  local initdb pg_ctl
  initdb=$(find_pg_bin initdb); pg_ctl=$(find_pg_bin pg_ctl)
  if [ -z "$initdb" ] || [ -z "$pg_ctl" ]; then
    echo "PostgreSQL is not running and initdb/pg_ctl were not found: apt-get install postgresql, or set DATABASE_URL" >&2
    exit 1
  fi
  mkdir -p "$DATA/pg"; touch "$DATA/pg.log"
  if [ ! -f "$DATA/pg/PG_VERSION" ]; then
    as_pg_user "$initdb" -D "$DATA/pg" -U postgres --auth=trust >/dev/null
  fi
  as_pg_user "$pg_ctl" -D "$DATA/pg" -l "$DATA/pg.log" -w \
    -o "-p 5432 -c listen_addresses=127.0.0.1 -k $DATA/pg -c fsync=off" start >/dev/null
  echo "PostgreSQL: started a throwaway server in .data/pg (stop it with: make services-stop)"
}

up_redis() {
  if [ -n "${REDIS_URL:-}" ]; then echo "Redis: using REDIS_URL"; return; fi
  if answers 6379; then echo "Redis: using the server on 127.0.0.1:6379"; return; fi
  command -v redis-server >/dev/null || {
    echo "Redis is not running and redis-server was not found: apt-get install redis-server, or set REDIS_URL" >&2
    exit 1
  }
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$DATA" --pidfile "$DATA/redis.pid" --logfile "$DATA/redis.log"
  for _ in $(seq 50); do answers 6379 && break; sleep 0.1; done
  echo "Redis: started a throwaway server from .data (stop it with: make services-stop)"
}

down() {
  local stopped=0
  if [ -f "$DATA/pg/postmaster.pid" ]; then
    as_pg_user "$(find_pg_bin pg_ctl)" -D "$DATA/pg" -m fast stop >/dev/null && echo "PostgreSQL in .data stopped" && stopped=1
  fi
  if [ -f "$DATA/redis.pid" ]; then
    kill "$(cat "$DATA/redis.pid")" 2>/dev/null && echo "Redis in .data stopped" && stopped=1
    rm -f "$DATA/redis.pid"
  fi
  if [ "$stopped" = 0 ]; then
    echo "nothing to stop: no PostgreSQL or Redis started by 'make run' is running (servers it did not start are left alone)"
  fi
}

clean() {
  down
  for path in .data .env; do
    if [ -e "$path" ]; then rm -rf "$path" && echo "removed $path"; fi
  done
}

random_hex() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

add_to_env() {  # NAME VALUE WHAT: append NAME=VALUE to .env unless .env already sets NAME
  if ! grep -q "^$1=" .env; then
    echo "$1=$2" >> .env
    echo "wrote $3 to .env"
  fi
}

write_env() {
  touch .env
  add_to_env VAPI_WEBHOOK_SECRETS "$(random_hex)" "a local webhook secret (VAPI_WEBHOOK_SECRETS)"
  add_to_env ADMIN_TOKEN "$(random_hex)" "an admin token (ADMIN_TOKEN: the admin API and the console at /console/)"
  # 32 random bytes in url-safe base64: console sessions then outlive a restart of the web process.
  add_to_env CONSOLE_SESSION_KEY "$(head -c 32 /dev/urandom | base64 | tr '+/' '-_')" "a console session key (CONSOLE_SESSION_KEY)"
  # Record the servers this run uses, so every later `vapi-ingest` command in any terminal talks to them.
  add_to_env DATABASE_URL "${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/vapi_ingest}" DATABASE_URL
  add_to_env REDIS_URL "${REDIS_URL:-redis://127.0.0.1:6379/0}" REDIS_URL
}

case "${1:-}" in
  up) up_postgres; up_redis ;;
  down) down ;;
  env) write_env ;;
  clean) clean ;;
  *) echo "usage: $0 up|down|env|clean" >&2; exit 2 ;;
esac
