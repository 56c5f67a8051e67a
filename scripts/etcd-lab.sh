#!/usr/bin/env bash
# etcd-lab.sh: etcd for tests and demos, on unix sockets only (no port).
#
#   etcd-lab.sh start DIR [--members 1|3]
#       starts one etcd member, or a real three-member cluster, in DIR:
#       member N works in DIR/mN (data in DIR/mN/data, log DIR/mN/etcd.log,
#       pid DIR/mN/pid), serves clients on DIR/mN/client:1 and its peers on
#       DIR/mN/pN:1, with fast raft timers (10 ms heartbeat, 100 ms
#       election). Waits until every member answers, then prints the
#       endpoint list that etcd_open() and `ternd --etcd` take, as the last
#       line: unix:DIR/m1/client:1[,unix:DIR/m2/client:1,...]
#       Starting again on the same DIR resumes from the data there.
#   etcd-lab.sh stop DIR
#       stops the members whose pids DIR/m*/pid names (SIGTERM, SIGKILL
#       after 5 s), and only those; removes nothing.
#   etcd-lab.sh endpoints DIR
#       prints the endpoint list of the members in DIR.
#
# etcd 3.4 takes unix://NAME:PORT for client and peer URLs, NAME relative to
# its working directory (absolute paths are refused); a member reaches its
# peers' sockets through symlinks DIR/mN/pK:1 -> ../mK/pK:1. etcdctl wants
# unix:///abs/path (three slashes): etcdctl --endpoints unix://DIR/m1/client:1.
set -euo pipefail

ETCD=${ETCD:-/usr/bin/etcd}
READY_TIMEOUT_S=20

die() { echo "etcd-lab.sh: $*" >&2; exit 2; }
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# The pid in $1/pid if that process is alive and is an etcd working in $1.
member_pid() {
	local dir=$1 pid
	[ -f "$dir/pid" ] || return 1
	pid=$(cat "$dir/pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q etcd || return 1
	[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(cd "$dir" && pwd -P)" ] || return 1
	echo "$pid"
}

endpoints() {
	local dir=$1 list="" m
	for m in "$dir"/m[0-9]*; do
		[ -d "$m" ] || continue
		list+="${list:+,}unix:$m/client:1"
	done
	[ -n "$list" ] || die "no members in $dir"
	echo "$list"
}

healthy() {
	curl -s -m 1 --unix-socket "$1/client:1" http://localhost/health 2>/dev/null |
		grep -q '"health":"true"'
}

stop_members() {
	local dir=$1 m pid pids=()
	for m in "$dir"/m[0-9]*; do
		[ -d "$m" ] || continue
		if pid=$(member_pid "$m"); then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
		fi
	done
	[ ${#pids[@]} -gt 0 ] || return 0
	for _ in $(seq 50); do
		local alive=0
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ $alive = 0 ] && return 0
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
	done
}

start() {
	local dir=$1 n=$2 i j
	command -v "$ETCD" >/dev/null || die "$ETCD is missing (apt-get install etcd-server)"
	command -v curl >/dev/null || die "curl is missing (apt-get install curl)"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd -P)
	# sockaddr_un holds 107 characters of path.
	[ ${#dir} -le 90 ] || die "$dir is too long for a unix socket path"

	local initial=""
	for ((i = 1; i <= n; i++)); do
		initial+="${initial:+,}m$i=unix://p$i:1"
	done
	for ((i = 1; i <= n; i++)); do
		local m=$dir/m$i
		if member_pid "$m" >/dev/null; then
			die "member m$i in $dir is already running (pid $(cat "$m/pid"))"
		fi
		mkdir -p "$m"
		for ((j = 1; j <= n; j++)); do
			[ $j = $i ] || ln -sfn "../m$j/p$j:1" "$m/p$j:1"
		done
		# Sockets left by a member that was killed would refuse the bind.
		rm -f "$m/client:1" "$m/p$i:1"
	done
	for ((i = 1; i <= n; i++)); do
		local m=$dir/m$i
		# setsid: the member outlives this script and its terminal's ^C.
		(cd "$m" && exec setsid "$ETCD" --name "m$i" --data-dir data \
			--listen-client-urls unix://client:1 --advertise-client-urls unix://client:1 \
			--listen-peer-urls "unix://p$i:1" --initial-advertise-peer-urls "unix://p$i:1" \
			--initial-cluster "$initial" --initial-cluster-state new \
			--heartbeat-interval 10 --election-timeout 100 \
			</dev/null >etcd.log 2>&1) &
		echo $! >"$m/pid"
	done
	local deadline=$((SECONDS + READY_TIMEOUT_S))
	for ((i = 1; i <= n; i++)); do
		local m=$dir/m$i
		until healthy "$m"; do
			if ! kill -0 "$(cat "$m/pid")" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
				echo "etcd-lab.sh: member m$i did not come up; the end of $m/etcd.log:" >&2
				tail -n 15 "$m/etcd.log" >&2 || true
				stop_members "$dir"
				exit 1
			fi
			sleep 0.05
		done
	done
	local list=""
	for ((i = 1; i <= n; i++)); do
		list+="${list:+,}unix:$dir/m$i/client:1"
	done
	echo "$list"
}

[ $# -ge 2 ] || usage
cmd=$1 dir=$2
shift 2
case $cmd in
start)
	members=1
	while [ $# -gt 0 ]; do
		case $1 in
		--members)
			[ $# -ge 2 ] || usage
			members=$2
			shift 2
			;;
		--members=*)
			members=${1#--members=}
			shift
			;;
		*) usage ;;
		esac
	done
	[[ $members = 1 || $members = 3 ]] || die "--members takes 1 or 3"
	start "$dir" "$members"
	;;
stop)
	[ $# = 0 ] || usage
	[ -d "$dir" ] || die "$dir does not exist"
	stop_members "$(cd "$dir" && pwd -P)"
	;;
endpoints)
	[ $# = 0 ] || usage
	[ -d "$dir" ] || die "$dir does not exist"
	endpoints "$(cd "$dir" && pwd -P)"
	;;
*)
	usage
	;;
esac
