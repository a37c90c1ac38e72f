#!/usr/bin/env bash
# e2e/demo.sh (`make demo`): the story of kmsctl, narrated, on a machine with Docker.
#
#  1. Four Debian containers (systemd + sshd): kms1..kms3 and scratch1 (e2e/lab.sh hosts 3).
#  2. A three-node Key Manager cluster comes up through kmsctl itself: `provision` (twice: the
#     second run changes nothing), the first node started on its own (e2e/lab/first-node.yml),
#     `scale add` of the other two.
#  3. Enclaves, keys and ciphertexts are made through the Key Manager API (kmsdemo seed).
#  4. `status` shows a healthy cluster.
#  5. kms2's Key Manager is killed and its storage deleted; `status` shows the damage;
#     `recover node kms2` repairs it; every key is checked on every node through the API, and
#     the ciphertexts made before the failure decrypt on each (kmsdemo check).
#  6. `backup`; then every container is destroyed and replaced by a new one with a new SSH host
#     key (e2e/lab.sh replace); `recover cluster` brings the cluster back from the backup onto
#     them, the new host keys accepted only as named (--expect-host-key), and every object is
#     checked again on every node.
#  7. `drill` restores the newest backup onto scratch1, verifies it, tears it down, and prints
#     its report and its Prometheus metrics file.
#  8. A recap with the time of each recovery.
#
# The lab lives in LAB_DIR (default ./lab) under LAB_NAME (default kmsctl-lab), kmsctl's state
# (journals, backups, its known_hosts) in LAB_DIR/state. The lab is removed at the end unless
# KEEP=1, which leaves it up for trying by hand (e2e/lab.sh down, make lab-down, removes it).
#
# Secrets (the HSM key, the admin API key) live in the lab directory as 0600 files and reach
# kmsctl and kmsdemo only through such files and the environment, never through argv.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export LAB_DIR=${LAB_DIR:-$root/lab}
export LAB_NAME=${LAB_NAME:-kmsctl-lab}
export XDG_STATE_HOME=$LAB_DIR/state # kmsctl's state for the lab, inside the lab directory
nodes=(kms1 kms2 kms3)
kmsctl=(bin/kmsctl -i "$LAB_DIR/inventory.yml")

section() { printf '\n\033[1m==== %s ====\033[0m\n' "$*"; }
say() { printf '%s\n' "$*"; }
run() {
	printf '$ %s\n' "$*"
	"$@"
}
# timed NAME CMD... runs CMD and keeps its wall time under NAME for the recap.
declare -A took
timed() {
	local what=$1 start end
	shift
	start=$(date +%s.%N)
	run "$@"
	end=$(date +%s.%N)
	took[$what]=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f s", b - a}')
}

section "build"
run make build
work=$(mktemp -d)
chmod 700 "$work"
lab_started=0
cleanup() {
	local rc=$?
	rm -rf "$work"
	if [ "$lab_started" = 0 ]; then
		return # never tear down a lab this run did not start
	elif [ "${KEEP:-0}" = 1 ]; then
		section "KEEP=1: the lab stays up"
		e2e/lab.sh status
		say "kmsctl's state for the lab: XDG_STATE_HOME=$XDG_STATE_HOME"
	else
		section "tear down (e2e/lab.sh down)"
		e2e/lab.sh down
	fi
	[ "$rc" = 0 ] || say "demo: FAILED (exit $rc)"
}
trap cleanup EXIT
run go build -o "$work/kmsdemo" ./e2e/lab/kmsdemo
api() { MINIO_KMS_API_KEY=$(<"$LAB_DIR/api.key") "$work/kmsdemo" "$1" --ssh-config "$LAB_DIR/ssh_config" --ca "$LAB_DIR/ca.crt" "${@:2}"; }

section "1. four Debian hosts: kms1..kms3 and scratch1 (e2e/lab.sh hosts 3)"
if [ -n "$(docker ps -aq --filter "label=kmsctl-lab=$LAB_NAME")" ] || [ -e "$LAB_DIR" ]; then
	echo "a lab is already up, or $LAB_DIR is left over: make lab-down first" >&2
	exit 1
fi
lab_started=1 # from here on, also a half-started lab is torn down (unless KEEP=1)
run e2e/lab.sh hosts 3
run "${kmsctl[@]}" inventory graph

section "2. a three-node cluster, through kmsctl: provision, the first node, scale add"
timed provision "${kmsctl[@]}" provision "${nodes[@]}"
say "provision again: it changes nothing"
run "${kmsctl[@]}" provision "${nodes[@]}" | tail -n 5
run "${kmsctl[@]}" play e2e/lab/first-node.yml
timed "scale add kms2" "${kmsctl[@]}" scale add kms2 --yes
timed "scale add kms3" "${kmsctl[@]}" scale add kms3 --yes

section "3. enclaves, keys and ciphertexts, through the Key Manager API"
run api seed --file "$LAB_DIR/seeded.json" --keys 20 "${nodes[@]}"

section "4. kmsctl status: healthy"
run "${kmsctl[@]}" status

section "5. kms2's Key Manager killed and its storage deleted"
run ssh -F "$LAB_DIR/ssh_config" kms2 'systemctl kill --signal=SIGKILL minkms; systemctl stop minkms; find /mnt/minio-kms -mindepth 1 -delete; ls -A /mnt/minio-kms | wc -l'
say "status shows the damage and names the command that repairs it (exit 7: degraded)"
for _ in $(seq 30); do
	if "${kmsctl[@]}" status >"$work/status.txt" 2>&1; then sleep 1; else break; fi
done
cat "$work/status.txt"
timed "recover node kms2" "${kmsctl[@]}" recover node kms2 --yes
say "every key on every node, and the ciphertexts made before the failure decrypt on each:"
run api check --file "$LAB_DIR/seeded.json" "${nodes[@]}"
run "${kmsctl[@]}" status

section "6. backup; every node destroyed; recover cluster onto new machines"
timed backup "${kmsctl[@]}" backup
run ls -l "$XDG_STATE_HOME/kmsctl/backups/kms"
run e2e/lab.sh replace "${nodes[@]}"
expect=()
for n in "${nodes[@]}"; do expect+=(--expect-host-key "$(<"$LAB_DIR/$n.fingerprint")"); done
say "the new machines have new SSH host keys: kmsctl refuses them until they are named"
run "${kmsctl[@]}" status || say "(exit $?: refused, as it should)"
timed "recover cluster" "${kmsctl[@]}" recover cluster "${expect[@]}" --yes
run e2e/lab.sh trust "${nodes[@]}" # the lab's own known_hosts, for ssh and kmsdemo
say "every object back on every node of the new machines:"
run api check --file "$LAB_DIR/seeded.json" "${nodes[@]}"
run "${kmsctl[@]}" status

section "7. a restore drill onto scratch1 (quiet on success: the report and metrics are files)"
timed drill "${kmsctl[@]}" drill --scratch scratch1 --report "$LAB_DIR/drill.json" --metrics-file "$LAB_DIR/kmsctl_drill.prom"
run cat "$LAB_DIR/drill.json"
run cat "$LAB_DIR/kmsctl_drill.prom"

section "8. recap"
for what in provision "scale add kms2" "scale add kms3" "recover node kms2" backup "recover cluster" drill; do
	printf '  %-20s %s\n' "$what" "${took[$what]}"
done
