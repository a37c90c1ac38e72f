# bench/cgroup.sh: CPU time of a command and of everything it starts, measured in a cgroup of
# its own. Sourced by the bench scripts (bench/ansible/run.sh; bench/lab.sh, for the lab benches).
#
#   cg_init            check that a child cgroup can be made here; sets CG_KIND (v2 or v1)
#   cg_run CG CMD...   run CMD (a program or a shell function) in a new child cgroup CG (name:
#                      letters, digits, -); every process CMD starts stays in it, including
#                      daemons it forks (Ansible's ssh ControlMasters); processes it merely
#                      talks to (the hosts' sshd and what they start) do not
#   cg_done CG         wait (up to 10 s) until CG's processes have exited, print the CPU
#                      microseconds (user + system) used in it, and remove it
#   cg_loadavg         the 1, 5 and 15 minute load averages, for the report
#
# cgroup v2 (cpu.stat usage_usec, present in every cgroup without enabling a controller) is
# used where a v2 hierarchy is mounted (/sys/fs/cgroup or, on a hybrid system, its
# /sys/fs/cgroup/unified); else the v1 cpuacct controller (cpuacct.usage, nanoseconds). Needs
# root.

CG_KIND=
CG_ROOT=

cg_init() {
	local base d
	for base in /sys/fs/cgroup /sys/fs/cgroup/unified; do
		[ -f "$base/cgroup.procs" ] && [ -f "$base/cgroup.controllers" ] || continue
		d=$base/kmsbench-probe-$$
		if mkdir "$d" 2>/dev/null; then
			if [ -f "$d/cpu.stat" ]; then
				rmdir "$d"
				CG_KIND=v2 CG_ROOT=$base
				return 0
			fi
			rmdir "$d"
		fi
	done
	base=/sys/fs/cgroup/cpuacct
	d=$base/kmsbench-probe-$$
	if [ -f "$base/cpuacct.usage" ] && mkdir "$d" 2>/dev/null; then
		rmdir "$d"
		CG_KIND=v1 CG_ROOT=$base
		return 0
	fi
	echo "cgroup.sh: cannot make a child cgroup (neither cgroup v2 cpu.stat nor v1 cpuacct is writable here; run as root)" >&2
	return 1
}

cg_path() { printf '%s/kmsbench-%s-%s' "$CG_ROOT" "$$" "$1"; }

cg_run() {
	local cg=$1 d
	shift
	d=$(cg_path "$cg")
	mkdir "$d" || return 1
	# The subshell moves itself into the cgroup, then runs CMD (a function runs in it).
	(echo "$BASHPID" >"$d/cgroup.procs" && "$@")
}

cg_done() {
	local d i
	d=$(cg_path "$1")
	# A process that is exiting (a ControlMaster told to exit) may still be listed a moment.
	for i in $(seq 100); do
		[ -n "$(cat "$d/cgroup.procs")" ] || break
		sleep 0.1
	done
	if [ -n "$(cat "$d/cgroup.procs")" ]; then
		echo "cgroup.sh: $d still has processes after 10 s: $(tr '\n' ' ' <"$d/cgroup.procs")" >&2
		return 1
	fi
	if [ "$CG_KIND" = v2 ]; then
		awk '$1 == "usage_usec" { print $2 }' "$d/cpu.stat"
	else
		echo $(($(cat "$d/cpuacct.usage") / 1000))
	fi
	rmdir "$d"
}

cg_loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
