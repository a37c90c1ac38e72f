#!/usr/bin/env bash
# e2e/demo.sh (`make demo`): build kmsctl, then `make lab` with three nodes (e2e/lab.sh kms 3):
# Debian containers (systemd + sshd) on which kmsctl installs the Key Manager simulator as
# minkms.service (e2e/lab/install-minkms.yml) and which are then joined into one cluster
# through SSH tunnels (e2e/lab/kmsdemo). Then show that the install is idempotent, what
# --check --diff reports, each node's view of the cluster and a key at work. The lab is
# removed at the end unless KEEP=1, which leaves the same lab as `make lab`.
#
# Secrets (the HSM key, the admin API key) live in ./lab/ as 0600 files and reach kmsctl and
# kmsdemo only through such files and the environment, never through argv.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
nodes=(kms1 kms2 kms3)
kmsctl=bin/kmsctl
inv=lab/inventory.yml

section() { printf '\n\033[1m==== %s ====\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

section "build"
run make build
work=$(mktemp -d)
chmod 700 "$work"
lab_started=0
cleanup() {
	rm -rf "$work"
	if [ "$lab_started" = 0 ]; then
		return # never tear down a lab this run did not start
	elif [ "${KEEP:-0}" = 1 ]; then
		section "KEEP=1: the lab stays up"
		"$root/e2e/lab.sh" status
	else
		section "tear down (make lab-down)"
		"$root/e2e/lab.sh" down
	fi
}
trap cleanup EXIT
run go build -o "$work/kmsdemo" ./e2e/lab/kmsdemo

section "a ${#nodes[@]}-node Key Manager lab (make lab: e2e/lab.sh kms ${#nodes[@]})"
if [ -n "$(docker ps -aq --filter label=kmsctl-lab=kmsctl-lab)" ] || [ -e lab ]; then
	echo "a lab is already up, or ./lab is left over: make lab-down first" >&2
	exit 1
fi
lab_started=1 # from here on, also a half-started lab is torn down (unless KEEP=1)
LAB_HINT=0 run e2e/lab.sh kms "${#nodes[@]}"
run ls -l lab

section "kmsctl inventory graph"
run "$kmsctl" -i "$inv" inventory graph

section "kmsctl ping"
run "$kmsctl" -i "$inv" ping

section "the install again (e2e/lab.sh install: idempotent, changed=0 everywhere)"
run e2e/lab.sh install

section "--check --diff with minkms_limit_nofile=131072 (shows the unit's diff, changes nothing)"
run e2e/lab.sh install --check --diff -e minkms_limit_nofile=131072
printf 'kms1 still has: '
ssh -F lab/ssh_config -o BatchMode=yes kms1 grep LimitNOFILE /etc/systemd/system/minkms.service

section "the cluster from the Key Manager's side (kms client over SSH tunnels, lab/api.key, lab/ca.crt)"
demo=("--ssh-config" lab/ssh_config --ca lab/ca.crt)
MINIO_KMS_API_KEY=$(<lab/api.key) run "$work/kmsdemo" status "${demo[@]}" "${nodes[@]}"
MINIO_KMS_API_KEY=$(<lab/api.key) run "$work/kmsdemo" key "${demo[@]}" "${nodes[@]}"

section "done"
