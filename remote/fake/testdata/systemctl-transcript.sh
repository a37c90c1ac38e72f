#!/bin/sh
# systemctl-transcript.sh records how systemctl answers the command lines
# kmsctl issues, as the transcript the fake's systemctl emulation is held to
# (TestSystemctlTranscript). Run it as root on a host with systemd as PID 1,
# for example in the e2e test-host image:
#
#   id=$(docker run -d --tmpfs /run --tmpfs /run/lock --stop-signal SIGRTMIN+3 \
#        -v /sys/fs/cgroup:/sys/fs/cgroup:ro "$(e2e/image/build.sh --print-tag)")
#   docker exec -i "$id" sh < remote/fake/testdata/systemctl-transcript.sh \
#        > remote/fake/testdata/systemctl-transcript.txt
#   docker rm -f "$id"
#
# Transcript format: "$ COMMAND", then each stdout line as "> LINE", each
# stderr line as "! LINE", then "= EXIT-STATUS". Lines starting with "#" are
# comments; "unit NAME SPEC" lines declare the units the script created (the
# test gives the fake the same ones).
set -u
P='systemctl show --property=LoadState,ActiveState,SubState,UnitFileState --'
unit() { # unit NAME 'SERVICE-SECTION-LINES' DECLARATION
	printf '[Unit]\nDescription=%s\n[Service]\n%s\n[Install]\nWantedBy=multi-user.target\n' "$1" "$2" > "/lib/systemd/system/$1"
	echo "unit $1 $3"
}
t() {
	echo "\$ $1"
	sh -c "$1" > /tmp/t.out 2> /tmp/t.err
	rc=$?
	sed 's/^/> /' /tmp/t.out
	sed 's/^/! /' /tmp/t.err
	echo "= $rc"
}
echo "# $(systemctl --version | head -n1); $(. /etc/os-release; echo "$PRETTY_NAME")"
unit app.service 'ExecStart=/bin/sleep infinity
ExecReload=/bin/true' 'reload'
unit noreload.service 'ExecStart=/bin/sleep infinity' ''
unit broken.service 'Type=oneshot
ExecStart=/bin/false' 'fail-start'
systemctl daemon-reload
t "$P missing.service"
t "$P app.service"
t "systemctl is-active app.service"
t "systemctl is-enabled app.service"
t "systemctl reload -- app.service"
t "systemctl start -- app.service"
t "$P app.service"
t "systemctl is-active app.service"
t "systemctl start -- app.service"
t "systemctl reload -- app.service"
t "systemctl enable -- app.service"
t "$P app.service"
t "systemctl is-enabled app.service"
t "systemctl enable -- app.service"
t "systemctl restart -- app.service"
t "systemctl stop -- app.service"
t "$P app.service"
t "systemctl stop -- app.service"
t "systemctl restart -- app.service"
t "systemctl disable -- app.service"
t "$P app.service"
t "systemctl disable -- app.service"
t "systemctl stop -- app.service"
t "systemctl start -- noreload.service"
t "systemctl reload -- noreload.service"
t "systemctl stop -- noreload.service"
t "systemctl start -- broken.service"
t "$P broken.service"
t "systemctl is-active broken.service"
t "systemctl stop -- broken.service"
t "$P broken.service"
t "systemctl reset-failed -- broken.service"
t "$P broken.service"
t "systemctl enable -- broken.service"
t "systemctl restart -- broken.service"
t "$P broken.service"
t "systemctl reset-failed -- broken.service"
t "systemctl disable -- broken.service"
t "systemctl mask -- app.service"
t "$P app.service"
t "systemctl is-enabled app.service"
t "systemctl start -- app.service"
t "systemctl restart -- app.service"
t "systemctl enable -- app.service"
t "systemctl stop -- app.service"
t "systemctl unmask -- app.service"
t "$P app.service"
t "systemctl start -- missing.service"
t "systemctl stop -- missing.service"
t "systemctl restart -- missing.service"
t "systemctl reload -- missing.service"
t "systemctl enable -- missing.service"
t "systemctl disable -- missing.service"
t "systemctl is-active missing.service"
t "systemctl is-enabled missing.service"
t "systemctl daemon-reload"
rm -f /lib/systemd/system/app.service /lib/systemd/system/noreload.service /lib/systemd/system/broken.service
systemctl daemon-reload
