#!/usr/bin/env bash
# bench/recovery/run.sh (`make bench-recovery`): `kmsctl recover node` against the same recovery
# done by hand with the vendor's steps over plain ssh (bench/recovery/by-hand.sh), in a lab of
# three Docker test hosts running the simulator as minkms.service (e2e/lab.sh kms, a lab of
# its own: LAB_DIR, LAB_NAME). Each run: the target node's disk is lost (SIGKILL, service
# stopped, storage path emptied), the survivors are waited for until they list it offline,
# then one tool recovers it; the tools alternate run by run so that both see the same load.
# After every run the cluster is checked through the Key Manager API (the vendor CLI on the
# recovered node: every node online under one leader, and the keys created before the first
# run listed by the recovered node) before the next run starts.
#
# Prints every run, then the medians: wall time (the whole command, process start to exit),
# kmsctl's phases (from its --output json recap; "before" is the wall time before its first
# phase: process start, inventory, SSH connections, preflight, plan, lock; "run" is the time
# from there to the end), and the controller's CPU time (user +
# system, in a cgroup of its own, bench/cgroup.sh: kmsctl alone; the script with its ssh
# clients) which is the time it spends outside waiting on the Key Manager, systemd and the
# network; the load average before and after each run. Figures, not a test.
#
# Usage: bench/recovery/run.sh   (as root: Docker and a cgroup; `make bench-recovery`)
# Env:   RUNS=5 (runs per tool)  TARGET=kms2  HEALTHY=kms1 (where by-hand.sh runs the CLI)
#        TOOLS="kmsctl by-hand"  KEYS=20 (keys created before the first run)  SSH_CONNECT_TIMEOUT=60
#        LAB_DIR=/tmp/kmsbench-recovery/lab  LAB_NAME=kmsctl-bench-recovery
#        REUSE=1: use the lab already at LAB_DIR and leave it up (default: make one, remove it)
#        PROFILE=FILE: also run kmsctl once more, built with -tags benchprofile, writing a
#        CPU profile to FILE (`go tool pprof -top bin/kmsctl-profile FILE`)
set -euo pipefail

RUNS=${RUNS:-5}
TARGET=${TARGET:-kms2}
HEALTHY=${HEALTHY:-kms1}
TOOLS=${TOOLS:-kmsctl by-hand}
KEYS=${KEYS:-20}
REUSE=${REUSE:-0}
PROFILE=${PROFILE:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export LAB_DIR=${LAB_DIR:-/tmp/kmsbench-recovery/lab}
export LAB_NAME=${LAB_NAME:-kmsctl-bench-recovery}
# shellcheck source=../lab.sh
. "$root/bench/lab.sh"

# KEYS keys to find again after every recovery (kmsdemo key: create, encrypt, decrypt)
for i in $(seq "$KEYS"); do
	MINIO_KMS_API_KEY=$(<"$LAB_DIR/api.key") "$work/kmsdemo" key --ssh-config "$LAB_DIR/ssh_config" --ca "$LAB_DIR/ca.crt" \
		--name "bench-key-$i" "$HEALTHY" >/dev/null
done
keys_before=$(vendor "$HEALTHY" ls-key | grep -c '^bench-key-')
echo "lab $LAB_NAME ($LAB_DIR): $nodes; $keys_before bench keys" >&2

# lose_disk: the target's Key Manager killed, kept down and its storage emptied; then wait
# until the healthy node lists it offline (recover node's proof of death needs a survivor's view)
lose_disk() {
	"${ssh_[@]}" "$TARGET" "systemctl kill --signal=SIGKILL minkms; systemctl stop minkms && find $storage -mindepth 1 -delete"
	for _ in $(seq 240); do
		if vendor "$HEALTHY" ls 2>/dev/null | awk -v h="$TARGET:7373" '$5 == h && $2 == "offline" { f = 1 } END { exit !f }'; then
			return 0
		fi
		sleep 0.25
	done
	echo "$HEALTHY does not list $TARGET offline after 60 s" >&2
	return 1
}

# check: through the API, every node online under one leader, and the recovered node lists
# every bench key
check() {
	local ok=0 n
	for _ in $(seq 240); do
		if vendor "$HEALTHY" stat | awk 'NR > 1 { n++; if ($2 != "online") bad = 1; leader[$7] = 1 }
			END { l = 0; for (k in leader) l++; exit !(n == 3 && !bad && l == 1 && !("none" in leader)) }'; then
			ok=1
			break
		fi
		sleep 0.25
	done
	[ "$ok" = 1 ] || { echo "check: the cluster is not healthy:" >&2; vendor "$HEALTHY" stat >&2; return 1; }
	n=$(vendor "$TARGET" ls-key | grep -c '^bench-key-' || true)
	[ "$n" = "$keys_before" ] || { echo "check: $TARGET lists $n bench keys, want $keys_before" >&2; return 1; }
}

now() { date +%s%N; }
secs() { echo "scale=3; $1 / 1000000000" | bc; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }

declare -A walls cpus phases
phase_names=()
seq_=0
# one TOOL: one lost disk and one timed recovery by TOOL
one() {
	local tool=$1 log=$work/$1.log t0 t1 rc=0 usec load0 wall cpu line
	lose_disk
	seq_=$((seq_ + 1))
	load0=$(cg_loadavg)
	t0=$(now)
	case $tool in
	kmsctl) cg_run "r$seq_" kmsctl_ -i "$inv" recover node "$TARGET" --yes -o json >"$log" 2>&1 || rc=$? ;;
	by-hand) cg_run "r$seq_" "$here/by-hand.sh" "$LAB_DIR" "$TARGET" "$HEALTHY" "$storage" >"$log" 2>&1 || rc=$? ;;
	esac
	t1=$(now)
	usec=$(cg_done "r$seq_")
	if [ "$rc" != 0 ]; then
		echo "$tool failed (exit $rc):" >&2
		tail -n 30 "$log" >&2
		exit 1
	fi
	check
	wall=$(secs $((t1 - t0)))
	cpu=$(echo "scale=3; $usec / 1000000" | bc)
	walls[$tool]+="$wall "
	cpus[$tool]+="$cpu "
	case $tool in
	kmsctl)
		# the recap: {"event":"recover","phases":[{"phase":"kms2 fence","seconds":..},..],"seconds":..}
		line=$(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    try: e = json.loads(l)
    except ValueError: continue
    if e.get("event") == "recover":
        print("before=%.3f" % (float(sys.argv[2]) - e["seconds"]),
              " ".join("%s=%.3f" % (p["phase"].split()[-1], p["seconds"]) for p in e["phases"]), "run=%.3f" % e["seconds"])
' "$log" "$(secs $((t1 - t0)))")
		;;
	by-hand) line=$(awk '$1 != "total" { printf "%s=%s ", $1, $2 + 0 }' "$log") ;;
	esac
	local kv k v
	for kv in $line; do
		k=$tool:${kv%%=*} v=${kv#*=}
		[ -n "${phases[$k]:-}" ] || phase_names+=("$k")
		phases[$k]+="$v "
	done
	printf '%-8s run %d: %6.2f s wall, %5.2f CPU-s   %s   load %s -> %s\n' "$tool" "$seq_" "$wall" "$cpu" "$line" "$load0" "$(cg_loadavg)" >&2
}

