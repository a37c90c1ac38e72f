# bench/lab.sh: the setup the lab benches share, sourced by bench/keys10k/run.sh and
# bench/recovery/run.sh after they set root (the repository), REUSE, and export LAB_DIR and
# LAB_NAME (e2e/lab.sh's lab of their own; LAB_SCRATCH=1 exported: with scratch1, in group
# scratch with nothing installed, for kmsctl drill). It checks that it runs as root with
# docker, bc and python3, builds bin/ when it is not there, and makes the lab (REUSE=1: uses
# the one at LAB_DIR and leaves it up); the lab is removed and the scratch directory deleted
# on exit.
#
#   storage      the Key Manager's storage path on the nodes
#   work         a scratch directory; XDG_STATE_HOME (kmsctl's own state) is below it
#   kmsctl       a copy of bin/kmsctl in work (bin/ may be rebuilt while a bench runs)
#   kmsctl_ ...  kmsctl with an ssh_config of its own (SSH_CONNECT_TIMEOUT, default 60 s)
#   inv          the lab's inventory
#   ssh_         plain ssh to a lab node, an array: "${ssh_[@]}" HOST CMD
#   nodes        the lab's cluster nodes (kms1..kmsN; not scratch1)
#   vendor HOST ARGS...  the vendor CLI on HOST against itself, the API key through stdin
#   work/kmsdemo the lab's client (e2e/lab/kmsdemo), built
# and bench/cgroup.sh's functions, cg_init done. The vendor CLI on every node trusts the lab CA.

export LAB_HINT=0
storage=/mnt/minio-kms
# shellcheck source=cgroup.sh
. "$root/bench/cgroup.sh"

[ "$(id -u)" = 0 ] || { echo "run.sh must run as root (Docker, cgroups)" >&2; exit 1; }
for c in docker bc python3; do command -v "$c" >/dev/null || { echo "run.sh needs $c" >&2; exit 1; }; done
cg_init
[ -x "$root/bin/kmsctl" ] && [ -x "$root/bin/kmsim" ] || make -C "$root" build >&2

work=$(mktemp -d)
# kmsctl's own state (known_hosts, run logs, journals, locks) apart from the user's
export XDG_STATE_HOME=$work/state
cp "$root/bin/kmsctl" "$work/kmsctl" # bin/ may be rebuilt while this runs
kmsctl=$work/kmsctl
# On a machine this loaded an SSH handshake can take longer than kmsctl's default 15 s; plain
# ssh (by-hand.sh, the checks) waits as long as TCP does. SSH_CONNECT_TIMEOUT (default 60 s)
# reaches kmsctl through an ssh_config of its own (--ssh-config).
printf 'Host *\n  ConnectTimeout %s\n' "${SSH_CONNECT_TIMEOUT:-60}" >"$work/ssh_config"
kmsctl_() { "$kmsctl" --ssh-config "$work/ssh_config" "$@"; }
made_lab=0
cleanup() {
	if [ "$made_lab" = 1 ]; then "$root/e2e/lab.sh" down >&2 || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$REUSE" = 1 ]; then
	[ -f "$LAB_DIR/inventory.yml" ] || { echo "REUSE=1 but no lab at $LAB_DIR" >&2; exit 1; }
else
	mkdir -p "$(dirname "$LAB_DIR")"
	made_lab=1
	"$root/e2e/lab.sh" kms 3 >&2
fi
inv=$LAB_DIR/inventory.yml
ssh_=(ssh -F "$LAB_DIR/ssh_config" -o BatchMode=yes -o ControlPath=none)
nodes=$(awk '/^Host kms/ { print $2 }' "$LAB_DIR/ssh_config")

# vendor HOST ARGS...: the vendor CLI on HOST against itself, the API key through stdin
vendor() {
	local host=$1
	shift
	"${ssh_[@]}" "$host" "IFS= read -r k; MINIO_KMS_API_KEY=\$k MINIO_KMS_SERVER=https://$host:7373 exec minkms $*" <"$LAB_DIR/api.key"
}

# --- once, outside the timing --------------------------------------------------------------
# lab.sh leaves every file of the lab directory 0600, the simulator binary too; recover node and
# recover cluster run kms_binary_src here to learn its version and refuse when they cannot
chmod 700 "$LAB_DIR/minkms"
# The vendor CLI on every node trusts the lab CA (an operator's one-time setup).
for h in $nodes; do
	"${ssh_[@]}" "$h" 'mkdir -p /root/.minkms/certs/CAs && cp /etc/minkms/certs/ca.crt /root/.minkms/certs/CAs/lab.crt'
done
go build -o "$work/kmsdemo" "$root/e2e/lab/kmsdemo"
