#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server for the tests (store_pg unit test,
# tests/api/pg.test.mjs, failover.test.mjs): the cluster in DIR/data, its
# only listener a unix socket in DIR (no TCP port, so parallel runs never
# collide; every server's socket is DIR/.s.PGSQL.5432, so several of them
# in one conninfo are "host=DIR1,DIR2 port=5432"), run as the postgres
# user when called as root (initdb refuses root).
#
#   pgtmp.sh start DIR           initdb (once) and start; prints the conninfo
#   pgtmp.sh start-primary DIR   the same, as a primary that waits for a
#                                synchronous standby named standby1 on every
#                                COMMIT (synchronous_commit=on); replication
#                                over the unix socket
#   pgtmp.sh start-standby PRIMARYDIR DIR
#                                pg_basebackup -R of PRIMARYDIR's server into
#                                DIR, started as the standby standby1 (hot
#                                standby: read-only); prints its conninfo
#   pgtmp.sh promote DIR         the standby becomes a primary (alone: it
#                                waits for no standby of its own)
#   pgtmp.sh crash DIR           SIGKILL the postmaster (a crash: its
#                                backends exit when they notice)
#   pgtmp.sh stop DIR            fast shutdown (the data stays)
#   pgtmp.sh kill DIR            immediate shutdown (a crash)
#   pgtmp.sh destroy DIR         stop and remove DIR
#
# fsync=off: the tests crash processes, never the machine; what a killed
# server wrote is in the kernel's page cache and survives it.
#
# Exit 77 when PostgreSQL is not installed.
set -eu
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=${1:-}
dir=${2:-}
usage() {
	echo "usage: $0 start|start-primary|promote|crash|stop|kill|destroy DIR | start-standby PRIMARYDIR DIR" >&2
	exit 2
}
[ -n "$cmd" ] && [ -n "$dir" ] || usage
if [ ! -x "$PGBIN/initdb" ] || [ ! -x "$PGBIN/pg_ctl" ]; then
	echo "PostgreSQL is not installed ($PGBIN/initdb)" >&2
	exit 77
fi
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}
mkdirs() {
	mkdir -p "$1"
	if [ "$(id -u)" -eq 0 ]; then chown postgres: "$1"; fi
	chmod 0700 "$1"
}
initdb_once() {
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_pg "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres -N \
			-E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; exit 1; }
	fi
}
server_start() {
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
		-o "-k $dir -c listen_addresses= -p 5432 -c fsync=off -c full_page_writes=off" \
		start >/dev/null || { tail -20 "$dir/server.log" >&2; exit 1; }
	echo "host=$dir port=5432 user=postgres dbname=postgres"
}
# The postmaster's pid (the first line of postmaster.pid), or nothing.
pm_pid() {
	[ -f "$dir/data/postmaster.pid" ] && head -1 "$dir/data/postmaster.pid"
}
case "$cmd" in
start)
	mkdirs "$dir"
	initdb_once
	server_start
	;;
start-primary)
	mkdirs "$dir"
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		initdb_once
		# initdb -A trust writes "local replication all trust" already;
		# said again here so that the primary's needs are in one place
		echo "local replication all trust" >>"$dir/data/pg_hba.conf"
		cat >>"$dir/data/postgresql.conf" <<-EOF
			wal_level = replica
			max_wal_senders = 4
			wal_keep_size = 64MB
			hot_standby = on
			synchronous_commit = on
			synchronous_standby_names = 'FIRST 1 (standby1)'
		EOF
	fi
	server_start
	;;
start-standby)
	primary=$dir
	dir=${3:-}
	[ -n "$dir" ] || usage
	mkdirs "$dir"
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_pg "$PGBIN/pg_basebackup" -D "$dir/data" -R -X stream -c fast \
			-d "host=$primary port=5432 user=postgres application_name=standby1" \
			>"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log" >&2; exit 1; }
		# the standby's own settings (the last line of a setting wins): its
		# name on the primary, and once promoted it waits for no standby
		# (a new one is made from it with start-standby)
		cat >>"$dir/data/postgresql.auto.conf" <<-EOF
			primary_conninfo = 'host=$primary port=5432 user=postgres application_name=standby1'
			synchronous_standby_names = ''
		EOF
	fi
	server_start
	;;
promote)
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -w -t 30 promote >/dev/null
	;;
crash)
	pid=$(pm_pid) || true
	[ -n "$pid" ] || { echo "no postmaster.pid in $dir/data" >&2; exit 1; }
	kill -KILL "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	;;
stop)
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
	;;
kill)
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
	;;
destroy)
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	# the backends of a crashed postmaster go when they notice; any left
	# (they hold DIR's files) are this server's: their cwd is DIR/data
	for p in $(pgrep -u postgres -x postgres 2>/dev/null); do
		[ "$(readlink "/proc/$p/cwd" 2>/dev/null)" = "$(realpath "$dir/data" 2>/dev/null)" ] && kill -KILL "$p" 2>/dev/null
	done
	rm -rf "$dir"
	;;
*)
	usage
	;;
esac
