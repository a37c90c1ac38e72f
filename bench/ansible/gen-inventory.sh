#!/usr/bin/env bash
# bench/ansible/gen-inventory.sh: writes the benchmark inventory, in Ansible's YAML shape, which
# both ansible-playbook and kmsctl read. One host per sshd instance, each with its own
# ansible_port and its own working directory `base` (HOSTS_ROOT/NAME), so every sshd instance
# acts as a separate host.
#
# Usage: gen-inventory.sh USER KEY SRC_DIR HOSTS_ROOT < LINES > inventory.yml
#   LINES: one "NAME PORT" per host; KEY: the client's private key; SRC_DIR: where the local
#   files to copy are (bench_src).
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 USER KEY SRC_DIR HOSTS_ROOT < NAME-PORT-LINES" >&2; exit 1; }
user=$1 key=$2 src=$3 hosts_root=$4
cat <<YAML
all:
  vars:
    ansible_user: $user
    ansible_ssh_private_key_file: $key
    bench_src: $src
  hosts:
YAML
while read -r name port; do
	[ -n "$name" ] || continue
	cat <<YAML
    $name:
      ansible_host: 127.0.0.1
      ansible_port: $port
      base: $hosts_root/$name
YAML
done
