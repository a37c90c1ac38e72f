package safepath

import (
	"errors"
	"strings"
	"testing"
)

// refused asserts that Check refuses p with a reason containing why.
func refused(t *testing.T, p string, protected []string, why string) {
	t.Helper()
	err := Check(p, protected)
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("Check(%q) = %v, want a refusal", p, err)
		return
	}
	if !e.Refused() || !strings.HasPrefix(err.Error(), "refusing ") || !strings.Contains(e.Reason, why) || e.Hint == "" {
		t.Errorf("Check(%q) = %q, want a refusal saying %q and what to do", p, err, why)
	}
}

func allowed(t *testing.T, p string, protected []string) {
	t.Helper()
	if err := Check(p, protected); err != nil {
		t.Errorf("Check(%q) = %v, want nil", p, err)
	}
}

func TestEmptyRelativeRoot(t *testing.T) {
	refused(t, "", nil, "empty")
	refused(t, "  ", nil, "empty")
	refused(t, "mnt/data", nil, "relative")
	refused(t, "./x", nil, "relative")
	refused(t, "../etc", nil, "relative")
	refused(t, "/", nil, "root directory")
	refused(t, "//", nil, "root directory")
	refused(t, "/.", nil, "root directory")
}

// TestBootTrees: each directory the host needs to boot and be reached is
// refused itself and with everything under it, each on its own.
func TestBootTrees(t *testing.T) {
	for _, d := range []string{
		"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr",
		"/var/run", "/var/lock", "/var/empty", "/var/lib/dpkg", "/var/lib/apt", "/var/lib/rpm", "/var/lib/dnf",
	} {
		t.Run(d, func(t *testing.T) {
			refused(t, d, nil, "system directory the host needs to boot")
			refused(t, d+"/", nil, "system directory the host needs to boot")
			refused(t, d+"/x", nil, "inside "+d+", which the host needs to boot")
			refused(t, d+"/x/y/z", nil, "inside "+d+",")
			// A longer name is not inside the directory.
			allowed(t, "/mnt"+d, nil)
		})
	}
	// Examples the issue names, inside the trees above.
	for _, p := range []string{"/etc/pam.d", "/etc/ssh", "/etc/minkms", "/etc/default/minkms", "/lib/systemd", "/lib/systemd/system",
		"/var/lib/dpkg/status", "/usr/local/bin", "/run/sshd", "/var/run/sshd", "/var/empty/sshd", "/boot/grub"} {
		refused(t, p, nil, "which the host needs to boot")
	}
}

// TestSystemDirs: mount points and top-level system directories are refused
// themselves, each on its own, and a directory below each is allowed.
func TestSystemDirs(t *testing.T) {
	for _, d := range []string{
		"/home", "/lost+found", "/media", "/mnt", "/opt", "/root", "/snap", "/srv", "/tmp",
		"/var", "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/log", "/var/mail", "/var/opt", "/var/spool", "/var/tmp",
	} {
		t.Run(d, func(t *testing.T) {
			refused(t, d, nil, "system directory")
			refused(t, d+"/", nil, "system directory")
			if d != "/home" {
				allowed(t, d+"/kms", nil)
				allowed(t, d+"/kms/data", nil)
			}
		})
	}
	for _, p := range []string{"/var/lib/minkms", "/mnt/data/kms", "/mnt/minio-kms", "/srv/kms", "/opt/minkms-data", "/data", "/tmp/x", "/var/tmp/kmsctl.1"} {
		allowed(t, p, nil)
	}
}

func TestHomesAndSSH(t *testing.T) {
	refused(t, "/home/alice", nil, "whole home directory")
	refused(t, "/home/alice/", nil, "whole home directory")
	allowed(t, "/home/alice/kms", nil)
	for _, p := range []string{"/root/.ssh", "/root/.ssh/authorized_keys", "/home/alice/.ssh", "/home/alice/.ssh/authorized_keys",
		"/srv/git/.ssh", "/mnt/x/.ssh/y", "/.ssh"} {
		refused(t, p, nil, "SSH directory")
	}
	// Only the element .ssh, not a name containing it.
	allowed(t, "/srv/backup.ssh", nil)
	allowed(t, "/srv/.sshd", nil)
}

