#!/usr/bin/env bash
# Three elevated nodes and a local PostgreSQL on one machine: a cluster to try failover with.
#
#   examples/cluster/run.sh [STATE_DIR]        (default: ./.elevate-cluster)
#
# Needs the PostgreSQL server binaries (Debian: apt-get install postgresql) and `elevated` on
# PATH (or ELEVATED=path/to/elevated). As root, PostgreSQL runs as the `postgres` user. Ctrl-C
# stops the nodes and the database; the state directory stays for the next run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
state=$(mkdir -p "${1:-.elevate-cluster}" && cd "${1:-.elevate-cluster}" && pwd)
elevated=${ELEVATED:-elevated}
initdb=$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)
pg_bin=$(dirname "$(readlink -f "$initdb")")
pg_port=${PG_PORT:-55432}
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi

# PostgreSQL, trusting its own Unix socket only.
if [ ! -d "$state/pgdata" ]; then
    mkdir -p "$state/pgdata" "$state/pgsocket"
    [ ${#as_pg[@]} -eq 0 ] || chown postgres "$state/pgdata" "$state/pgsocket"
    "${as_pg[@]}" "$pg_bin/initdb" -D "$state/pgdata" -U postgres --auth=trust -E UTF8 >/dev/null
    cat >> "$state/pgdata/postgresql.conf" <<CONF
listen_addresses = ''
port = $pg_port
unix_socket_directories = '$state/pgsocket'
CONF
fi
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$state/pgdata" -l "$state/pgdata/log" -w start >/dev/null
if ! "${as_pg[@]}" "$pg_bin/createdb" -h "$state/pgsocket" -p "$pg_port" -U postgres elevate \
    2>"$state/createdb.err"; then
    grep -q "already exists" "$state/createdb.err" || { cat "$state/createdb.err" >&2; exit 1; }
fi

# Certificates, the example policy and directory, and a config per node.
if [ ! -f "$state/certs/ca.crt" ]; then
    "$elevated" certs init --dir "$state/certs" >/dev/null
    for name in alice mallory sam olga pat priya audrey ada lee; do
        "$elevated" certs issue --dir "$state/certs" --name "$name" >/dev/null
    done
fi
sed 's/provisioner = "hook"/provisioner = "files"/' "$here/policy.toml" > "$state/policy.toml"
cp "$here/directory.toml" "$state/directory.toml"
endpoints=()
for n in 1 2 3; do
    node=$(echo abc | cut -c$n)
    endpoints+=("https://127.0.0.1:745$n")
    cat > "$state/$node.toml" <<CONF
listen = "127.0.0.1:745$n"
metrics_listen = "127.0.0.1:945$n"
allow_root = true
[tls]
ca = "certs/ca.crt"
cert = "certs/server.crt"
key = "certs/server.key"
[store]
kind = "postgres"
host = "$state/pgsocket"
port = $pg_port
database = "elevate"
user = "postgres"
[cluster]
node = "$node"
advertise = "https://127.0.0.1:745$n"
lease = "3s"
[policy]
policy = "policy.toml"
directory = "directory.toml"
[audit]
key = "audit.key"
[provisioners.files]
kind = "file"
dir = "targets"
CONF
done
"$elevated" store init --config "$state/a.toml"

pids=()
stop() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$state/pgdata" -m fast stop >/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM
for node in a b c; do
    "$elevated" serve --config "$state/$node.toml" >"$state/$node.out" 2>"$state/$node.log" &
    pids+=($!)
done
sleep 2
"$elevated" cluster status --config "$state/a.toml"
all=$(IFS=,; echo "${endpoints[*]}")
cat <<TEXT

Three nodes are running (logs: $state/{a,b,c}.log). Try:
  export ELEVATE_ENDPOINT=$all ELEVATE_CERT_DIR=$state/certs
  elevate --as alice request staging-db --for 30m --reason 'check replication'
  elevate --as ada admin cluster   # or: elevated cluster status --config $state/a.toml
  kill -9 <pid of the leader>      # node pids: a=${pids[0]} b=${pids[1]} c=${pids[2]}
  elevate --as alice list          # answered by the new leader within the lease (3s)
Ctrl-C stops everything.
TEXT
wait
