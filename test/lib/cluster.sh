# Throwaway PostgreSQL clusters for the test and demo scripts.
#
# Source this file as the non-root user that owns the cluster (postgres), then:
#   cluster_start DIR ["conf line" ...]   initdb DIR/data, private socket in DIR, free port
#   cluster_psql [psql args]              psql against it, stop on first error
#   cluster_stop                          fast shutdown (also run from the EXIT trap)
# cluster_start exports PGHOST, PGPORT, PGUSER and PGDATABASE for everything after it.

PGMAJOR=${PGMAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PGMAJOR/bin}
export PATH="$PGBIN:$PATH"

# A TCP port nothing listens on, starting from a per-process offset so that
# suites running side by side do not collide.
free_port() {
	local p=$((20000 + ($$ * 7 + RANDOM) % 20000))
	local tries=0
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
		p=$((p + 1))
		tries=$((tries + 1))
		[ $tries -gt 500 ] && { echo "no free port" >&2; return 1; }
	done
	echo "$p"
}

cluster_start() {
	CLUSTER_DIR=$1
	shift
	mkdir -p "$CLUSTER_DIR"
	CLUSTER_DATA="$CLUSTER_DIR/data"
	CLUSTER_LOG="$CLUSTER_DIR/server.log"
	initdb -D "$CLUSTER_DATA" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >"$CLUSTER_DIR/initdb.log" 2>&1 ||
		{ cat "$CLUSTER_DIR/initdb.log" >&2; return 1; }
	PGPORT=$(free_port)
	{
		echo "port = $PGPORT"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$CLUSTER_DIR'"
		echo "max_connections = 120"
		local line
		for line in "$@"; do echo "$line"; done
	} >>"$CLUSTER_DATA/postgresql.conf"
	pg_ctl -D "$CLUSTER_DATA" -l "$CLUSTER_LOG" -w -t 60 start >/dev/null ||
		{ tail -n 30 "$CLUSTER_LOG" >&2; return 1; }
	export PGHOST="$CLUSTER_DIR" PGPORT PGUSER=postgres PGDATABASE=postgres
	trap cluster_stop EXIT
}

cluster_psql() {
	psql -X -q -v ON_ERROR_STOP=1 "$@"
}

cluster_stop() {
	if [ -n "${CLUSTER_DATA:-}" ] && [ -f "$CLUSTER_DATA/postmaster.pid" ]; then
		pg_ctl -D "$CLUSTER_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
	fi
}
