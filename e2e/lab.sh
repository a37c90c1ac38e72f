#!/usr/bin/env bash
# e2e/lab.sh: a local lab of Debian test-host containers (systemd + sshd, the e2e image) for
# trying kmsctl by hand. Unlike the e2e suite's harness, the lab stays up until `down`.
#
#   e2e/lab.sh kms [N]    (make lab) N hosts kms1..kmsN (default 3) running the Key Manager
#                         simulator (bin/kmsim) as minkms.service, joined into one cluster;
#                         LAB_SCRATCH=1 adds scratch1 (group scratch, nothing installed) for
#                         kmsctl drill (make bench-10k)
#   e2e/lab.sh up [N]     N bare hosts kms1..kmsN (no Key Manager)
#   e2e/lab.sh hosts [N]  N hosts kms1..kmsN with the Key Manager's files made here but nothing
#                         installed, and scratch1 (group scratch): for kmsctl provision, scale
#                         add and drill (make demo)
#   e2e/lab.sh replace HOST...
#                         new containers for HOST... with new SSH host keys (a lost machine
#                         replaced); the lab's known_hosts keeps the old keys; HOST.fingerprint
#                         in the lab directory holds HOST=SHA256:... for --expect-host-key
#   e2e/lab.sh trust HOST...
#                         the replaced hosts' new keys into the lab's known_hosts
#   e2e/lab.sh install [KMSCTL FLAGS]
#                         run e2e/lab/install-minkms.yml again on a kms lab with the lab's own
#                         files (for example --check --diff -e minkms_limit_nofile=131072)
#   e2e/lab.sh status     list the lab's containers and what to try
#   e2e/lab.sh down       (make lab-down) remove the lab's containers (by id), its network and
#                         the lab directory
#
# The hosts run on a private Docker network, where each is reachable as kmsN; their SSH ports
# are published on 127.0.0.1 only. The lab directory, ./lab (0700, every file 0600, minkms 0700), holds what
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

# start N MODE [SCRATCH] starts N hosts kms1..kmsN (and, with SCRATCH=1, a host scratch1
# outside the cluster's group, for kmsctl drill) and writes the lab directory; MODE kms also
# makes the Key Manager's secrets and certificates and names them in the inventory.
start() {
	local n=$1 mode=$2 scratch=${3:-0} i host identity
	[[ $n =~ ^[1-9][0-9]?$ ]] || fail "N must be a number from 1 to 99, got \"$n\""
	if [ -n "$(docker ps -aq --filter "label=$label")" ] || [ -e "$dir" ]; then
		fail "a lab is already up, or $dir is left over: make lab-down (e2e/lab.sh down) first"
	fi
	if [ "$mode" = kms ]; then
		[ -x "$kmsctl" ] && [ -x "$kmsim" ] || fail "$kmsctl and $kmsim are missing: make build first"
	fi
	lab_image
	started=1 # from here on, a failure removes what was started
	mkdir -m 700 "$dir"
	ssh-keygen -q -t ed25519 -N '' -C kmsctl-lab -f "$dir/id_ed25519"
	: >"$dir/known_hosts"
	docker network create --label "$label" "$name" >/dev/null

	local -a names=()
	for i in $(seq "$n"); do names+=("kms$i"); done
	[ "$scratch" = 1 ] && names+=(scratch1)
	for host in "${names[@]}"; do
		create_host "$host"
		echo "$host_key_line" >>"$dir/known_hosts"
	done

	if [ "$mode" = kms ]; then
		umask 077
		"$kmsim" --soft-hsm >"$dir/hsm.key"
		"$kmsim" identity >"$work/admin.txt"
		awk '/^API Key:/ {print $3}' "$work/admin.txt" >"$dir/api.key"
		identity=$(awk '/^Identity:/ {print $2}' "$work/admin.txt")
		printf '%s\n' "$identity" >"$dir/admin.identity" # not a secret: the key's public identity
		rm -f "$work/admin.txt"
		local -a certs=()
		for host in "${names[@]}"; do certs+=("$host=$(host_ip "$host")"); done
		"$work/kmsdemo" certs "$dir" "${certs[@]}" >/dev/null
		# A snapshot of the simulator: a rebuild of bin/ would otherwise change the install.
		cp "$kmsim" "$dir/minkms"
		say "made the lab's HSM key, admin API key, CA and node certificates (in $show/)"
	fi
	printf '%s\n' "$mode" >"$dir/mode"
	write_config
	for host in "${names[@]}"; do wait_ssh "$host"; done
	lab_nodes=("${names[@]}")
	[ "$scratch" = 1 ] && unset 'lab_nodes[${#lab_nodes[@]}-1]'
	return 0
}

# lab_image sets image to the test-host image's tag (built if needed) and cgroup to the
# docker create options that let systemd boot.
lab_image() {
	image=$("$root/e2e/image/build.sh")
	if [ "$(docker info --format '{{.CgroupVersion}}')" = 2 ]; then
		cgroup=(--cgroupns=private)
	else
		cgroup=(-v /sys/fs/cgroup:/sys/fs/cgroup:ro)
	fi
}

