#!/usr/bin/env bash
# bench/recovery/by-hand.sh: the vendor's "Single-node recovery" (shared reference
# key-manager-recovery-on-linux.txt) done as its manual says, scripted over plain ssh: the
# comparison column of `make bench-recovery` (bench/recovery/run.sh). It is what an operator
# would type, without kmsctl's checks (no proof of death, no lock, no journal, no HSM or
# version check, no file push, no write/read-back at the end).
#
# Usage: by-hand.sh LAB_DIR FAILED HEALTHY [STORAGE_PATH]
#   LAB_DIR   a lab of e2e/lab.sh kms: its ssh_config and api.key are used
#   FAILED    the lab host whose disk was lost (kmsN)
#   HEALTHY   a healthy node of the same cluster, where the vendor CLI is run
#   STORAGE_PATH  the Key Manager's storage path (default /mnt/minio-kms)
#
# Steps (the manual's, one ssh each, a new connection each time: plain ssh, no ControlMaster):
#   1 stop    shut down the failed node and delete all state (systemctl stop; rm the storage
#             path's contents)
#   2 remove  `minkms ls` on the healthy node for the failed node's ID, then
#             `minkms edit https://HEALTHY:7373 --rm ID`
#   3 start   restart the failed node with fresh state (its config, certificates and env file
#             were not lost) and wait until its API answers
#   4 add     `minkms add https://HEALTHY:7373 https://FAILED:7373`
#   5 wait    `minkms stat` until every node is online under one leader with one commit
# The admin API key reaches the vendor CLI on the node through ssh's stdin (never argv); the
# CLI trusts the lab CA from /root/.minkms/certs/CAs (bench/recovery/run.sh puts it there
# once, outside the timing). Prints one line per step with its wall time (seconds), then the
# total. Exit 1 when a step fails.
set -euo pipefail

[ $# -ge 3 ] || { sed -n '8,12p' "$0" >&2; exit 1; }
lab=$1 failed=$2 healthy=$3 storage=${4:-/mnt/minio-kms}
port=7373
ssh_=(ssh -F "$lab/ssh_config" -o BatchMode=yes -o ControlPath=none)

now() { date +%s%N; }
t_start=$(now)
t_step=$t_start
step() {
	local t
	t=$(now)
	printf '%-8s %6.2fs\n' "$1" "$(echo "scale=3; ($t - $t_step) / 1000000000" | bc)"
	t_step=$t
}

# vendor HOST ARGS...: `minkms ARGS` on HOST against https://HOST:7373 (MINIO_KMS_SERVER), the
# API key read from stdin.
vendor() {
	local host=$1
	shift
	"${ssh_[@]}" "$host" "IFS= read -r k; MINIO_KMS_API_KEY=\$k MINIO_KMS_SERVER=https://$host:$port exec minkms $*" <"$lab/api.key"
}

# 1: shut down the failed node and delete all state
"${ssh_[@]}" "$failed" "systemctl stop minkms && find $storage -mindepth 1 -delete"
step stop

# 2: the failed node's ID, from a healthy node, and its removal (one ID)
id=$(vendor "$healthy" ls | awk -v h="$failed:$port" '$5 == h { print $1 }')
[ -n "$id" ] || { echo "by-hand.sh: $healthy's minkms ls does not list $failed:$port" >&2; exit 1; }
vendor "$healthy" edit "https://$healthy:$port" --rm "$id"
step remove

# 3: restart the failed node with fresh state; its API answers
"${ssh_[@]}" "$failed" systemctl start minkms
ok=0
for _ in $(seq 240); do
	if vendor "$failed" ls >/dev/null 2>&1; then ok=1; break; fi
	sleep 0.25
done
[ "$ok" = 1 ] || { echo "by-hand.sh: $failed's API does not answer after its restart" >&2; exit 1; }
step start

# 4: add it back through the healthy node
vendor "$healthy" add "https://$healthy:$port" "https://$failed:$port"
step add

# 5: minkms stat until every node is online, one leader, one commit
ok=0
for _ in $(seq 480); do
	if vendor "$healthy" stat | awk 'NR > 1 { n++; if ($2 != "online") bad = 1; leader[$7] = 1; commit[$6] = 1 }
		END { l = 0; for (k in leader) l++; c = 0; for (k in commit) c++; exit !(n >= 2 && !bad && l == 1 && c == 1 && !("none" in leader)) }'; then
		ok=1
		break
	fi
	sleep 0.25
done
[ "$ok" = 1 ] || { echo "by-hand.sh: the cluster did not converge after adding $failed" >&2; exit 1; }
step wait
printf '%-8s %6.2fs\n' total "$(echo "scale=3; ($(now) - $t_start) / 1000000000" | bc)"
