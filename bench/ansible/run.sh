#!/usr/bin/env bash
# bench/ansible/run.sh: kmsctl against Ansible (default and tuned) and a hand-written parallel
# OpenSSH script (openssh.sh), running the same playbook (site-ansible.yml / site-kmsctl.yml)
# on N = 1, 3, 10 and 50 hosts. Each host is its own OpenSSH sshd instance started here on a
# free 127.0.0.1 port (own sshd_config, own host key, a generated client key in its
# authorized_keys, UsePAM no), with its own directory BENCH_DIR/hostNN; all are stopped at the
# end. Every timed run starts from empty host directories (the full work), and Ansible starts
# without a ControlMaster left over from the previous run. Each run's controller (ansible-playbook
# with its workers and its ssh ControlMasters; kmsctl; the script with its ssh/scp clients) runs
# in a cgroup of its own (bench/cgroup.sh), so its CPU time is counted and the hosts' sshd, sftp-
# server and commands are not. Prints the median wall time and the median controller CPU time
# (user + system) of several runs per tool and N, the CPU per host, the ratios, and the load
# average before and after each figure's runs. Figures, not a test.
#
# Usage: bench/ansible/run.sh          (as root, from anywhere; `make bench-ansible`)
# Env:   NS="1 3 10 50"  RUNS=5 (runs per figure)  RUNS_MAX=3 (runs at the largest N)
#        TOOLS="ansible-default ansible-tuned kmsctl openssh"  SECOND=1 (the second-run figure)
#        KMSCTL=path of the kmsctl binary (default ./bin/kmsctl, built by `make build` if absent)
#        ANSIBLE_RUNS=$RUNS (runs per Ansible figure: it is slow)  SKIP="ansible-default:50" (TOOL:N
#        pairs not run)  LOGS=DIR (keep every run's output there)
#        BENCH_DIR=/tmp/kmsbench (wiped at start and end; under /tmp or /dev/shm: /dev/shm puts the
#        hosts' files on tmpfs, where fsync costs nothing)  SIZE_MIB=50
#        PROFILE=FILE: after the figures, one more kmsctl run at N=10 (or the largest N) from a
#        build of this tree with -tags benchprofile, its CPU profile written to FILE and the top
#        of `go tool pprof -top` printed (the binary is kept as FILE.bin)
set -euo pipefail

NS=${NS:-1 3 10 50}
RUNS=${RUNS:-5}
RUNS_MAX=${RUNS_MAX:-3}
TOOLS=${TOOLS:-ansible-default ansible-tuned kmsctl openssh}
SECOND=${SECOND:-1}
ANSIBLE_RUNS=${ANSIBLE_RUNS:-$RUNS}
SKIP=${SKIP:-}
LOGS=${LOGS:-}
SIZE_MIB=${SIZE_MIB:-50}
B=${BENCH_DIR:-/tmp/kmsbench}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../cgroup.sh
. "$here/../cgroup.sh"

[ "$(id -u)" = 0 ] || { echo "run.sh must run as root (it starts sshd instances and adds a user)" >&2; exit 1; }
case "$B" in /tmp/?* | /dev/shm/?*) ;; *) echo "BENCH_DIR must be under /tmp or /dev/shm" >&2; exit 1 ;; esac
cg_init

