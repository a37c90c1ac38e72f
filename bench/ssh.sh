#!/usr/bin/env bash
# bench/ssh.sh: kmsctl's SSH transport (remote package, driven by bench/cmd/sshbench) against
# OpenSSH's scp, sftp and ssh, on a private sshd started here on 127.0.0.1 (own config, own
# host key and authorized_keys in a temp dir; the system sshd is not touched) and stopped at
# the end. Prints medians of RUNS runs (default 5). Figures, not a test: nothing is asserted.
#
# Usage: bench/ssh.sh            (from the repository root; `make bench` does this)
# Env:   RUNS=5 SIZE_MIB=50 COMMANDS=100
#        CONCURRENCY=0,8 (SFTP requests in flight; 0 = kmsctl's default for the request size)
#        PACKETS=0,32768 (SFTP request sizes; 0 = kmsctl's choice, 255 KiB against OpenSSH 8.6+)
#        SSHBENCH=path of a prebuilt bench/cmd/sshbench (default: built here)
set -euo pipefail

RUNS=${RUNS:-5}
SIZE_MIB=${SIZE_MIB:-50}
COMMANDS=${COMMANDS:-100}
CONCURRENCY=${CONCURRENCY:-0,8}
PACKETS=${PACKETS:-0,32768}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ ! -x /usr/sbin/sshd ]; then
	echo "installing openssh-server (its service is not started: policy-rc.d)" >&2
	policy_created=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		policy_created=1
	fi
	apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >&2
	[ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
for tool in ssh scp sftp ssh-keygen python3; do
	command -v "$tool" >/dev/null || { echo "bench/ssh.sh needs $tool" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/kmsctl-bench.XXXXXX)
sshd_pid=""
bench_user=""
cleanup() {
	if [ -S "$dir/cm" ]; then ssh -F "$dir/ssh_config" -O exit bench 2>/dev/null || true; fi
	if [ -n "$sshd_pid" ]; then kill "$sshd_pid" 2>/dev/null || true; wait "$sshd_pid" 2>/dev/null || true; fi
	if [ -n "$bench_user" ]; then userdel "$bench_user" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$dir/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$dir/id_ed25519"
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" >"$dir/known_hosts"
mkdir -p "$dir/remote" /run/sshd
# The login user. As root, a throwaway user with /bin/sh as its shell: root's own shell may
# read a slow ~/.bashrc for every command (bash does so under sshd), which would measure the
# shell start-up, not the transport. Otherwise the current user (sshd then runs unprivileged).
if [ "$(id -u)" = 0 ]; then
	bench_user="kmsbench$$"
	# password "*": no password login, but not "locked" (sshd refuses locked accounts without PAM)
	useradd --no-create-home --home-dir "$dir/remote" --shell /bin/sh --password "*" "$bench_user"
	chmod 755 "$dir"
	chown "$bench_user" "$dir/remote"
	user=$bench_user
else
	user=$(id -un)
fi
cat >"$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1:$port
HostKey $dir/host_ed25519
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxSessions 1000
MaxStartups 1000
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel ERROR
EOF
/usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log" &
sshd_pid=$!

cat >"$dir/ssh_config" <<EOF
Host bench
  HostName 127.0.0.1
  Port $port
  User $user
  IdentityFile $dir/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ControlPath $dir/cm
  ControlMaster no
EOF
for _ in $(seq 50); do
	ssh -F "$dir/ssh_config" -o ControlPath=none bench true 2>/dev/null && break
	sleep 0.1
done

file="$dir/upload.bin"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$file"
bytes=$(stat -c %s "$file")

now() { date +%s%N; }
# median of numbers on stdin
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# time_runs CMD...: runs CMD $RUNS times (after one warm-up) and prints the median seconds
# Each timed run starts with no dirty pages (sync, outside the timing): the sshd is on this
# machine, so otherwise one tool's unsynced writes would be written back during the next
# one's runs (kmsctl's fsync would wait for scp's data).
time_runs() {
	"$@" >/dev/null
	for _ in $(seq "$RUNS"); do
		sync
		t0=$(now)
		"$@" >/dev/null
		t1=$(now)
		echo "scale=6; ($t1 - $t0) / 1000000000" | bc
	done | median | xargs printf '%.4f'
}
command -v bc >/dev/null || { echo "bench/ssh.sh needs bc" >&2; exit 1; }
mbps() { printf '%.1f' "$(echo "scale=3; $bytes / 1000000 / $1" | bc)"; }

S="ssh -F $dir/ssh_config"
scp_fresh() { scp -q -F "$dir/ssh_config" -o ControlPath=none "$file" "bench:$dir/remote/scp.bin"; }
scp_legacy_fresh() { scp -q -O -F "$dir/ssh_config" -o ControlPath=none "$file" "bench:$dir/remote/scp.bin"; }
sftp_fresh() { echo "put $file $dir/remote/sftp.bin" | sftp -q -F "$dir/ssh_config" -o ControlPath=none -b - bench; }
scp_open() { scp -q -F "$dir/ssh_config" "$file" "bench:$dir/remote/scp.bin"; }
scp_legacy_open() { scp -q -O -F "$dir/ssh_config" "$file" "bench:$dir/remote/scp.bin"; }
sftp_open() { echo "put $file $dir/remote/sftp.bin" | sftp -q -F "$dir/ssh_config" -b - bench; }
ssh_true_x() { for _ in $(seq "$COMMANDS"); do $S bench true; done; }

if [ -n "${SSHBENCH:-}" ]; then
	cp "$SSHBENCH" "$dir/sshbench"
else
	echo "building bench/cmd/sshbench" >&2
	go build -o "$dir/sshbench" ./bench/cmd/sshbench
fi

echo "measuring OpenSSH with a new connection per transfer" >&2
t_scp_fresh=$(time_runs scp_fresh)
t_scp_legacy_fresh=$(time_runs scp_legacy_fresh)
t_sftp_fresh=$(time_runs sftp_fresh)

echo "measuring OpenSSH over an open ControlMaster connection" >&2
$S -o ControlMaster=yes -o ControlPersist=yes -f -N bench
t_scp_open=$(time_runs scp_open)
t_scp_legacy_open=$(time_runs scp_legacy_open)
t_sftp_open=$(time_runs sftp_open)
t_ssh_mux=$(time_runs ssh_true_x)
ms_ssh_mux=$(echo "scale=2; $t_ssh_mux * 1000 / $COMMANDS" | bc)
$S -O exit bench 2>/dev/null || true

echo "measuring kmsctl (remote package), and kmsctl alternating with scp" >&2
$S -o ControlMaster=yes -o ControlPersist=yes -f -N bench
"$dir/sshbench" -port "$port" -user "$user" -key "$dir/id_ed25519" -known-hosts "$dir/known_hosts" \
	-file "$file" -dir "$dir/remote" -runs "$RUNS" -commands "$COMMANDS" -concurrency "$CONCURRENCY" -packets "$PACKETS" \
	-pair "scp -q -F $dir/ssh_config $file bench:$dir/remote/pair.bin" >"$dir/kmsctl.txt"
$S -O exit bench 2>/dev/null || true

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

echo
echo "kmsctl SSH transport vs OpenSSH $(ssh -V 2>&1 | cut -d, -f1) -- $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "sshd on 127.0.0.1 (same machine), ${SIZE_MIB} MiB file, median of $RUNS runs; MB = 10^6 bytes"
echo "kmsctl upload = temp file + concurrent SFTP writes + fsync + sha256 of what landed (on the host, OpenSSL) + rename"
echo
printf '%-58s %10s %10s\n' "Upload ${SIZE_MIB} MiB" "seconds" "MB/s"
printf '%-58s %10s %10s\n' "scp (SFTP protocol), new connection" "$t_scp_fresh" "$(mbps "$t_scp_fresh")"
printf '%-58s %10s %10s\n' "scp -O (legacy scp protocol), new connection" "$t_scp_legacy_fresh" "$(mbps "$t_scp_legacy_fresh")"
printf '%-58s %10s %10s\n' "sftp put, new connection" "$t_sftp_fresh" "$(mbps "$t_sftp_fresh")"
printf '%-58s %10s %10s\n' "scp (SFTP protocol), open ControlMaster connection" "$t_scp_open" "$(mbps "$t_scp_open")"
printf '%-58s %10s %10s\n' "scp -O, open ControlMaster connection" "$t_scp_legacy_open" "$(mbps "$t_scp_legacy_open")"
printf '%-58s %10s %10s\n' "sftp put, open ControlMaster connection" "$t_sftp_open" "$(mbps "$t_sftp_open")"
# what one kmsctl line measured: "open|new connection, REQUESTS x SIZE"
describe() {
	local mode conc packet
	mode=$(echo "$1" | field mode)
	conc=$(echo "$1" | field concurrency)
	packet=$(echo "$1" | field packet)
	[ "$conc" = 0 ] && conc=default
	if [ "$packet" = 0 ]; then packet="default size"; else packet="$((packet / 1024)) KiB"; fi
	echo "$( [ "$mode" = open ] && echo "open connection" || echo "new connection"), $conc x $packet"
}
while read -r line; do
	case "$line" in upload*) ;; *) continue ;; esac
	printf '%-58s %10s %10s\n' "kmsctl Upload, $(describe "$line")" "$(echo "$line" | field median_s)" "$(echo "$line" | field mb_per_s)"
