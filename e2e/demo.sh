#!/usr/bin/env bash
# e2e/demo.sh (`make demo`): build kmsctl, start a 3-node lab of Debian containers (systemd +
# sshd, e2e/lab.sh), install the Key Manager simulator on them as minkms.service with kmsctl
# (e2e/lab/install-minkms.yml), show that the install is idempotent and what --check --diff
# reports, then join the three Key Managers into one cluster through SSH tunnels and show each
# node's view (e2e/lab/kmsdemo). The lab is removed at the end unless KEEP=1.
#
# Secrets (the HSM key, the admin API key) are generated into a 0700 temp dir and reach
# kmsctl and kmsdemo only through 0600 files and the environment, never through argv.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
nodes=(kms1 kms2 kms3)
kmsctl="$root/bin/kmsctl"
inv="$root/lab/inventory.yml"

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
		echo "KEEP=1: the lab stays up (ssh -F lab/ssh_config kms1; make lab-down)"
	else
		section "tear down"
		"$root/e2e/lab.sh" down
	fi
}
trap cleanup EXIT
run go build -o "$work/kmsdemo" ./e2e/lab/kmsdemo
cp bin/kmsim "$work/minkms" # a snapshot: a rebuild of bin/ meanwhile would change the install

section "start a ${#nodes[@]}-node lab (e2e/lab.sh up)"
if [ -n "$(docker ps -aq --filter label=kmsctl-lab=1)" ]; then
	echo "a lab is already up: make lab-down first" >&2
	exit 1
fi
lab_started=1 # from here on, also a half-started lab is torn down
"$root/e2e/lab.sh" up "${#nodes[@]}"

section "secrets and certificates (in a 0700 temp dir, never on argv)"
umask 077
mkdir -p "$work/certs"
"$root/bin/kmsim" --soft-hsm >"$work/hsm.key"
"$root/bin/kmsim" identity >"$work/admin.txt"
admin_identity=$(awk '/^Identity:/ {print $2}' "$work/admin.txt")
{
	printf 'minkms_hsm_key: "%s"\n' "$(cat "$work/hsm.key")"
	printf 'minkms_admin_identity: "%s"\n' "$admin_identity"
} >"$work/secrets.yml"
echo "HSM key and admin API key generated; the admin identity is $admin_identity"
cert_args=()
for n in "${nodes[@]}"; do
	ip=$(docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "kmsctl-lab-$n")
	cert_args+=("$n=$ip")
done
umask 022
run "$work/kmsdemo" certs "$work/certs" "${cert_args[@]}"
play=(-i "$inv" play e2e/lab/install-minkms.yml -e "@$work/secrets.yml"
	-e "lab_files=$work/certs" -e "minkms_src=$work/minkms")

section "kmsctl inventory graph"
run "$kmsctl" -i "$inv" inventory graph

section "kmsctl ping"
run "$kmsctl" -i "$inv" ping

section "kmsctl play e2e/lab/install-minkms.yml (first run: installs, reports changed)"
run "$kmsctl" "${play[@]}"

section "the same play again (idempotent: changed=0 everywhere)"
run "$kmsctl" "${play[@]}"

section "--check --diff with minkms_limit_nofile=131072 (shows the unit's diff, changes nothing)"
run "$kmsctl" --check --diff "${play[@]}" -e minkms_limit_nofile=131072
printf 'kms1 still has: '
ssh -F "$root/lab/ssh_config" -o BatchMode=yes kms1 grep LimitNOFILE /etc/systemd/system/minkms.service

section "the cluster from the Key Manager's side (kms client over SSH tunnels)"
MINIO_KMS_API_KEY=$(awk '/^API Key:/ {print $3}' "$work/admin.txt") \
	run "$work/kmsdemo" cluster --ssh-config "$root/lab/ssh_config" --ca "$work/certs/ca.crt" "${nodes[@]}"

section "done"
