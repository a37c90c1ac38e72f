#!/usr/bin/env bash
# e2e/lab.sh: a local lab of Debian test-host containers (systemd + sshd, the e2e image) for
# trying kmsctl by hand. Unlike the e2e suite's harness, the lab stays up until `down`.
#
#   e2e/lab.sh kms [N]    (make lab) N hosts kms1..kmsN (default 3) running the Key Manager
#                         simulator (bin/kmsim) as minkms.service, joined into one cluster
#   e2e/lab.sh up [N]     N bare hosts kms1..kmsN (no Key Manager)
#   e2e/lab.sh install [KMSCTL FLAGS]
#                         run e2e/lab/install-minkms.yml again on a kms lab with the lab's own
#                         files (for example --check --diff -e minkms_limit_nofile=131072)
#   e2e/lab.sh status     list the lab's containers and what to try
#   e2e/lab.sh down       (make lab-down) remove the lab's containers (by id), its network and
#                         the lab directory
#
# The hosts run on a private Docker network, where each is reachable as kmsN; their SSH ports
# are published on 127.0.0.1 only. The lab directory, ./lab (0700, every file 0600), holds what
# a person needs to administer them: inventory.yml (group kms; kms_endpoint kmsN:7373 is each
# node's address as the cluster knows it, kms_api ssh), ssh_config, known_hosts (each host's own
# key, generated here) and id_ed25519 (the client key). A kms lab also keeps ca.crt (the lab's
# CA, the inventory's kms_ca_file), api.key (the admin API key), hsm.key (the HSM key; both named
# by the inventory's kms_api_key_file and kms_hsm_key_file), each
# node's certificate and key (kmsN.crt, kmsN.key; valid for kmsN, its lab IP, 127.0.0.1 and
# localhost) and minkms (the installed simulator). Secrets reach kmsctl and kmsdemo only
# through 0600 files and the environment, never through argv.
#
# A failed kms or up removes what it started, unless KEEP=1. LAB_DIR (default ./lab) and
# LAB_NAME (default kmsctl-lab: the Docker network, the containers' name prefix and label) let
# a second lab run beside the first, as the e2e test of this script does; LAB_HINT=0 leaves out
# the closing "what now" (e2e/demo.sh prints its own).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${LAB_DIR:-$root/lab}
name=${LAB_NAME:-kmsctl-lab}
label="kmsctl-lab=$name"
header="# written by e2e/lab.sh"
kmsctl="$root/bin/kmsctl"
kmsim="$root/bin/kmsim"
kms_port=7373

say() { printf '%s\n' "$*" >&2; }
fail() {
	say "lab.sh: $*"
	exit 1
}

# show is how the lab directory is named in the hints: relative when it is ./lab; labsh is
# how to call this script again for the same lab.
show=$dir
[ "$dir" = "$root/lab" ] && [ "$PWD" = "$root" ] && show=lab
labsh=e2e/lab.sh
if [ "$dir" != "$root/lab" ] || [ "$name" != kmsctl-lab ]; then
	labsh="LAB_DIR=$dir LAB_NAME=$name e2e/lab.sh"
fi

work=$(mktemp -d)
chmod 700 "$work"
started=0
finish() {
	local rc=$?
	rm -rf "$work"
	if [ "$rc" != 0 ] && [ "$started" = 1 ]; then
		if [ "${KEEP:-0}" = 1 ]; then
			say "lab.sh: failed; KEEP=1 leaves the lab as it is (e2e/lab.sh down removes it)"
		else
			say "lab.sh: failed; removing what this run started (KEEP=1 would leave it for inspection)"
			down
		fi
	fi
}
trap finish EXIT

down() {
	local ids nets
	ids=$(docker ps -aq --filter "label=$label")
	if [ -n "$ids" ]; then
		# shellcheck disable=SC2086 # one id per word
		docker rm -f -v $ids >/dev/null
	fi
	nets=$(docker network ls -q --filter "label=$label")
	if [ -n "$nets" ]; then
		# shellcheck disable=SC2086
		docker network rm $nets >/dev/null
	fi
	if [ -e "$dir" ]; then
		# Only a directory this script wrote: its ssh_config starts with the header.
		if [ "$(head -n1 "$dir/ssh_config" 2>/dev/null)" != "$header" ]; then
			fail "$dir was not written by e2e/lab.sh (no $dir/ssh_config starting with \"$header\"): not removing it"
		fi
		rm -rf "$dir"
	fi
	say "lab removed: containers, network $name, $dir"
}

