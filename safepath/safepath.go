// Package safepath is kmsctl's one rule for the paths it must never remove,
// change recursively or hand to another owner recursively on a host: the
// file module's state=absent and recurse, copy's chown of a copied
// directory, and the inventory's kms_storage_path (the one directory the
// recovery commands wipe) all ask Check. It is pure: it looks at the path
// written, not at the host (a symlink on the host is not followed).
//
// The path is cleaned first (path.Clean), so "/mnt/data/../kms" is checked
// as /mnt/kms (allowed) and "/mnt/../etc" as /etc (refused). Check refuses:
//
//   - an empty path (often an undefined variable), a relative path, and /;
//   - everything in or under the directories a Linux host needs to boot, to
//     log a user in and to be reached over SSH, and its package database:
//     /bin, /boot, /dev, /etc (with /etc/ssh, /etc/pam.d, /etc/systemd,
//     /etc/default), /lib, /lib32, /lib64, /libx32 (with /lib/systemd),
//     /proc, /run, /sbin, /sys, /usr, /var/run and /var/lock (links to
//     /run), /var/empty (sshd's privilege separation directory), and
//     /var/lib/dpkg, /var/lib/apt, /var/lib/rpm, /var/lib/dnf (the package
//     databases, without which the host cannot be repaired);
//   - the mount points and top-level system directories themselves, but not
//     the paths below them: /home, /lost+found, /media, /mnt, /opt, /root,
//     /snap, /srv, /tmp, /var, /var/backups, /var/cache, /var/lib,
//     /var/local, /var/log, /var/mail, /var/opt, /var/spool, /var/tmp
//     (so /mnt/data/kms and /var/lib/minkms are allowed);
//   - a whole home directory (/home/NAME), which holds the user's SSH keys;
//   - every SSH directory and everything in it: any path with a ".ssh"
//     element (/root/.ssh, /home/NAME/.ssh/authorized_keys), since removing
//     it can lock kmsctl and everyone else out;
//   - a path that is or contains one of the protected paths the caller
//     names: the Key Manager node's config file, env file (with the HSM
//     key), certificates directory and binary (see Protected).
package safepath

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Error is a path refused by the rule: which path, why, and what to do.
type Error struct {
	Path    string // the path as written
	Checked string // the cleaned path the rule was applied to
	Reason  string // why it is refused
	Hint    string // what to do instead
}

// Error formats as "refusing PATH: REASON (HINT)", naming the cleaned path
// too when it differs from the path as written.
func (e *Error) Error() string {
	p := e.Checked
	if e.Path != e.Checked && e.Checked != "" {
		p = fmt.Sprintf("%s (written %q)", e.Checked, e.Path)
	}
	if p == "" {
		p = fmt.Sprintf("%q", e.Path)
	}
	return fmt.Sprintf("refusing %s: %s (%s)", p, e.Reason, e.Hint)
}

// Refused reports that the error is a refusal by a safety rule (the CLI
// exits 4 for it).
func (e *Error) Refused() bool { return true }

// bootTrees are the directories refused with everything under them: what a
// host needs to boot, log users in and be reached over SSH, and its package
// database.
var bootTrees = []string{
	"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr",
	"/var/run", "/var/lock", "/var/empty", "/var/lib/dpkg", "/var/lib/apt", "/var/lib/rpm", "/var/lib/dnf",
}

// systemDirs are refused themselves; paths below them are allowed.
var systemDirs = []string{
	"/home", "/lost+found", "/media", "/mnt", "/opt", "/root", "/snap", "/srv", "/tmp",
	"/var", "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/log", "/var/mail", "/var/opt", "/var/spool", "/var/tmp",
}

// own is the hint of most refusals.
const own = "act on a directory of its own below a mount point, such as /mnt/minio-kms, /srv/kms or /var/lib/minkms"

// Check returns nil when p may be removed or changed recursively, or an
// *Error saying why not. protected are paths that must survive (files or
// directories; empty ones are ignored): p must not be or contain any of them.
func Check(p string, protected []string) error {
	refuse := func(checked, reason, hint string) error {
		return &Error{Path: p, Checked: checked, Reason: reason, Hint: hint}
	}
	if strings.TrimSpace(p) == "" {
		return refuse("", "the path is empty; is a variable undefined?", "give an absolute path")
	}
	if !path.IsAbs(p) {
		return refuse("", "it is a relative path", "give an absolute path, starting with /")
	}
	c := path.Clean(p)
	if c == "/" {
		return refuse(c, "it is the root directory", own)
	}
	if slices.Contains(strings.Split(c, "/"), ".ssh") {
		return refuse(c, "it is or is inside an SSH directory (.ssh); removing it can lock kmsctl and everyone else out of the host",
			"leave SSH keys to ssh-copy-id or your configuration management")
	}
	for _, t := range bootTrees {
		if c == t {
			return refuse(c, "it is a system directory the host needs to boot and to be reached", own)
		}
		if strings.HasPrefix(c, t+"/") {
			return refuse(c, "it is inside "+t+", which the host needs to boot and to be reached", own)
		}
	}
	if slices.Contains(systemDirs, c) {
		return refuse(c, "it is a system directory; paths below it are fine", own)
	}
	if path.Dir(c) == "/home" {
		return refuse(c, "it is a whole home directory, with the user's SSH keys", "name a directory inside it, e.g. "+c+"/kms")
	}
	for _, q := range protected {
		if q == "" || !path.IsAbs(q) {
			continue
		}
		q = path.Clean(q)
		if c == q || strings.HasPrefix(q, c+"/") {
			return refuse(c, "it is or contains "+q+", which the Key Manager node needs (its config, env file, certificates or binary)",
				"keep the Key Manager's data apart from its config, env file, certificates and binary")
		}
	}
	return nil
}

// Protected returns the paths of a host's Key Manager files that must
// survive, from its variables (kms_config_file, kms_env_file, kms_certs_dir,
// kms_binary; the inventory supplies their defaults), for Check.
func Protected(vars map[string]any) []string {
	var out []string
	for _, name := range []string{"kms_config_file", "kms_env_file", "kms_certs_dir", "kms_binary"} {
		if s, ok := vars[name].(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}
