#!/usr/bin/env bash
# bench/keys10k/run.sh (`make bench-10k`): kmsctl backup and kmsctl recover cluster on a Key
# Manager cluster holding 10,000 keys, and kmsctl drill of its backup, in a lab of three
# Docker test hosts running the simulator as minkms.service and scratch1 with nothing
# installed (LAB_SCRATCH=1 e2e/lab.sh kms, a lab of its own: LAB_DIR, LAB_NAME).
#
#  1. seed: `kmsdemo keys` makes the default enclave hold KEYS keys (16 KEY:CREATE at once
#     through kms1; the simulator takes one write per request); prints its rate
#  2. backup, RUNS times: `kmsctl backup --dir DIR -o json`; wall time by phase from its run
#     journal (start: process start to the run's start; status: SSH connections and every
#     node's status; snapshot: kms_backup, the snapshot streamed to this machine, checked, its
#     manifest listing every object, the canary; end: to exit), the snapshot's size and the
#     manifest's key count
#  3. recover cluster, RC_RUNS times: every node's Key Manager killed and its storage emptied
#     (a total loss), then `kmsctl recover cluster --backup NEWEST --yes -o json`; its phases
#     from its recap, summed over the nodes (before: the wall time before its run starts:
#     process start, the backup's checks, SSH connections, preflight, plan, lock); then checked through the Key Manager API (the vendor CLI on every node:
#     three nodes online under one leader, and each node lists every seeded key)
#  4. drill, DRILL_RUNS times: `kmsctl drill --scratch scratch1 --backup NEWEST --report FILE`
#     (the cluster is not touched); its phases from the report (provision, start, restore,
#     verify, teardown; restore_seconds: provision to verified); the bench fails unless the
#     report says ok and verified exactly the objects the manifest lists (every key of it, the
#     canary key too) and the canary
# Each kmsctl run is in a cgroup of its own (bench/cgroup.sh): its user + system CPU time is
# the time kmsctl spends outside waiting on the nodes, the network and the disk. The load
# average is printed before and after each run. Figures, not a test.
#
# Usage: bench/keys10k/run.sh   (as root: Docker and a cgroup)
# Env:   KEYS=10000  RUNS=3 (backups)  RC_RUNS=1 (recover cluster runs; 0: none)
#        DRILL_RUNS=1 (drills; 0: none)  SSH_CONNECT_TIMEOUT=60
#        LAB_DIR=/tmp/kmsbench-10k/lab  LAB_NAME=kmsctl-bench-10k
#        REUSE=1: use the lab already at LAB_DIR and leave it up (default: make one, remove
#        it); a drill needs the lab's scratch1 (LAB_SCRATCH=1 e2e/lab.sh kms 3 makes such a lab)
#        PROFILE=FILE: one more backup from a -tags benchprofile build, CPU profile in FILE
set -euo pipefail

