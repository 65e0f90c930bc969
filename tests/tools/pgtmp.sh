#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server for the tests (store_pg unit test,
# tests/api/pg.test.mjs): the cluster in DIR/data, its only listener a
# unix socket in DIR (no TCP port, so parallel runs never collide), run as
# the postgres user when called as root (initdb refuses root).
#
#   pgtmp.sh start DIR   initdb (once) and start; prints the conninfo
#   pgtmp.sh stop DIR    fast shutdown (the data stays)
#   pgtmp.sh kill DIR    immediate shutdown (a crash)
#   pgtmp.sh destroy DIR stop and remove DIR
#
# Exit 77 when PostgreSQL is not installed.
set -eu
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|kill|destroy DIR" >&2; exit 2; }
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
case "$cmd" in
start)
	mkdir -p "$dir"
	if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
	chmod 0700 "$dir"
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_pg "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres -N \
			-E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; exit 1; }
	fi
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
		-o "-k $dir -c listen_addresses= -p 5432 -c fsync=off -c full_page_writes=off" \
		start >/dev/null || { tail -20 "$dir/server.log" >&2; exit 1; }
	echo "host=$dir port=5432 user=postgres dbname=postgres"
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
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start|stop|kill|destroy DIR" >&2
	exit 2
	;;
esac