// TestProtected: the node's Key Manager files, and any directory holding
// them, are refused; paths beside them are not.
func TestProtected(t *testing.T) {
	node := []string{"/opt/minkms/config.yaml", "/opt/minkms/env", "/opt/minkms/certs", "/opt/minkms/bin/minkms", "", "relative/ignored"}
	for _, p := range []string{"/opt/minkms/config.yaml", "/opt/minkms/env", "/opt/minkms/certs", "/opt/minkms/bin/minkms", "/opt/minkms/bin", "/opt/minkms", "/opt/minkms/"} {
		refused(t, p, node, "which the Key Manager node needs")
	}
	for _, p := range []string{"/opt/minkms/data", "/opt/minkms/certs/old.pem", "/opt/minkms-data", "/opt/minkms/config.yaml.bak", "/opt/other"} {
		allowed(t, p, node)
	}
	// Each protected path on its own.
	for _, q := range node[:4] {
		refused(t, "/opt/minkms", []string{q}, "contains "+q)
	}
	// Protected paths are compared cleaned.
	refused(t, "/opt/minkms", []string{"/opt//minkms/./env"}, "contains /opt/minkms/env")
	// An empty or relative protected path (an unset variable) is skipped,
	// and the ones after it still protect.
	refused(t, "/opt/minkms", []string{"", "relative/env", "/opt/minkms/env"}, "contains /opt/minkms/env")
}

// TestDotDot: a path is cleaned before it is checked; one that cleans to a
// harmless directory is allowed, one that cleans to a refused one is not.
func TestDotDot(t *testing.T) {
	allowed(t, "/mnt/data/../kms", nil)
	allowed(t, "/var/lib/minkms/../minkms-old", nil)
	allowed(t, "/etc/../mnt/kms", nil)
	refused(t, "/mnt/../etc", nil, "system directory the host needs to boot")
	refused(t, "/mnt/kms/../../etc/pam.d", nil, "inside /etc")
	refused(t, "/mnt/kms/..", nil, "system directory")
	refused(t, "/../..", nil, "root directory")
	refused(t, "/home/alice/kms/../.ssh", nil, "SSH directory")
	refused(t, "/home/alice/kms/..", nil, "whole home directory")
	refused(t, "/srv/x/../../opt/minkms", []string{"/opt/minkms/env"}, "contains /opt/minkms/env")
	err := Check("/mnt/../etc", nil)
	if err == nil || !strings.Contains(err.Error(), `refusing /etc (written "/mnt/../etc"): `) {
		t.Errorf("the message names the cleaned and the written path: %v", err)
	}
}

func TestErrorMessage(t *testing.T) {
	err := Check("/etc/pam.d", nil)
	want := "refusing /etc/pam.d: it is inside /etc, which the host needs to boot and to be reached (" + own + ")"
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	if err := Check("", nil); err == nil || err.Error() != `refusing "": the path is empty; is a variable undefined? (give an absolute path)` {
		t.Errorf("empty: %v", err)
	}
}

func TestProtectedFromVars(t *testing.T) {
	got := Protected(map[string]any{
		"kms_config_file": "/etc/minkms/config.yaml", "kms_env_file": "/etc/default/minkms", "kms_certs_dir": "/etc/minkms/certs",
		"kms_binary": "/usr/local/bin/minkms", "kms_storage_path": "/mnt/minio-kms", "other": "/x",
	})
	want := "/etc/minkms/config.yaml /etc/default/minkms /etc/minkms/certs /usr/local/bin/minkms"
	if strings.Join(got, " ") != want {
		t.Errorf("Protected = %q, want %q", got, want)
	}
	if got := Protected(map[string]any{"kms_binary": 7, "kms_env_file": ""}); len(got) != 0 {
		t.Errorf("Protected of non-strings = %q", got)
	}
}
