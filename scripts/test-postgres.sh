#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server for Herald's tests, then removes it.
#
#   scripts/test-postgres.sh swift test --skip-build --filter Postgres
#   scripts/test-postgres.sh            # an interactive shell with the variables set
#
# The server (Debian's postgresql, version 15 or later) lives in a temporary directory, runs as
# the `postgres` user when started as root, listens on a free port on 127.0.0.1 only, has TLS
# on with a self-signed certificate, and is stopped and removed when the command ends, however it
# ends. The command sees:
#   HERALD_TEST_POSTGRES_URL      postgres://herald:…@127.0.0.1:PORT/herald (a superuser; tests
#                                 create their own databases)
#   HERALD_TEST_POSTGRES_TLS_URL  the same server as user herald_tls, who may only connect over
#                                 TLS, with sslmode=verify-full and sslrootcert=<the certificate>
#   HERALD_TEST_POSTGRES_CA       the self-signed certificate (CN and SAN localhost, 127.0.0.1)
#   HERALD_TEST_POSTGRES_BIN      the server's bin directory (pg_ctl, initdb, psql)
# fsync is off (the data is thrown away, and the tests must not wait on this disk) unless
# HERALD_TEST_POSTGRES_FSYNC=on, as benchmarks/postgres/run.sh sets for a fair comparison.
set -euo pipefail

bin=""
for candidate in "${HERALD_TEST_POSTGRES_BIN:-}" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  if [ -n "$candidate" ] && [ -x "$candidate/initdb" ]; then bin=$candidate; break; fi
done
if [ -z "$bin" ]; then
  echo "error: no PostgreSQL server found (apt-get install postgresql)" >&2
  exit 1
fi

# A real disk when fsync is on (tmpfs would prove nothing).
[ "${HERALD_TEST_POSTGRES_FSYNC:-off}" = on ] && tmp_root=/var/tmp || tmp_root=/tmp
dir=$(mktemp -d "$tmp_root/herald-pg.XXXXXX")
chmod 0755 "$dir"
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  # initdb refuses to run as root.
  chown postgres: "$dir"
  as_owner=(runuser -u postgres --)
fi

stop() {
  "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

password=$(openssl rand -hex 16)
printf '%s\n' "$password" > "$dir/pwfile"
chmod 0644 "$dir/pwfile"
"${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U herald --pwfile="$dir/pwfile" --auth=scram-sha-256 \
  --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
rm -f "$dir/pwfile"

# A certificate for localhost and 127.0.0.1, valid for a day.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/data/server.key" -out "$dir/data/server.crt" >/dev/null 2>&1
cp "$dir/data/server.crt" "$dir/ca.crt"
chmod 0600 "$dir/data/server.key"
[ "$(id -u)" -eq 0 ] && chown postgres: "$dir/data/server.key" "$dir/data/server.crt"
chmod 0644 "$dir/ca.crt"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >> "$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = ${HERALD_TEST_POSTGRES_FSYNC:-off}
full_page_writes = ${HERALD_TEST_POSTGRES_FSYNC:-off}
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
# herald_tls may only connect over TLS; everyone else may use either.
cat > "$dir/data/pg_hba.conf" <<EOF
local     all  all                         scram-sha-256
hostssl   all  herald_tls  127.0.0.1/32    scram-sha-256
host      all  herald_tls  127.0.0.1/32    reject
host      all  all         127.0.0.1/32    scram-sha-256
EOF

"${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }

tls_password=$(openssl rand -hex 16)
PGPASSWORD=$password "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U herald -d postgres <<EOF
CREATE DATABASE herald;
CREATE ROLE herald_tls LOGIN SUPERUSER PASSWORD '$tls_password';
EOF

export HERALD_TEST_POSTGRES_URL="postgres://herald:$password@127.0.0.1:$port/herald"
export HERALD_TEST_POSTGRES_TLS_URL="postgres://herald_tls:$tls_password@localhost:$port/herald?sslmode=verify-full&sslrootcert=$dir/ca.crt"
export HERALD_TEST_POSTGRES_CA="$dir/ca.crt"
export HERALD_TEST_POSTGRES_BIN="$bin"
echo "test PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $dir, removed on exit)" >&2

if [ $# -eq 0 ]; then
  "${SHELL:-bash}" -i
else
  "$@"
fi