load_start=$(cg_loadavg)
t_all=$(now)
for _ in $(seq "$RUNS"); do
	for tool in $TOOLS; do one "$tool"; done
done
load_end=$(cg_loadavg)

profile_line=
if [ -n "$PROFILE" ]; then
	(cd "$root" && CGO_ENABLED=0 go build -tags benchprofile -o "$work/kmsctl-profile" ./cmd/kmsctl)
	cp "$work/kmsctl-profile" "$root/bin/kmsctl-profile"
	lose_disk
	KMSCTL_CPUPROFILE=$PROFILE "$work/kmsctl-profile" --ssh-config "$work/ssh_config" -i "$inv" recover node "$TARGET" --yes -o json >"$work/profile.log" 2>&1
	check
	profile_line="CPU profile of one more kmsctl run: $PROFILE (go tool pprof -top bin/kmsctl-profile $PROFILE)"
fi

med() { printf '%s\n' $1 | median; }
echo
echo "recover node $TARGET after a lost disk (storage path emptied, service stopped), 3-node lab ($LAB_NAME), $RUNS runs per tool, alternating"
echo "load average (1, 5, 15 min) at the start: $load_start; at the end: $load_end; total $(( ($(now) - t_all) / 1000000000 )) s"
echo "$(nproc) cores, $(. /etc/os-release && echo "$PRETTY_NAME"), $(date -u +%Y-%m-%dT%H:%MZ); kmsctl: $("$kmsctl" version | head -1), commit $(git -C "$root" rev-parse --short HEAD)"
echo "CPU: user + system seconds of the controller's cgroup (cgroup $CG_KIND): kmsctl alone; by-hand.sh with its ssh clients"
echo
printf '| %-22s | %14s | %14s |\n' "median seconds" kmsctl "by hand (ssh)"
printf '|%s|%s|%s|\n' "------------------------" "---------------:" "---------------:"
printf '| %-22s | %14s | %14s |\n' "wall, whole command" "$(med "${walls[kmsctl]:-}")" "$(med "${walls[by-hand]:-}")"
printf '| %-22s | %14s | %14s |\n' "controller CPU (u+s)" "$(med "${cpus[kmsctl]:-}")" "$(med "${cpus[by-hand]:-}")"
for k in "${phase_names[@]}"; do
	printf '| %-22s | %14s | %14s |\n' "${k#*:} (${k%%:*})" "$([ "${k%%:*}" = kmsctl ] && med "${phases[$k]}" || echo)" \
		"$([ "${k%%:*}" = by-hand ] && med "${phases[$k]}" || echo)"
done
echo
for tool in $TOOLS; do echo "$tool runs: wall ${walls[$tool]}; CPU ${cpus[$tool]}"; done
[ -z "$profile_line" ] || echo "$profile_line"
