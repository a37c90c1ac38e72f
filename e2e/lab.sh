#!/usr/bin/env bash
# e2e/lab.sh: a local lab of Debian test-host containers (systemd + sshd, the e2e image) for
# trying kmsctl by hand. Unlike the e2e suite's harness, the lab stays up until `down`.
#
#   e2e/lab.sh up [N]   start N hosts (default 3) kms1..kmsN on a private Docker network, SSH
#                       published on 127.0.0.1, and write into ./lab/: id_ed25519 (client key),
#                       known_hosts (each host's own key, generated here), ssh_config,
#                       inventory.yml (group kms)
#   e2e/lab.sh down     remove the lab's containers and network (by label)
#   e2e/lab.sh status   list the lab's containers
#
# Then: bin/kmsctl -i lab/inventory.yml ping   or   ssh -F lab/ssh_config kms1
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/lab"
label="kmsctl-lab=1"
net="kmsctl-lab"

down() {
	ids=$(docker ps -aq --filter "label=$label")
	[ -n "$ids" ] && docker rm -f -v $ids >/dev/null
	if docker network inspect "$net" >/dev/null 2>&1; then docker network rm "$net" >/dev/null; fi
	echo "lab removed" >&2
}

up() {
	n=${1:-3}
	if [ -n "$(docker ps -aq --filter "label=$label")" ]; then
		echo "a lab is already up: e2e/lab.sh down first" >&2
		exit 1
	fi
	image=$("$root/e2e/image/build.sh")
	if [ "$(docker info --format '{{.CgroupVersion}}')" = 2 ]; then
		cgroup=(--cgroupns=private)
	else
		cgroup=(-v /sys/fs/cgroup:/sys/fs/cgroup:ro)
	fi
	mkdir -p "$dir"
	rm -f "$dir/id_ed25519" "$dir/id_ed25519.pub"
	ssh-keygen -q -t ed25519 -N '' -C kmsctl-lab -f "$dir/id_ed25519"
	: >"$dir/known_hosts"
	printf '# written by e2e/lab.sh\n' >"$dir/ssh_config"
	printf '# written by e2e/lab.sh\nall:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: %s\n    kms_ssh_known_hosts: %s\n  children:\n    kms:\n      hosts:\n' \
		"$dir/id_ed25519" "$dir/known_hosts" >"$dir/inventory.yml"
	docker network create --label "$label" "$net" >/dev/null

	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	for i in $(seq "$n"); do
		name="kms$i"
		port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		rm -rf "$work/fs" && mkdir -p "$work/fs/etc/ssh" "$work/fs/root/.ssh"
		ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$work/fs/etc/ssh/ssh_host_ed25519_key"
		cp "$dir/id_ed25519.pub" "$work/fs/root/.ssh/authorized_keys"
		chmod 700 "$work/fs/root/.ssh"
		chmod 600 "$work/fs/root/.ssh/authorized_keys"
		id=$(docker create --name "kmsctl-lab-$name" --hostname "$name" --label "$label" \
			--network "$net" --network-alias "$name" -p "127.0.0.1:$port:22" \
			--tmpfs /run --tmpfs /run/lock --stop-signal SIGRTMIN+3 "${cgroup[@]}" "$image" /sbin/init)
		tar -C "$work/fs" --owner=0 --group=0 -c . | docker cp - "$id:/"
		docker start "$id" >/dev/null
		ip=$(docker inspect --format "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$id")
		echo "[127.0.0.1]:$port,$ip,$name $(cut -d' ' -f1,2 "$work/fs/etc/ssh/ssh_host_ed25519_key.pub")" >>"$dir/known_hosts"
		printf '\nHost %s\n  HostName 127.0.0.1\n  Port %s\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n' \
			"$name" "$port" "$dir/id_ed25519" "$dir/known_hosts" >>"$dir/ssh_config"
		printf '        %s:\n          ansible_host: 127.0.0.1\n          ansible_port: %s\n          kms_lab_ip: %s\n' \
			"$name" "$port" "$ip" >>"$dir/inventory.yml"
		echo "$name: ssh on 127.0.0.1:$port, lab IP $ip" >&2
	done
	for i in $(seq "$n"); do
		for _ in $(seq 300); do
			ssh -F "$dir/ssh_config" -o BatchMode=yes -o ConnectTimeout=5 "kms$i" true 2>/dev/null && break
			sleep 0.5
		done
		ssh -F "$dir/ssh_config" -o BatchMode=yes "kms$i" true || { echo "kms$i: sshd did not answer" >&2; exit 1; }
	done
	echo "lab up: bin/kmsctl -i lab/inventory.yml ping; ssh -F lab/ssh_config kms1; e2e/lab.sh down" >&2
}

case "${1:-}" in
up) shift; up "$@" ;;
down) down ;;
status) docker ps -a --filter "label=$label" ;;
*) sed -n '2,13p' "$0" >&2; exit 1 ;;
esac
