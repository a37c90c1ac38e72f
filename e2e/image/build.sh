#!/bin/sh
# build.sh builds the kmsctl end-to-end test-host image with recipe.sh (a minimal Debian
# bookworm with systemd as PID 1 and OpenSSH sshd) and prints its tag,
# kmsctl-testhost:<hash>, where <hash> is a hash of the recipe (every file of this directory
# but this one and *.md: how the build is shown does not change the image). The build is
# skipped when that tag already exists.
#
# Usage: e2e/image/build.sh [--print-tag]
#   --print-tag  print the image tag the recipe produces and exit (no build)
#
# Building needs root (debootstrap and chroot) and installs the debootstrap package with
# apt-get when it is missing. The output of apt-get, debootstrap and docker import goes to
# /var/tmp/kmsctl-testhost-<hash>.log; a progress line is shown instead (its last lines too,
# if the build fails).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
hash=$(cd "$here" && find . -type f ! -name '*.md' ! -path ./build.sh | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
tag="kmsctl-testhost:$hash"

if [ "${1:-}" = "--print-tag" ]; then
	echo "$tag"
	exit 0
fi

if docker image inspect "$tag" >/dev/null 2>&1; then
	echo "image $tag exists, nothing to do" >&2
	echo "$tag"
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "build.sh: building the test-host image $tag needs root (debootstrap, chroot): run it as root or via sudo (e2e/image/build.sh), then again as yourself" >&2
	exit 1
fi

log="/var/tmp/kmsctl-testhost-$hash.log"
: >"$log"
echo "building the test-host image $tag (Debian bookworm by debootstrap, about 5 minutes; log: $log)" >&2
start=$(date +%s)

# progress prints, while the build runs, the time spent and the latest step of the log: on a
# terminal as one line rewritten in place, otherwise as a line a minute.
progress() {
	next=60
	while :; do
		sleep 2
		el=$(($(date +%s) - start))
		step=$(tail -n 40 "$log" | grep -E '^(I: |building |Setting up )' | tail -n 1 | cut -c1-60)
		if [ -t 2 ]; then
			printf '\r\033[K  %dm%02ds %s' $((el / 60)) $((el % 60)) "$step" >&2
		elif [ "$el" -ge "$next" ]; then
			printf '  %dm elapsed: %s\n' $((el / 60)) "$step" >&2
			next=$((next + 60))
		fi
	done
}
progress &
progress_pid=$!
trap 'kill "$progress_pid" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

rc=0
{
	if ! command -v debootstrap >/dev/null 2>&1; then
		echo "installing debootstrap (apt-get)"
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
	fi &&
		"$here/recipe.sh" "$tag"
} >>"$log" 2>&1 || rc=$?

kill "$progress_pid" 2>/dev/null || true
[ -t 2 ] && printf '\r\033[K' >&2
el=$(($(date +%s) - start))
if [ "$rc" != 0 ]; then
	echo "build.sh: building $tag failed (exit $rc) after ${el}s; the last lines of $log:" >&2
	tail -n 20 "$log" >&2
	exit "$rc"
fi
echo "built $tag in $((el / 60))m$((el % 60))s (log: $log)" >&2
echo "$tag"