done <"$dir/kmsctl.txt"
echo
pair=$(grep '^pair ' "$dir/kmsctl.txt")
echo "Paired (kmsctl's default upload and scp over the ControlMaster, alternately, $(echo "$pair" | field runs) runs each):"
printf '  kmsctl %ss (%s MB/s), scp %ss (%s MB/s): kmsctl at %sx of scp'"'"'s throughput (goal >= 0.9)\n' \
	"$(echo "$pair" | field kmsctl_median_s)" "$(echo "$pair" | field kmsctl_mb_per_s)" \
	"$(echo "$pair" | field other_median_s)" "$(echo "$pair" | field other_mb_per_s)" "$(echo "$pair" | field ratio)"
echo
echo "Ratios of the separate series above (kmsctl / scp, open connection; goal >= 0.9):"
scp_open_mbps=$(mbps "$t_scp_open")
while read -r line; do
	case "$line" in "upload mode=open"*) ;; *) continue ;; esac
	printf '  %-40s %.2fx of scp (SFTP), %.2fx of scp -O; remote sha256 alone: %ss\n' "$(describe "$line" | cut -d, -f2-):" \
		"$(echo "scale=3; $(echo "$line" | field mb_per_s) / $scp_open_mbps" | bc)" \
		"$(echo "scale=3; $(echo "$line" | field mb_per_s) / $(mbps "$t_scp_legacy_open")" | bc)" \
		"$(echo "$line" | field remote_sha256_s)"
done <"$dir/kmsctl.txt"
echo
k_ms=$(field median_ms_per_command <"$dir/kmsctl.txt")
printf '%-58s %10s\n' "$COMMANDS sequential \`true\` commands" "ms/command"
printf '%-58s %10s\n' "ssh through an open ControlMaster (multiplexed)" "$ms_ssh_mux"
printf '%-58s %10s\n' "kmsctl Run on one open connection" "$k_ms"
printf 'Ratio kmsctl / OpenSSH multiplexed: %.2f (goal <= 1)\n' "$(echo "scale=3; $k_ms / $ms_ssh_mux" | bc)"
