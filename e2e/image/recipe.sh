#!/bin/sh
# recipe.sh TAG builds the kmsctl end-to-end test-host image and imports it into Docker as TAG:
# a minimal Debian bookworm (debootstrap --variant=minbase) with systemd as PID 1 and OpenSSH
# sshd. Run it through build.sh, which names TAG after a hash of this file, needs root, sends
# this script's output to a log file and shows a progress line instead. Everything that ends up
# in the image is decided here, so only a change of this file makes a new image.
#
# The image carries no SSH host keys and no authorized_keys: the e2e harness (and e2e/lab.sh)
# generate a host key per container and copy it (and root's authorized_keys) in between
# `docker create` and `docker start`.
set -eu
tag=$1

# The Debian mirror this machine already uses (deb822 .sources or one-line .list entries):
# the first URI that serves the bookworm suite itself (not -security, not -updates).
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] || continue
	mirror=$(awk '
		/^[[:space:]]*$/ { if (uri != "" && suite) { print uri; exit } uri = ""; suite = 0; next }
		/^URIs:/ { uri = $2 }
		/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
		END { if (uri != "" && suite) print uri }
	' "$f" | head -n1)
	[ -n "$mirror" ] && break
done
if [ -z "$mirror" ]; then
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		mirror=$(awk '$1 == "deb" { u = $2; s = $3; if ($2 ~ /^\[/) { u = $3; s = $4 } if (s == "bookworm") { print u; exit } }' "$f")
		[ -n "$mirror" ] && break
	done
fi
if [ -z "$mirror" ]; then
	echo "recipe.sh: no Debian bookworm mirror found in /etc/apt/sources.list(.d)" >&2
	exit 1
fi
echo "building $tag from $mirror"

work=$(mktemp -d /var/tmp/kmsctl-testhost.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
rootfs="$work/rootfs"

debootstrap --variant=minbase \
	--include=systemd,systemd-sysv,openssh-server,sudo,ca-certificates,iproute2,procps,coreutils,prometheus-node-exporter \
	bookworm "$rootfs" "$mirror"

# No host keys in the image: every container gets its own from the harness.
rm -f "$rootfs"/etc/ssh/ssh_host_*

mkdir -p "$rootfs/etc/ssh/sshd_config.d"
cat >"$rootfs/etc/ssh/sshd_config.d/10-kmsctl-testhost.conf" <<'EOF'
# kmsctl test host: key-only root login, one host key copied in by the e2e harness.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
MaxSessions 100
EOF

# Let sshd come up once the host key exists; enable it for multi-user.target.
chroot "$rootfs" systemctl enable ssh.service
# Debian's node exporter (its textfile collector reads /var/lib/prometheus/node-exporter) is
# there for the tests of examples/systemd, which start it; it does not start on every host.
chroot "$rootfs" systemctl disable prometheus-node-exporter.service
# Units that cannot work (or only add noise and delay) inside a container.
chroot "$rootfs" systemctl mask \
	getty@.service serial-getty@.service console-getty.service getty.target \
	systemd-networkd-wait-online.service systemd-remount-fs.service \
	systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
	systemd-firstboot.service systemd-sysusers.service \
	dev-hugepages.mount sys-fs-fuse-connections.mount sys-kernel-config.mount \
	sys-kernel-debug.mount sys-kernel-tracing.mount \
	systemd-journald-audit.socket apt-daily.timer apt-daily-upgrade.timer || true

# Each container generates its own machine-id at boot.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
mkdir -p "$rootfs/root/.ssh"
chmod 700 "$rootfs/root/.ssh"

# Slim the image.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
	"$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

tar -C "$rootfs" --numeric-owner -c . | docker import \
	-c 'CMD ["/sbin/init"]' -c 'ENV container=docker' \
	- "$tag"
