# A private pgbouncer in transaction mode in front of the throwaway cluster
# that cluster.sh started, for the suites that test through a pooler.
#
# Source after cluster.sh, as the same user (postgres), then:
#   pgbouncer_start DIR POOL_SIZE USER...   pgbouncer on a free loopback port; exports BOUNCER_PORT
#   pgbouncer_admin "SHOW POOLS"            psql on its admin console (unaligned, no header)
#   pgbouncer_stop                          also run from the EXIT trap
# PGHOST/PGPORT keep pointing at the cluster; clients that should go through
# the pooler connect to 127.0.0.1:$BOUNCER_PORT.
#
# pgbouncer reaches the server over TCP on 127.0.0.1 while the suites' own
# psql uses the cluster's socket, so with log_connections = on every
# "connection received: host=127.0.0.1" in the server log is a server
# connection the pooler opened (see pgbouncer_server_logins).

PGBOUNCER=${PGBOUNCER:-$(command -v pgbouncer 2>/dev/null || echo /usr/sbin/pgbouncer)}

pgbouncer_start() {
	BOUNCER_DIR=$1
	local pool_size=$2
	shift 2
	[ -x "$PGBOUNCER" ] || { echo "pgbouncer not found (apt-get install pgbouncer)" >&2; return 1; }
	mkdir -p "$BOUNCER_DIR"
	BOUNCER_PORT=$(free_port) || return 1
	# auth_type trust still wants every user named in the auth file.
	: >"$BOUNCER_DIR/userlist.txt"
	local u
	for u in postgres "$@"; do echo "\"$u\" \"\"" >>"$BOUNCER_DIR/userlist.txt"; done
	cat >"$BOUNCER_DIR/pgbouncer.ini" <<-INI
	[databases]
	* = host=127.0.0.1 port=$PGPORT
	[pgbouncer]
	listen_addr = 127.0.0.1
	listen_port = $BOUNCER_PORT
	unix_socket_dir =
	auth_type = trust
	auth_file = $BOUNCER_DIR/userlist.txt
	admin_users = postgres
	pool_mode = transaction
	default_pool_size = $pool_size
	max_db_connections = $pool_size
	max_client_conn = 1000
	logfile = $BOUNCER_DIR/pgbouncer.log
	log_connections = 1
	log_disconnections = 1
	INI
	"$PGBOUNCER" "$BOUNCER_DIR/pgbouncer.ini" >"$BOUNCER_DIR/stdout.log" 2>&1 &
	BOUNCER_PID=$!
	trap 'pgbouncer_stop; cluster_stop' EXIT
	# Ready when the admin console answers; bounded, not a fixed sleep.
	local i
	for i in $(seq 1 200); do
		pgbouncer_admin "SHOW VERSION" >/dev/null 2>&1 && { export BOUNCER_PORT; return 0; }
		kill -0 "$BOUNCER_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "pgbouncer did not start:" >&2
	cat "$BOUNCER_DIR/stdout.log" "$BOUNCER_DIR/pgbouncer.log" >&2 2>/dev/null
	return 1
}

pgbouncer_admin() {
	psql -X -A -t -F ' ' -h 127.0.0.1 -p "$BOUNCER_PORT" -U postgres -d pgbouncer -c "$1"
}

# Value of COLUMN in the row of `SHOW STATS` / `SHOW POOLS` (the first
# argument) whose first column is DB.
pgbouncer_show() {
	local what=$1 db=$2 column=$3
	psql -X -A -F '|' -h 127.0.0.1 -p "$BOUNCER_PORT" -U postgres -d pgbouncer -c "$what" |
		awk -F'|' -v db="$db" -v col="$column" '
			NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
			$1 == db && c { s += $c } END { print s + 0 }'
}

# How many server connections the pooler opened (needs log_connections = on
# in the cluster).
pgbouncer_server_logins() {
	grep -c 'connection received: host=127.0.0.1' "$CLUSTER_LOG"
}

# How many client logins the pooler accepted.
pgbouncer_client_logins() {
	grep -c 'login attempt:' "$BOUNCER_DIR/pgbouncer.log"
}

pgbouncer_stop() {
	if [ -n "${BOUNCER_PID:-}" ] && kill -0 "$BOUNCER_PID" 2>/dev/null; then
		kill -TERM "$BOUNCER_PID" 2>/dev/null
		wait "$BOUNCER_PID" 2>/dev/null
	fi
	BOUNCER_PID=
}
