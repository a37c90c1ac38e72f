// Package kmsmodules holds the Key Manager modules of playbooks: kms_status,
// kms_remove_node, kms_add_node, kms_wait, kms_hsm_check, kms_backup,
// kms_restore, kms_verify, kms_hsm_fingerprint, kms_probe_write (a
// throw-away key created, used and deleted through one node),
// kms_env_file (the node's env file with the operator's HSM key),
// kms_admin_identity (the h1: identity of the admin API key, for the server
// config), kms_binary_version (what the server binary's --version says)
// and kms_teardown (what provision installed on a stopped node
// removed, the env file with the HSM key first). They reach a node's Key
// Manager API as the inventory says (kms_api: through the node's SSH
// connection, or directly), verify its certificate against kms_ca_file or
// the system pool, and authenticate with the admin API key from the
// environment, a 0600 file or a command (never from a variable).
//
// BackupName, ListBackups, NewestBackup and PruneBackups know the backup
// directories kms_backup's pairs (snapshot and manifest) are kept in.
//
// Register adds them to a tasks.Registry. Each module's Plan is read-only
// (--check); Apply starts with the same Plan and does nothing when there is
// nothing to do, so that running a module twice changes nothing the second
// time.
//
// A refusal by a safety rule (removing a node that a survivor sees up,
// adding or restoring onto a node that holds state, a key file others can
// read) is an error with a Refused() bool method returning
// true; a wait that ran out of time is a *tasks.TimeoutError. The CLI maps
// them to exit codes 4 and 6.
package kmsmodules

import (
	"github.com/kmsctl/kmsctl/tasks"
)

// Options are what the modules take from the machine running kmsctl rather
// than from the inventory.
type Options struct {
	// Getenv reads MINIO_KMS_API_KEY and MINIO_KMS_HSM_KEY (os.Getenv);
	// nil reads nothing.
	Getenv func(string) string
	// APIKeyFile is the --api-key-file flag: a 0600 file holding the admin
	// API key, taken before the inventory's kms_api_key_file; "" if unset.
	APIKeyFile string
}

// Register adds the Key Manager modules to r.
func Register(r *tasks.Registry, o Options) {
	m := &mods{o: o}
	r.Register("kms_status", statusModule{m})
	r.Register("kms_remove_node", removeNodeModule{m})
	r.Register("kms_add_node", addNodeModule{m})
	r.Register("kms_wait", waitModule{m})
	r.Register("kms_hsm_check", hsmCheckModule{m})
	r.Register("kms_backup", backupModule{m})
	r.Register("kms_restore", restoreModule{m})
	r.Register("kms_verify", verifyModule{m})
	r.Register("kms_hsm_fingerprint", hsmFingerprintModule{m})
	r.Register("kms_probe_write", probeWriteModule{m})
	r.Register("kms_env_file", envFileModule{m})
	r.Register("kms_admin_identity", adminIdentityModule{m})
	r.Register("kms_binary_version", binaryVersionModule{})
	r.Register("kms_teardown", teardownModule{m})
}

// mods is what every module shares: the options.
type mods struct {
	o Options
}

// refusal is an error refused by a safety rule (the CLI exits 4 for it).
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

// Refused reports that this is a refusal by a safety rule.
func (r *refusal) Refused() bool { return true }