# --- tools -------------------------------------------------------------------------------
need=()
command -v ansible-playbook >/dev/null || need+=(ansible)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null && command -v scp >/dev/null || need+=(openssh-client)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing from Debian's archive: ${need[*]}" >&2
	policy_created=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then # do not start the system sshd
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		policy_created=1
	fi
	apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
	[ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
KMSCTL=${KMSCTL:-$root/bin/kmsctl}
if [ ! -x "$KMSCTL" ]; then
	echo "building kmsctl" >&2
	make -C "$root" build >&2
fi

# --- hosts -------------------------------------------------------------------------------
max_n=0
for n in $NS; do [ "$n" -gt "$max_n" ] && max_n=$n; done
user=kmsbench
ctl=$B/ctl
pids=()
added_user=0
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	for s in "$B"/cp.*/* "$ctl"/cm/*; do
		[ -S "$s" ] && ssh -o ControlPath="$s" -O exit x 2>/dev/null || true
	done
	[ "$added_user" = 1 ] && userdel "$user" 2>/dev/null || true
	rm -rf "$B"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$B"
mkdir -p "$ctl/src" "$ctl/cm" "$B/home" /run/sshd
chmod 755 "$B"
if ! id "$user" >/dev/null 2>&1; then
	# /bin/sh, not bash: bash reads ~/.bashrc for every command run through sshd.
	# Password "*": no password login, but not locked (sshd refuses locked accounts without PAM).
	useradd --no-create-home --home-dir "$B/home" --shell /bin/sh --password '*' "$user"
	added_user=1
fi
chown "$user" "$B/home"
# a copy of the binary: ./bin/kmsctl may be rebuilt while the benchmark runs
cp "$KMSCTL" "$ctl/kmsctl"
KMSCTL=$ctl/kmsctl
kmsctl_version=$("$KMSCTL" version 2>/dev/null | head -1)
kmsctl_commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (work tree with uncommitted changes)')

ssh-keygen -q -t ed25519 -N '' -C kmsbench-client -f "$ctl/id_ed25519"
cp "$ctl/id_ed25519.pub" "$ctl/authorized_keys"
: >"$ctl/known_hosts"
: >"$ctl/ports"
python3 - "$max_n" >"$ctl/ports" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
i=0
while read -r port; do
	i=$((i + 1))
	name=$(printf 'host%02d' "$i")
	d=$ctl/sshd/$name
	mkdir -p "$d"
	ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$d/host_ed25519"
	echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$d/host_ed25519.pub")" >>"$ctl/known_hosts"
	cat >"$d/sshd_config" <<CFG
ListenAddress 127.0.0.1:$port
HostKey $d/host_ed25519
AuthorizedKeysFile $ctl/authorized_keys
PidFile $d/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxSessions 200
MaxStartups 200:30:400
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel ERROR
CFG
	/usr/sbin/sshd -D -f "$d/sshd_config" -E "$d/sshd.log" &
	pids+=($!)
	echo "$name $port" >>"$ctl/hostports"
done <"$ctl/ports"

# Local files to copy: a 1 KiB config, a 2 KiB certificate, a SIZE_MIB binary (random bytes).
head -c 1024 /dev/urandom | base64 -w 64 | head -c 1024 >"$ctl/src/config.yaml"
head -c 2048 /dev/urandom | base64 -w 64 | head -c 2048 >"$ctl/src/cert.pem"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$ctl/src/minkms"
chmod 644 "$ctl/src"/*

# inventory.N.yml and hosts.N (NAME PORT BASE, for openssh.sh) for every N
for n in $NS; do
	head -n "$n" "$ctl/hostports" | "$here/gen-inventory.sh" "$user" "$ctl/id_ed25519" "$ctl/src" "$B" >"$ctl/inventory.$n.yml"
	head -n "$n" "$ctl/hostports" | while read -r name port; do echo "$name $port $B/$name"; done >"$ctl/hosts.$n"
done

# wait until every sshd answers (and check the key, the user and the known_hosts file)
ssh_opts=(-o IdentitiesOnly=yes -i "$ctl/id_ed25519" -o "UserKnownHostsFile=$ctl/known_hosts"
	-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o ControlPath=none)
while read -r name port; do
	ok=0
	for _ in $(seq 50); do
		if ssh "${ssh_opts[@]}" -p "$port" "$user@127.0.0.1" true 2>/dev/null; then ok=1; break; fi
		sleep 0.1
	done
	[ "$ok" = 1 ] || { echo "sshd $name on port $port does not answer:" >&2; cat "$ctl/sshd/$name/sshd.log" >&2; exit 1; }
done <"$ctl/hostports"
echo "$max_n sshd instances up" >&2

# --- Ansible configurations -----------------------------------------------------------------
# Both: no system ansible.cfg, our known_hosts (ssh_common_args: appended, keeps the ssh_args).
# Default: Ansible's defaults (forks 5, ssh_args "-C -o ControlMaster=auto -o ControlPersist=60s",
# no pipelining, interpreter discovery). Tuned: pipelining, ControlMaster auto with
# ControlPersist 60s and no compression, forks N (-f), python interpreter set (no discovery).
printf '[defaults]\n' >"$ctl/ansible-default.cfg"
cat >"$ctl/ansible-tuned.cfg" <<CFG
[defaults]
interpreter_python = /usr/bin/python3
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s
CFG
export ANSIBLE_SSH_COMMON_ARGS="-o UserKnownHostsFile=$ctl/known_hosts -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes"
export ANSIBLE_NOCOLOR=1 ANSIBLE_LOCAL_TEMP=$ctl/ansible-local ANSIBLE_RETRY_FILES_ENABLED=0

# --- runs ----------------------------------------------------------------------------------
now() { date +%s%N; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }

# clean N: host directories as a previous run left them without its copies: the small-files
# directory full (so deleting it is real work), no config, certificate or binary; outside the timing
clean() {
	head -n "$1" "$ctl/hostports" | while read -r name _; do
		rm -rf "${B:?}/$name"
		install -d -o "$user" "$B/$name" "$B/$name/small"
		for i in $(seq 1 100); do echo "old small file $i" >"$B/$name/small/f$i.txt"; done
		chown -R "$user" "$B/$name/small"
	done
}

# verify N: the result on disk is what the playbook asks for, outside the timing
verify() {
	local name bad=0
	while read -r name _; do
		local h=$B/$name
		[ "$(find "$h/small" -maxdepth 1 -name 'f*.txt' | wc -l)" = 100 ] || { echo "$name: not 100 small files" >&2; bad=1; }
		[ "$(cat "$h/small/f100.txt")" = "small file 100" ] || { echo "$name: small files not recreated" >&2; bad=1; }
		cmp -s "$ctl/src/minkms" "$h/minkms" || { echo "$name: binary differs" >&2; bad=1; }
		cmp -s "$ctl/src/config.yaml" "$h/config.yaml" || { echo "$name: config differs" >&2; bad=1; }
		cmp -s "$ctl/src/cert.pem" "$h/cert.pem" || { echo "$name: cert differs" >&2; bad=1; }
		[ "$(stat -c %a "$h/config.yaml" "$h/cert.pem" "$h/minkms" | tr '\n' ' ')" = "600 600 755 " ] || { echo "$name: wrong modes" >&2; bad=1; }
	done < <(head -n "$1" "$ctl/hostports")
	return $bad
}

# close_masters DIR: ControlMasters Ansible left (ControlPersist), so the next run starts cold
close_masters() {
	for s in "$1"/*; do [ -S "$s" ] && ssh -o ControlPath="$s" -O exit x 2>/dev/null || true; done
	rm -rf "$1"
}

# invoke TOOL N LOG: one run of TOOL on N hosts
invoke() {
	local tool=$1 n=$2 log=$3
	case $tool in
	ansible-default)
		ANSIBLE_CONFIG=$ctl/ansible-default.cfg ANSIBLE_SSH_CONTROL_PATH_DIR=$cpdir \
			ansible-playbook -i "$ctl/inventory.$n.yml" "$here/site-ansible.yml" >"$log" 2>&1 ;;
	ansible-tuned)
		ANSIBLE_CONFIG=$ctl/ansible-tuned.cfg ANSIBLE_SSH_CONTROL_PATH_DIR=$cpdir \
			ansible-playbook -f "$n" -i "$ctl/inventory.$n.yml" "$here/site-ansible.yml" >"$log" 2>&1 ;;
	kmsctl)
		"$KMSCTL" play "$here/site-kmsctl.yml" -i "$ctl/inventory.$n.yml" --forks "$n" \
			--known-hosts "$ctl/known_hosts" >"$log" 2>&1 ;;
	openssh)
		"$here/openssh.sh" "$ctl/hosts.$n" "$ctl/id_ed25519" "$ctl/known_hosts" "$user" "$ctl/src" "$cpdir" >"$log" 2>&1 ;;
	esac
}

# timed TOOL N FRESH: "WALL CPU" of one run (FRESH=1: from empty host directories), after
# checks: wall seconds, and the controller's CPU seconds in its own cgroup (the ControlMasters
# of Ansible and the script included: they are closed, and counted, before the figure is read)
cg_seq=0
timed() {
	local tool=$1 n=$2 fresh=$3 log=$ctl/last.log t0 t1 rc=0 cg usec
	[ "$fresh" = 1 ] && clean "$n"
	cpdir=$(mktemp -d "$B/cp.XXXXXX")
	cg_seq=$((cg_seq + 1))
	cg=$tool-$n-$cg_seq
	sync
	t0=$(now)
	cg_run "$cg" invoke "$tool" "$n" "$log" || rc=$?
	t1=$(now)
	close_masters "$cpdir"
	usec=$(cg_done "$cg") || exit 1
	[ -n "$LOGS" ] && mkdir -p "$LOGS" && cp "$log" "$LOGS/$tool-$n-$(date +%H%M%S%N).log"
	if [ "$rc" != 0 ]; then
		echo "$tool on $n hosts failed (exit $rc); its output:" >&2
		tail -n 40 "$log" >&2
		exit 1
	fi
	verify "$n" || { echo "$tool on $n hosts: wrong result; its output:" >&2; tail -n 40 "$log" >&2; exit 1; }
	printf '%.3f %.3f\n' "$(echo "scale=3; ($t1 - $t0) / 1000000000" | bc)" "$(echo "scale=3; $usec / 1000000" | bc)"
}
command -v bc >/dev/null || { echo "run.sh needs bc" >&2; exit 1; }

# series KEY TOOL N FRESH RUNS: RUNS timed runs; sets med[KEY] (wall) and cpu[KEY] (controller
# CPU), prints every run and the load average before and after
declare -A med cpu
series() {
	local key=$1 tool=$2 n=$3 fresh=$4 r=$5 load0 walls=() cpus=() w c
	load0=$(cg_loadavg)
	for _ in $(seq "$r"); do
		read -r w c < <(timed "$tool" "$n" "$fresh")
		[ -n "$c" ] || exit 1
		walls+=("$w") cpus+=("$c")
	done
	med[$key]=$(printf '%s\n' "${walls[@]}" | median)
	cpu[$key]=$(printf '%s\n' "${cpus[@]}" | median)
	printf '%-16s N=%-3s %s median %7.2f s wall, %6.2f CPU-s   wall: %s   CPU: %s   load %s -> %s\n' "$tool" "$n" \
		"$([ "$fresh" = 1 ] && echo "full  " || echo second)" "${med[$key]}" "${cpu[$key]}" "${walls[*]}" "${cpus[*]}" \
		"$load0" "$(cg_loadavg)" >&2
}

total0=$(now)
load_start=$(cg_loadavg)
for n in $NS; do
	runs=$RUNS
	[ "$n" = "$max_n" ] && runs=$RUNS_MAX
	for tool in $TOOLS; do
		case " $SKIP " in *" $tool:$n "*) continue ;; esac
		r=$runs
		case $tool in ansible-*) [ "$ANSIBLE_RUNS" -lt "$r" ] && r=$ANSIBLE_RUNS ;; esac
		series "$tool,$n" "$tool" "$n" 1 "$r"
	done
done

# second run, nothing to copy: each run after a full run on the same hosts
second=""
if [ "$SECOND" = 1 ]; then
	n2=10
	case " $NS " in *" 10 "*) ;; *) n2=$max_n ;; esac
	for tool in ansible-tuned kmsctl; do
		case " $TOOLS " in *" $tool "*) ;; *) continue ;; esac
		timed "$tool" "$n2" 1 >/dev/null
		r=$RUNS
		[ "$tool" = ansible-tuned ] && r=$ANSIBLE_RUNS
		series "second,$tool" "$tool" "$n2" 0 "$r"
	done
	second=$n2
fi
total1=$(now)

profile_top=""
if [ -n "${PROFILE:-}" ]; then
	np=10
	case " $NS " in *" 10 "*) ;; *) np=$max_n ;; esac
	(cd "$root" && CGO_ENABLED=0 go build -tags benchprofile -o "$PROFILE.bin" ./cmd/kmsctl)
	clean "$np"
	sync
	KMSCTL_CPUPROFILE=$PROFILE "$PROFILE.bin" play "$here/site-kmsctl.yml" -i "$ctl/inventory.$np.yml" --forks "$np" \
		--known-hosts "$ctl/known_hosts" >"$ctl/profile.log" 2>&1 || { tail -n 40 "$ctl/profile.log" >&2; exit 1; }
	verify "$np"
	profile_top=$(go tool pprof -top -nodecount=40 "$PROFILE.bin" "$PROFILE" 2>/dev/null)
fi

# --- report --------------------------------------------------------------------------------
ratio() { if [ -n "${1:-}" ] && [ -n "${2:-}" ] && [ "$(echo "$2 > 0" | bc)" = 1 ]; then echo "scale=1; $1 / $2" | bc; else echo "-"; fi; }
perhost() { if [ -n "${1:-}" ]; then printf '%.3f' "$(echo "scale=4; $1 / $2" | bc)"; else echo "-"; fi; }
echo
echo "kmsctl vs Ansible: medians of $RUNS runs (Ansible $ANSIBLE_RUNS; at most $RUNS_MAX at N=$max_n), full work every run"
echo "load average (1, 5, 15 min) at the start: $load_start; at the end: $(cg_loadavg)"
echo "controller CPU: user + system CPU seconds of the controller's cgroup (cgroup $CG_KIND, $CG_ROOT):"
echo "  ansible-playbook, its forks and its ssh ControlMasters; kmsctl; the script's ssh/scp clients"
echo "$(nproc) cores, $(. /etc/os-release && echo "$PRETTY_NAME"), $(date -u +%Y-%m-%dT%H:%MZ)"
av=$(ansible --version 2>/dev/null)
echo "${av%%$'\n'*}, $(/usr/sbin/sshd -V 2>&1 | head -1 || true)"
echo "kmsctl: $kmsctl_version, built from commit $kmsctl_commit"
echo
echo "| N  | Ansible default | Ansible tuned | OpenSSH script | kmsctl | tuned / kmsctl | script / kmsctl | default / kmsctl |"
echo "|----|----------------:|--------------:|---------------:|-------:|---------------:|----------------:|-----------------:|"
for n in $NS; do
	k=${med[kmsctl,$n]:-}
	printf '| %-2s | %15s | %13s | %14s | %6s | %13s× | %14s× | %15s× |\n' "$n" \
		"${med[ansible-default,$n]:--}" "${med[ansible-tuned,$n]:--}" "${med[openssh,$n]:--}" "${k:--}" \
		"$(ratio "${med[ansible-tuned,$n]:-}" "$k")" "$(ratio "${med[openssh,$n]:-}" "$k")" \
		"$(ratio "${med[ansible-default,$n]:-}" "$k")"
done
echo
echo "Controller CPU seconds per run (and per host), medians:"
echo
echo "| N  | Ansible default | Ansible tuned | OpenSSH script | kmsctl | tuned / kmsctl | default / kmsctl |"
echo "|----|----------------:|--------------:|---------------:|-------:|---------------:|-----------------:|"
for n in $NS; do
	cell() { if [ -n "${cpu[$1,$n]:-}" ]; then printf '%s (%s)' "${cpu[$1,$n]}" "$(perhost "${cpu[$1,$n]}" "$n")"; else echo -; fi; }
	printf '| %-2s | %15s | %13s | %14s | %6s | %13s× | %15s× |\n' "$n" \
		"$(cell ansible-default)" "$(cell ansible-tuned)" "$(cell openssh)" "$(cell kmsctl)" \
		"$(ratio "${cpu[ansible-tuned,$n]:-}" "${cpu[kmsctl,$n]:-}")" "$(ratio "${cpu[ansible-default,$n]:-}" "${cpu[kmsctl,$n]:-}")"
done
if [ -n "$second" ]; then
	echo
	echo "Second run at N=$second (files already in place; copies find equal checksums):"
	echo "Ansible tuned ${med[second,ansible-tuned]:-} s (${cpu[second,ansible-tuned]:-} CPU-s), kmsctl ${med[second,kmsctl]:-} s (${cpu[second,kmsctl]:-} CPU-s):" \
		"wall ratio $(ratio "${med[second,ansible-tuned]:-}" "${med[second,kmsctl]:-}")×, CPU ratio $(ratio "${cpu[second,ansible-tuned]:-}" "${cpu[second,kmsctl]:-}")×"
fi
if [ -n "$profile_top" ]; then
	echo
	echo "CPU profile of one kmsctl run at N=$np (go tool pprof -top $PROFILE.bin $PROFILE):"
	echo "$profile_top"
fi
echo
echo "total benchmark time: $(( (total1 - total0) / 1000000000 )) s"
