#!/usr/bin/env bash
# bench/ansible/openssh.sh: the benchmark playbook's steps written by hand with OpenSSH, the
# third column of bench/ansible/run.sh. Every host in the background at once: open a
# ControlMaster connection, then one ssh command per playbook step and scp (SFTP protocol, over
# the master) for the three files, then close the master; wait for all hosts. Files are written
# in place (no temp file + rename, no checksum comparison: less work than both tools do).
#
# Usage: openssh.sh HOSTS KEY KNOWN_HOSTS USER SRC_DIR CONTROL_DIR
#   HOSTS: a file of "NAME PORT BASE" lines. Exit status: non-zero if any host failed.
set -euo pipefail
[ $# -eq 6 ] || { echo "usage: $0 HOSTS KEY KNOWN_HOSTS USER SRC_DIR CONTROL_DIR" >&2; exit 1; }
hosts=$1 key=$2 known_hosts=$3 user=$4 src=$5 cdir=$6

one() {
	local name=$1 port=$2 base=$3
	local opts=(-o "ControlPath=$cdir/$name" -o IdentitiesOnly=yes -i "$key"
		-o "UserKnownHostsFile=$known_hosts" -o GlobalKnownHostsFile=/dev/null
		-o StrictHostKeyChecking=yes -o BatchMode=yes -o "User=$user")
	local S=(ssh "${opts[@]}" -p "$port" 127.0.0.1)
	ssh "${opts[@]}" -p "$port" -o ControlMaster=yes -o ControlPersist=yes -f -N 127.0.0.1
	"${S[@]}" true
	"${S[@]}" "rm -rf -- '$base/small'"
	"${S[@]}" "mkdir -p -- '$base/small'"
	"${S[@]}" "for i in \$(seq 1 100); do echo \"small file \$i\" > '$base/small'/f\$i.txt; done"
	scp -q "${opts[@]}" -P "$port" "$src/config.yaml" "127.0.0.1:$base/config.yaml"
	"${S[@]}" "chmod 0600 '$base/config.yaml'"
	scp -q "${opts[@]}" -P "$port" "$src/cert.pem" "127.0.0.1:$base/cert.pem"
	"${S[@]}" "chmod 0600 '$base/cert.pem'"
	scp -q "${opts[@]}" -P "$port" "$src/minkms" "127.0.0.1:$base/minkms"
	"${S[@]}" "chmod 0755 '$base/minkms'"
	"${S[@]}" "sha256sum '$base/minkms'" >/dev/null
	"${S[@]}" "stat '$base/config.yaml'" >/dev/null
	ssh "${opts[@]}" -p "$port" -O exit 127.0.0.1 2>/dev/null
}

pids=()
while read -r name port base; do
	[ -n "$name" ] || continue
	# stdin from /dev/null: ssh would otherwise read the rest of the host list
	one "$name" "$port" "$base" </dev/null &
	pids+=($!)
done <"$hosts"
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