KEYS=${KEYS:-10000}
RUNS=${RUNS:-3}
RC_RUNS=${RC_RUNS:-1}
DRILL_RUNS=${DRILL_RUNS:-1}
REUSE=${REUSE:-0}
PROFILE=${PROFILE:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export LAB_DIR=${LAB_DIR:-/tmp/kmsbench-10k/lab}
export LAB_NAME=${LAB_NAME:-kmsctl-bench-10k}
export LAB_SCRATCH=1 # scratch1, for the drill
# shellcheck source=../lab.sh
. "$root/bench/lab.sh"
if [ "$DRILL_RUNS" != 0 ] && ! grep -q '^Host scratch1$' "$LAB_DIR/ssh_config"; then
	echo "DRILL_RUNS=$DRILL_RUNS but the lab at $LAB_DIR has no scratch1 (REUSE=1 needs a lab made by LAB_SCRATCH=1 e2e/lab.sh kms 3; or DRILL_RUNS=0)" >&2
	exit 1
fi

now() { date +%s%N; }
secs() { echo "scale=3; $1 / 1000000000" | bc; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }
med() { printf '%s\n' $1 | median; }

# --- 1. seed ---------------------------------------------------------------------------------
load0=$(cg_loadavg)
seed=$(MINIO_KMS_API_KEY=$(<"$LAB_DIR/api.key") "$work/kmsdemo" keys --ssh-config "$LAB_DIR/ssh_config" --ca "$LAB_DIR/ca.crt" \
	--count "$KEYS" kms1)
echo "seed: $seed; load $load0 -> $(cg_loadavg)" >&2

# keys_on HOST: how many seeded keys HOST lists
keys_on() { vendor "$1" ls-key key- | grep -c '^key-[0-9]' || true; }
n=$(keys_on kms1)
[ "$n" -ge "$KEYS" ] || { echo "kms1 lists $n seeded keys, want $KEYS" >&2; exit 1; }

# --- 2. backup -------------------------------------------------------------------------------
bdir=$work/backups
declare -A series
order=()
add() { # add NAME VALUE: one more figure of series NAME
	[ -n "${series[$1]:-}" ] || order+=("$1")
	series[$1]+="$2 "
}
# phases LOG T0 T1: "name=seconds ..." of a backup from its run journal (`kmsctl runs show ID
# -o json`, the run named by the run_end event's run_log), T0 and T1 the process's start and
# end (epoch ns): start (process start to the run's start: inventory, options), status (the
# run's start to the snapshot task: SSH connections, every node's status), snapshot (the
# kms_backup task), end (to exit: retention, metrics, exit)
phases() {
	local id
	id=$(python3 -c '
import json, os, sys
for l in open(sys.argv[1]):
    try: e = json.loads(l)
    except ValueError: continue
    if e.get("event") == "run_end": print(os.path.basename(e["run_log"]).removesuffix(".log"))
' "$1")
	"$kmsctl" runs show "$id" -o json | python3 -c '
import json, sys
from datetime import datetime
def ts(s): return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
j = json.load(sys.stdin)
t0, t1 = int(sys.argv[1]) / 1e9, int(sys.argv[2]) / 1e9
step = [s for s in j["steps"] if s["task"] == "snapshot and manifest"][0]
start, a, b = ts(j["start"]), ts(step["started"]), ts(step["ended"])
print("start=%.3f status=%.3f snapshot=%.3f end=%.3f" % (start - t0, a - start, b - a, t1 - b))
' "$2" "$3"
}
for i in $(seq "$RUNS"); do
	load0=$(cg_loadavg)
	t0=$(now)
	rc=0
	cg_run "b$i" kmsctl_ -i "$inv" backup --dir "$bdir" -o json >"$work/backup.log" 2>&1 || rc=$?
	t1=$(now)
	usec=$(cg_done "b$i")
	[ "$rc" = 0 ] || { echo "backup failed (exit $rc):" >&2; tail -n 20 "$work/backup.log" >&2; exit 1; }
	wall=$(secs $((t1 - t0)))
	cpu=$(echo "scale=3; $usec / 1000000" | bc)
	ph=$(phases "$work/backup.log" "$t0" "$t1")
	add "backup wall" "$wall"
	add "backup CPU" "$cpu"
	for kv in $ph; do add "backup ${kv%%=*}" "${kv#*=}"; done
	printf 'backup %d: %6.2f s wall, %5.2f CPU-s   %s   load %s -> %s\n' "$i" "$wall" "$cpu" "$ph" "$load0" "$(cg_loadavg)" >&2
done
newest=$(ls -1 "$bdir"/*_kms.db.gzip | sort | tail -n1)
size=$(stat -c %s "$newest")
mkeys=$(python3 -c '
import json, sys
print(json.load(open(sys.argv[1]))["counts"]["keys"])
' "$newest.manifest.json" 2>/dev/null || echo "?")

if [ -n "$PROFILE" ]; then
	(cd "$root" && CGO_ENABLED=0 go build -tags benchprofile -o "$PROFILE.bin" ./cmd/kmsctl)
	KMSCTL_CPUPROFILE=$PROFILE "$PROFILE.bin" --ssh-config "$work/ssh_config" -i "$inv" backup --dir "$bdir" -o json >"$work/profile.log" 2>&1
fi

# --- 3. recover cluster ----------------------------------------------------------------------
for i in $(seq "$RC_RUNS"); do
	for h in $nodes; do
		"${ssh_[@]}" "$h" "systemctl kill --signal=SIGKILL minkms; systemctl stop minkms && find $storage -mindepth 1 -delete"
	done
	load0=$(cg_loadavg)
	t0=$(now)
	rc=0
	cg_run "rc$i" kmsctl_ -i "$inv" recover cluster --backup "$newest" --yes -o json >"$work/rc.log" 2>&1 || rc=$?
	t1=$(now)
	usec=$(cg_done "rc$i")
	[ "$rc" = 0 ] || { echo "recover cluster failed (exit $rc):" >&2; tail -n 30 "$work/rc.log" >&2; exit 1; }
	wall=$(secs $((t1 - t0)))
	cpu=$(echo "scale=3; $usec / 1000000" | bc)
	ph=$(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    try: e = json.loads(l)
    except ValueError: continue
    if e.get("event") == "recover_cluster":
        # phases are per host ("kms2 push") or "every node fence": summed per phase
        ph = {}
        for p in e["phases"]:
            k = p["phase"].split()[-1]
            ph[k] = ph.get(k, 0) + p["seconds"]
        print("before=%.3f" % (float(sys.argv[2]) - e["seconds"]),
              " ".join("%s=%.3f" % kv for kv in ph.items()), "run=%.3f" % e["seconds"])
' "$work/rc.log" "$wall")
	# through the API: three nodes online under one leader; every node lists every key
	ok=0
	for _ in $(seq 240); do
		if vendor kms1 stat | awk 'NR > 1 { n++; if ($2 != "online") bad = 1; leader[$7] = 1 }
			END { l = 0; for (k in leader) l++; exit !(n == 3 && !bad && l == 1 && !("none" in leader)) }'; then
			ok=1
			break
		fi
		sleep 0.25
	done
	[ "$ok" = 1 ] || { echo "after recover cluster the cluster is not healthy:" >&2; vendor kms1 stat >&2; exit 1; }
	for h in $nodes; do
		n=$(keys_on "$h")
		[ "$n" -ge "$KEYS" ] || { echo "after recover cluster $h lists $n seeded keys, want $KEYS" >&2; exit 1; }
	done
	add "recover cluster wall" "$wall"
	add "recover cluster CPU" "$cpu"
	for kv in $ph; do add "recover cluster ${kv%%=*}" "${kv#*=}"; done
	printf 'recover cluster %d: %6.2f s wall, %5.2f CPU-s   %s   load %s -> %s; every node lists %s keys\n' "$i" "$wall" "$cpu" "$ph" "$load0" "$(cg_loadavg)" "$KEYS" >&2
done

# --- 4. drill --------------------------------------------------------------------------------
# drill_check REPORT MANIFEST: the drill's phases as "name=seconds ... restore=SECONDS
# objects=KIND:N,..." when REPORT says ok (exit 0, the canary, every phase ok) and verified
# exactly what MANIFEST lists (its objects, counted here from its lists, and at least KEYS
# keys); else why not on stderr, and exit 1
drill_check() {
	python3 - "$1" "$2" "$KEYS" <<'PY'
import json, sys
rep, man, want = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
counts = {"enclaves": 0, "keys": 0, "policies": 0, "identities": 0}
for e in man["objects"]["enclaves"]:
    counts["enclaves"] += 1
    for kind in ("keys", "policies", "identities"):
        counts[kind] += len(e.get(kind) or [])
bad = []
if rep.get("result") != "ok" or rep.get("exit_code") != 0:
    bad.append("result %r, exit code %r, error %r" % (rep.get("result"), rep.get("exit_code"), rep.get("error")))
if not rep.get("canary"):
    bad.append("the canary was not decrypted")
if rep.get("objects") != counts:
    bad.append("verified %r, the manifest lists %r" % (rep.get("objects"), counts))
if man.get("counts") and man["counts"] != counts:
    bad.append("the manifest's counts %r are not its lists %r" % (man["counts"], counts))
if counts["keys"] < want:
    bad.append("the manifest lists %d keys, the lab was seeded with %d" % (counts["keys"], want))
phases = rep.get("phases") or []
if [p["phase"] for p in phases] != ["provision", "start", "restore", "verify", "teardown"] or not all(p["ok"] for p in phases):
    bad.append("phases %r" % phases)
if bad:
    sys.exit("drill report %s: %s" % (sys.argv[1], "; ".join(bad)))
print(" ".join("%s=%.3f" % (p["phase"], p["seconds"]) for p in phases),
      "restore_total=%.3f" % rep["restore_seconds"],
      "objects=" + ",".join("%s:%d" % kv for kv in rep["objects"].items()))
PY
}
for i in $(seq "$DRILL_RUNS"); do
	report=$work/drill$i.json
	load0=$(cg_loadavg)
	t0=$(now)
	rc=0
	cg_run "d$i" kmsctl_ -i "$inv" drill --scratch scratch1 --backup "$newest" --report "$report" >"$work/drill.log" 2>&1 || rc=$?
	t1=$(now)
	usec=$(cg_done "d$i")
	if [ "$rc" != 0 ]; then
		echo "DRILL FAILED (exit $rc):" >&2
		tail -n 30 "$work/drill.log" >&2
		[ ! -f "$report" ] || cat "$report" >&2
		exit 1
	fi
	ph=$(drill_check "$report" "$newest.manifest.json") || {
		echo "DRILL DID NOT VERIFY EVERY OBJECT (exit 0, but its report says otherwise):" >&2
		cat "$report" >&2
		exit 1
	}
	wall=$(secs $((t1 - t0)))
	cpu=$(echo "scale=3; $usec / 1000000" | bc)
	add "drill wall" "$wall"
	add "drill CPU" "$cpu"
	for kv in $ph; do
		case $kv in objects=*) drill_objects=${kv#objects=} ;; *) add "drill ${kv%%=*}" "${kv#*=}" ;; esac
	done
	printf 'drill %d: %6.2f s wall, %5.2f CPU-s   %s   load %s -> %s\n' "$i" "$wall" "$cpu" "$ph" "$load0" "$(cg_loadavg)" >&2
done

echo
echo "kmsctl at $KEYS keys, 3-node lab ($LAB_NAME): $RUNS backups, $RC_RUNS recover cluster, $DRILL_RUNS drills; $(date -u +%Y-%m-%dT%H:%MZ)"
echo "seed: $seed"
echo "snapshot: $(basename "$newest"), $size bytes; manifest keys: $mkeys"
[ "$DRILL_RUNS" = 0 ] || echo "drill onto scratch1: every run verified $drill_objects (the manifest's objects) and the canary"
echo "$(nproc) cores, load average now $(cg_loadavg); kmsctl: $("$kmsctl" version | head -1), commit $(git -C "$root" rev-parse --short HEAD)"
echo "CPU: user + system seconds of kmsctl's cgroup (cgroup $CG_KIND): kmsctl's time outside waits"
echo
printf '| %-40s | %8s | %s\n' "median seconds" median runs
printf '|%s|%s|%s\n' "------------------------------------------" "---------:" "---"
for k in "${order[@]}"; do
	printf '| %-40s | %8s | %s\n' "$k" "$(med "${series[$k]}")" "${series[$k]}"
done
[ -z "$PROFILE" ] || echo "CPU profile of one more backup: $PROFILE (go tool pprof -top $PROFILE.bin $PROFILE)"
