// Package e2e holds kmsctl's end-to-end tests: the real kmsctl binary against Debian containers
// running systemd and OpenSSH sshd, with the Key Manager simulator as minkms.service.
package e2e