# create_host HOST creates and starts HOST's container with a new SSH host key and the lab's
# client key authorized for root; host_key_line is then its known_hosts line.
create_host() {
	local host=$1 id port ip
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
	if [ "$(docker inspect --format '{{.State.Running}}' "$id")" != true ] || [ -z "$(host_port "$host")" ]; then
		docker logs --tail 20 "$id" >&2 || true
		fail "$host: its container stopped right after it started (its log is above; a machine short of memory or processes?)"
	fi
	port=$(host_port "$host")
	ip=$(host_ip "$host")
	host_key_line="[127.0.0.1]:$port,$ip,$host $(cut -d' ' -f1,2 "$work/fs/etc/ssh/ssh_host_ed25519_key.pub")"
	host_fingerprint=$(ssh-keygen -lf "$work/fs/etc/ssh/ssh_host_ed25519_key.pub" | awk '{print $2}')
	say "$host: ssh on 127.0.0.1:$port, lab IP $ip, host key $host_fingerprint"
}

host_port() {
	local port
	port=$(docker port "$name-$1" 22/tcp 2>/dev/null | head -n1)
	echo "${port##*:}"
}
host_ip() { docker inspect --format "{{(index .NetworkSettings.Networks \"$name\").IPAddress}}" "$name-$1"; }

# lab_hosts prints the lab's host names (kms1..kmsN, then scratch hosts), from its containers.
lab_hosts() {
	docker ps -a --filter "label=$label" --format '{{.Names}}' | sed "s/^$name-//" | sort -V
}

wait_ssh() {
	for _ in $(seq 300); do
		ssh -F "$dir/ssh_config" -o BatchMode=yes -o ConnectTimeout=5 "$1" true 2>/dev/null && return 0
		sleep 0.5
	done
	ssh -F "$dir/ssh_config" -o BatchMode=yes "$1" true || fail "$1: sshd did not answer"
}

# write_config writes ssh_config and inventory.yml for the lab's containers as they are now
# (a replaced container has a new SSH port).
write_config() {
	local mode host port ip n=0 identity
	mode=$(<"$dir/mode")
	local -a hosts=()
	mapfile -t hosts < <(lab_hosts)
	printf '%s\n' "$header" >"$dir/ssh_config"
	for host in "${hosts[@]}"; do
		printf '\nHost %s\n  HostName 127.0.0.1\n  Port %s\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n' \
			"$host" "$(host_port "$host")" "$dir/id_ed25519" "$dir/known_hosts" >>"$dir/ssh_config"
		[[ $host == kms* ]] && n=$((n + 1))
	done
	{
		printf '%s: %s, %d hosts\nall:\n  vars:\n' "$header" "$name" "$n"
		printf '    ansible_user: root\n    ansible_ssh_private_key_file: %s\n    kms_ssh_known_hosts: %s\n' \
			"$dir/id_ed25519" "$dir/known_hosts"
		printf '    kms_api: ssh # the API is reached through each node'"'"'s SSH connection\n'
		if [ "$mode" = kms ]; then
			identity=$(<"$dir/admin.identity")
			printf '    kms_ca_file: %s\n' "$dir/ca.crt"
			printf '    kms_api_key_file: %s # the Key Manager modules read the keys from these 0600 files\n    kms_hsm_key_file: %s\n' \
				"$dir/api.key" "$dir/hsm.key"
			printf '    # for e2e/lab/install-minkms.yml (e2e/lab.sh install); the HSM key is in hsm.key\n'
			printf '    minkms_admin_identity: "%s"\n    lab_files: %s\n    minkms_src: %s\n' \
				"$identity" "$dir" "$dir/minkms"
			printf '    # the node files kmsctl recover node installs (each node'"'"'s own certificate below)\n'
			printf '    # no kms_config_src: a node'"'"'s config is kept, or rendered from the built-in\n'
			printf '    # templates/minkms.config.j2 where it is missing (kms_config_from: peer copies a survivor'"'"'s instead)\n'
			printf '    kms_binary_src: %s\n    kms_ca_src: %s\n' "$dir/minkms" "$dir/ca.crt"
		fi
		printf '  children:\n'
		for group in kms scratch; do
			local first=1
			for host in "${hosts[@]}"; do
				case "$group:$host" in kms:kms* | scratch:scratch*) ;; *) continue ;; esac
				if [ "$first" = 1 ]; then
					printf '    %s:\n      hosts:\n' "$group"
					first=0
				fi
				printf '        %s:\n          ansible_host: 127.0.0.1\n          ansible_port: %s\n          kms_endpoint: %s:%s\n          kms_lab_ip: %s\n' \
					"$host" "$(host_port "$host")" "$host" "$kms_port" "$(host_ip "$host")"
				if [ "$mode" = kms ]; then
					printf '          kms_tls_cert_src: %s\n          kms_tls_key_src: %s\n' "$dir/$host.crt" "$dir/$host.key"
				fi
			done
		done
	} >"$dir/inventory.yml"
	find "$dir" -maxdepth 1 -type f -exec chmod 600 {} +
	# kms_binary_src: recover node runs it here (--version) to compare with the survivors'
	[ ! -f "$dir/minkms" ] || chmod 700 "$dir/minkms"
}

