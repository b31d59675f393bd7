#!/usr/bin/env bash
# docker-runc.sh: dockerd's runtime where the capability bounding set lacks
# CAP_SYS_RESOURCE (registered by hack/docker-up.sh). Docker 20.10 asks for every
# capability it knows for `--privileged` containers and execs, and runc then fails
# with "unable to apply caps: operation not permitted". This drops CAP_SYS_RESOURCE
# from the OCI spec runc is about to use (the bundle's config.json for create/run,
# the --process file for exec) and runs runc with the same arguments.
set -euo pipefail

runc="${FLAGPOLE_RUNC:-/usr/sbin/runc}"
drop='if .capabilities then .capabilities |= with_entries(.value |= (if type == "array" then map(select(. != "CAP_SYS_RESOURCE")) else . end)) else . end'

strip() { # file jq-path-prefix
	local f="$1" tmp
	[ -f "$f" ] || return 0
	grep -q CAP_SYS_RESOURCE "$f" || return 0
	tmp="$f.flagpole.$$"
	if [ "$2" = process ]; then
		jq -c "$drop" "$f" >"$tmp"
	else
		jq -c ".process |= ($drop)" "$f" >"$tmp"
	fi
	mv "$tmp" "$f"
}

cmd="" bundle="" process=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
	a="${args[i]}"
	case "$a" in
	--bundle | -b) bundle="${args[i + 1]:-}" ;;
	--bundle=*) bundle="${a#--bundle=}" ;;
	--process | -p) process="${args[i + 1]:-}" ;;
	--process=*) process="${a#--process=}" ;;
	create | run | exec) [ -z "$cmd" ] && cmd="$a" ;;
	esac
done
case "$cmd" in
create | run) strip "${bundle:-.}/config.json" spec ;;
exec) [ -n "$process" ] && strip "$process" process ;;
esac
exec "$runc" "$@"