# start N MODE starts N hosts kms1..kmsN and writes the lab directory; MODE kms also makes
# the Key Manager's secrets and certificates and names them in the inventory.
start() {
	local n=$1 mode=$2 image cgroup i host id port ip identity
	[[ $n =~ ^[1-9][0-9]?$ ]] || fail "N must be a number from 1 to 99, got \"$n\""
	if [ -n "$(docker ps -aq --filter "label=$label")" ] || [ -e "$dir" ]; then
		fail "a lab is already up, or $dir is left over: make lab-down (e2e/lab.sh down) first"
	fi
	if [ "$mode" = kms ]; then
		[ -x "$kmsctl" ] && [ -x "$kmsim" ] || fail "$kmsctl and $kmsim are missing: make build first"
	fi
	image=$("$root/e2e/image/build.sh")
	if [ "$(docker info --format '{{.CgroupVersion}}')" = 2 ]; then
		cgroup=(--cgroupns=private)
	else
		cgroup=(-v /sys/fs/cgroup:/sys/fs/cgroup:ro)
	fi

	started=1 # from here on, a failure removes what was started
	mkdir -m 700 "$dir"
	printf '%s\n' "$header" >"$dir/ssh_config"
	ssh-keygen -q -t ed25519 -N '' -C kmsctl-lab -f "$dir/id_ed25519"
	: >"$dir/known_hosts"
	docker network create --label "$label" "$name" >/dev/null

	local -a names ports ips
	for i in $(seq "$n"); do
		host="kms$i"
		rm -rf "$work/fs" && mkdir -p "$work/fs/etc/ssh" "$work/fs/root/.ssh"
		ssh-keygen -q -t ed25519 -N '' -C "root@$host" -f "$work/fs/etc/ssh/ssh_host_ed25519_key"
		cp "$dir/id_ed25519.pub" "$work/fs/root/.ssh/authorized_keys"
		chmod 700 "$work/fs/root/.ssh"
		chmod 600 "$work/fs/root/.ssh/authorized_keys"
		id=$(docker create --name "$name-$host" --hostname "$host" --label "$label" \
			--network "$name" --network-alias "$host" -p "127.0.0.1::22" \
			--tmpfs /run --tmpfs /run/lock --stop-signal SIGRTMIN+3 "${cgroup[@]}" "$image" /sbin/init)
		tar -C "$work/fs" --owner=0 --group=0 -c . | docker cp - "$id:/"
		docker start "$id" >/dev/null
		port=$(docker port "$id" 22/tcp | head -n1)
		port=${port##*:}
		ip=$(docker inspect --format "{{(index .NetworkSettings.Networks \"$name\").IPAddress}}" "$id")
		names+=("$host") ports+=("$port") ips+=("$ip")
		echo "[127.0.0.1]:$port,$ip,$host $(cut -d' ' -f1,2 "$work/fs/etc/ssh/ssh_host_ed25519_key.pub")" >>"$dir/known_hosts"
		printf '\nHost %s\n  HostName 127.0.0.1\n  Port %s\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n' \
			"$host" "$port" "$dir/id_ed25519" "$dir/known_hosts" >>"$dir/ssh_config"
		say "$host: ssh on 127.0.0.1:$port, lab IP $ip"
	done

	if [ "$mode" = kms ]; then
		umask 077
		"$kmsim" --soft-hsm >"$dir/hsm.key"
		"$kmsim" identity >"$work/admin.txt"
		awk '/^API Key:/ {print $3}' "$work/admin.txt" >"$dir/api.key"
		identity=$(awk '/^Identity:/ {print $2}' "$work/admin.txt")
		rm -f "$work/admin.txt"
		local -a certs=()
		for i in "${!names[@]}"; do certs+=("${names[$i]}=${ips[$i]}"); done
		"$work/kmsdemo" certs "$dir" "${certs[@]}" >/dev/null
		# A snapshot of the simulator: a rebuild of bin/ would otherwise change the install.
		cp "$kmsim" "$dir/minkms"
		say "made the lab's HSM key, admin API key, CA and node certificates (in $show/)"
	fi

	{
		printf '%s: %s, %d hosts\nall:\n  vars:\n' "$header" "$name" "$n"
		printf '    ansible_user: root\n    ansible_ssh_private_key_file: %s\n    kms_ssh_known_hosts: %s\n' \
			"$dir/id_ed25519" "$dir/known_hosts"
		printf '    kms_api: ssh # the API is reached through each node'"'"'s SSH connection\n'
		if [ "$mode" = kms ]; then
			printf '    kms_ca_file: %s\n' "$dir/ca.crt"
			printf '    kms_api_key_file: %s # the Key Manager modules read the keys from these 0600 files\n    kms_hsm_key_file: %s\n' \
				"$dir/api.key" "$dir/hsm.key"
			printf '    # for e2e/lab/install-minkms.yml (e2e/lab.sh install); the HSM key is in hsm.key\n'
			printf '    minkms_admin_identity: "%s"\n    lab_files: %s\n    minkms_src: %s\n' \
				"$identity" "$dir" "$dir/minkms"
			printf '    # the node files kmsctl recover node installs (each node'"'"'s own certificate below)\n'
			printf '    kms_binary_src: %s\n    kms_ca_src: %s\n' "$dir/minkms" "$dir/ca.crt"
			printf '    # no kms_config_src: a node'"'"'s config is kept, or rendered from the built-in\n'
			printf '    # templates/minkms.config.j2 where it is missing (kms_config_from: peer copies a survivor'"'"'s instead)\n'
		fi
		printf '  children:\n    kms:\n      hosts:\n'
		for i in "${!names[@]}"; do
			printf '        %s:\n          ansible_host: 127.0.0.1\n          ansible_port: %s\n          kms_endpoint: %s:%s\n          kms_lab_ip: %s\n' \
				"${names[$i]}" "${ports[$i]}" "${names[$i]}" "$kms_port" "${ips[$i]}"
			if [ "$mode" = kms ]; then
				printf '          kms_tls_cert_src: %s\n          kms_tls_key_src: %s\n' "$dir/${names[$i]}.crt" "$dir/${names[$i]}.key"
			fi
		done
	} >"$dir/inventory.yml"
	chmod 600 "$dir"/*

	for host in "${names[@]}"; do
		for _ in $(seq 300); do
			ssh -F "$dir/ssh_config" -o BatchMode=yes -o ConnectTimeout=5 "$host" true 2>/dev/null && break
			sleep 0.5
		done
		ssh -F "$dir/ssh_config" -o BatchMode=yes "$host" true || fail "$host: sshd did not answer"
	done
	lab_nodes=("${names[@]}")
}

# install runs e2e/lab/install-minkms.yml on the lab, with the HSM key in a 0600 extra-vars
# file that lives only as long as the run.
install() {
	[ -f "$dir/hsm.key" ] || fail "no Key Manager lab in $dir: e2e/lab.sh kms (make lab) makes one"
	(
		umask 077
		printf 'minkms_hsm_key: "%s"\n' "$(<"$dir/hsm.key")" >"$work/secrets.yml"
	)
	"$kmsctl" -i "$dir/inventory.yml" play "$root/e2e/lab/install-minkms.yml" -e "@$work/secrets.yml" "$@"
	rm -f "$work/secrets.yml"
}

build_kmsdemo() {
	(cd "$root" && go build -o "$work/kmsdemo" ./e2e/lab/kmsdemo)
}

kms() {
	local n=${1:-3}
	build_kmsdemo
	start "$n" kms
	say $'\n--- install minkms.service on every node (e2e/lab.sh install: kmsctl play e2e/lab/install-minkms.yml)'
	install
	say $'\n--- join the nodes into one cluster (kmsdemo join: CLUSTER:ADDNODE through SSH tunnels)'
	MINIO_KMS_API_KEY=$(<"$dir/api.key") "$work/kmsdemo" join --ssh-config "$dir/ssh_config" --ca "$dir/ca.crt" "${lab_nodes[@]}"
	started=0
	[ "${LAB_HINT:-1}" = 0 ] || hint
}

up() {
	start "${1:-3}" bare
	started=0
	say "lab up: ${#lab_nodes[@]} bare hosts (no Key Manager); bin/kmsctl -i $show/inventory.yml ping; ssh -F $show/ssh_config kms1; $labsh down"
}

# line prints a command of the hint and what it does.
line() { printf '  %-60s # %s\n' "$1" "$2"; }

# hint prints what a person can do with a kms lab.
hint() {
	local nodes down="$labsh down"
	[ "$labsh" = e2e/lab.sh ] && down="make lab-down"
	nodes=$(awk '/^Host / {printf "%s ", $2}' "$dir/ssh_config")
	nodes=${nodes% }
	{
		printf '\nA Key Manager cluster of %s is up; its files are in %s/ (api.key is the admin API key).\nWhat now:\n' "$nodes" "$show"
		line "bin/kmsctl -i $show/inventory.yml ping" "every node over SSH"
		line "bin/kmsctl -i $show/inventory.yml inventory list" "the nodes and their variables"
		line "bin/kmsctl -i $show/inventory.yml play e2e/lab/kms-status.yml -v" "each node's view (kms_status), keys from the inventory's files"
		line "ssh -F $show/ssh_config kms1" "a shell on kms1 (systemctl status minkms)"
		line "ssh -F $show/ssh_config -N -L 17373:127.0.0.1:7373 kms1 &" "kms1's API on 127.0.0.1:17373 here"
		line "curl --cacert $show/ca.crt https://127.0.0.1:17373/version" "through the tunnel, TLS verified"
		line "curl --cacert $show/ca.crt 'https://localhost:17373/v1/health/ready?write'" "200: a leader, every node up"
		line "kill %1" "closes the tunnel"
		line "$labsh install --check --diff" "the install playbook again: changes nothing"
		line "$down" "removes the containers, the network and $show/"
		printf 'Each node'"'"'s view of the cluster, with the admin API key:\n'
		printf '  MINIO_KMS_API_KEY=$(cat %s/api.key) go run ./e2e/lab/kmsdemo status --ssh-config %s/ssh_config --ca %s/ca.crt %s\n' \
			"$show" "$show" "$show" "$nodes"
	} >&2
}

case "${1:-}" in
kms) shift; kms "$@" ;;
up) shift; up "$@" ;;
install) shift; install "$@" ;;
down) down ;;
status)
	docker ps -a --filter "label=$label"
	if [ -f "$dir/hsm.key" ]; then hint; fi
	;;
*) sed -n '2,28p' "$0" >&2; exit 1 ;;
esac