# replace HOST... removes each HOST's container and creates a new one with the same name and a
# NEW SSH host key, as when a lost machine is replaced: nothing of the Key Manager on it. The
# lab's known_hosts keeps the OLD key (as a person's would), so kmsctl refuses the new one until
# it is named (--expect-host-key HOST=SHA256:..., printed here and kept in HOST.hostkey); `trust`
# then puts the new keys into the lab's known_hosts for ssh and kmsdemo.
replace() {
	[ -f "$dir/mode" ] || fail "no lab in $dir: e2e/lab.sh kms (make lab) or hosts makes one"
	[ $# -gt 0 ] || fail "replace: name the hosts to replace (kms1 ...)"
	lab_image
	local host id
	for host in "$@"; do
		id=$(docker ps -aq --filter "label=$label" --filter "name=^$name-$host\$")
		[ -n "$id" ] || fail "replace: $host is not a host of the lab ($(lab_hosts | tr '\n' ' '))"
		docker rm -f -v "$id" >/dev/null
		create_host "$host"
		printf '%s\n' "$host_key_line" >"$dir/$host.hostkey"
		printf '%s=%s\n' "$host" "$host_fingerprint" >"$dir/$host.fingerprint"
	done
	write_config
	for host in "$@"; do
		for _ in $(seq 300); do
			ssh -F "$dir/ssh_config" -o BatchMode=yes -o ConnectTimeout=5 -o UserKnownHostsFile="$dir/$host.hostkey" "$host" true 2>/dev/null && break
			sleep 0.5
		done
	done
	say "replaced $*: new containers, new host keys (the lab's known_hosts still has the old ones: $labsh trust $* takes the new)"
}

# trust HOST... replaces each HOST's line in the lab's known_hosts by the key its replacement has.
trust() {
	local host
	for host in "$@"; do
		[ -f "$dir/$host.hostkey" ] || fail "trust: $host was not replaced ($labsh replace $host)"
		grep -v ",$host " "$dir/known_hosts" >"$work/known_hosts" || true
		cat "$dir/$host.hostkey" >>"$work/known_hosts"
		cat "$work/known_hosts" >"$dir/known_hosts"
		rm -f "$dir/$host.hostkey" "$dir/$host.fingerprint"
	done
	say "the lab's known_hosts now has the new host keys of $*"
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
	local n=${1:-3} scratch=${LAB_SCRATCH:-0}
	local -a limit=()
	[[ $scratch =~ ^[01]$ ]] || fail "LAB_SCRATCH must be 0 or 1, got \"$scratch\""
	build_kmsdemo
	start "$n" kms "$scratch"
	# scratch1 gets nothing installed: kmsctl drill provisions it and refuses one that answers
	[ "$scratch" = 0 ] || limit=(--limit kms)
	say $'\n--- install minkms.service on every node (e2e/lab.sh install: kmsctl play e2e/lab/install-minkms.yml)'
	install "${limit[@]}"
	say $'\n--- join the nodes into one cluster (kmsdemo join: CLUSTER:ADDNODE through SSH tunnels)'
	MINIO_KMS_API_KEY=$(<"$dir/api.key") "$work/kmsdemo" join --ssh-config "$dir/ssh_config" --ca "$dir/ca.crt" "${lab_nodes[@]}"
	started=0
	[ "${LAB_HINT:-1}" = 0 ] || hint
}

# hosts N: the hosts of a kms lab (files, certificates, inventory) with nothing installed, and
# scratch1 outside the cluster's group: for kmsctl provision and scale add (make demo).
hosts() {
	build_kmsdemo
	start "${1:-3}" kms 1
	started=0
	say "lab up: ${#lab_nodes[@]} hosts with nothing installed, and scratch1; bin/kmsctl -i $show/inventory.yml provision ${lab_nodes[*]}"
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
	nodes=$(awk '/^Host kms/ {printf "%s ", $2}' "$dir/ssh_config")
	nodes=${nodes% }
	{
		printf '\nA Key Manager cluster of %s is up; its files are in %s/ (api.key is the admin API key).\n' "$nodes" "$show"
		if grep -q '^Host scratch1$' "$dir/ssh_config"; then
			printf 'scratch1 (group scratch) has nothing installed: bin/kmsctl -i %s/inventory.yml backup, then drill --scratch scratch1\n' "$show"
		fi
		printf 'What now:\n'
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
hosts) shift; hosts "$@" ;;
replace) shift; replace "$@" ;;
trust) shift; trust "$@" ;;
install) shift; install "$@" ;;
down) down ;;
status)
	docker ps -a --filter "label=$label"
	if [ -f "$dir/hsm.key" ]; then hint; fi
	;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 1 ;;
esac
