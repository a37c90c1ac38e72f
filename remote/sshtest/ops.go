package sshtest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// OpKind names a recorded operation.
type OpKind string

// The operations Server.Ops records.
const (
	OpOpen    OpKind = "open"    // SSH_FXP_OPEN: Path, Write (opened for writing), Create, Excl
	OpOpened  OpKind = "opened"  // the server's handle for an OPEN of Path, recorded before the client has it
	OpRead    OpKind = "read"    // SSH_FXP_READ of the file at Path: Len bytes asked
	OpWrite   OpKind = "write"   // SSH_FXP_WRITE to the file at Path: Len payload bytes
	OpFsync   OpKind = "fsync"   // fsync@openssh.com of the file at Path
	OpClose   OpKind = "close"   // SSH_FXP_CLOSE of the file at Path
	OpSetstat OpKind = "setstat" // SSH_FXP_SETSTAT / FSETSTAT of Path; Mode when permissions were set
	OpRename  OpKind = "rename"  // SSH_FXP_RENAME or posix-rename@openssh.com: Path to To
	OpRemove  OpKind = "remove"  // SSH_FXP_REMOVE of Path
	OpMkdir   OpKind = "mkdir"   // SSH_FXP_MKDIR of Path
	OpRmdir   OpKind = "rmdir"   // SSH_FXP_RMDIR of Path
	OpExec    OpKind = "exec"    // an exec request: Cmd
)

// Op is one request the server received: an SFTP file operation or an exec
// command line. Paths are as the server resolves them (absolute when
// Config.Dir is set); handles are resolved to the path they were opened as.
//
// An SFTP op also carries a snapshot of Path and its directory, taken when
// the request arrived (before it was carried out) or, for OpOpened, right
// after the server opened the file and before the client learnt of it:
// with the ops in order, the modes a file had at every moment between its
// creation and its last operation are in the snapshots.
type Op struct {
	Kind   OpKind
	Path   string
	To     string      // rename: the new name
	Write  bool        // open: SSH_FXF_WRITE was asked
	Create bool        // open: SSH_FXF_CREAT was asked
	Excl   bool        // open: SSH_FXF_EXCL was asked
	Len    int         // read: bytes asked; write: payload bytes
	Mode   fs.FileMode // setstat: the permission bits (0o777) set, when HasMode
	// HasMode says a setstat set permissions.
	HasMode bool
	Cmd     string // exec: the command line as received

	// Exists says Path existed at the snapshot.
	Exists bool
	// FileMode is Path's type and permission bits (not following a
	// symlink) at the snapshot, when Exists.
	FileMode fs.FileMode
	// DirMode is the type and permission bits of Path's directory at the
	// snapshot, 0 when it did not exist.
	DirMode fs.FileMode
}

// snapshot fills op's Exists, FileMode and DirMode from the file system.
func snapshot(op Op) Op {
	if fi, err := os.Lstat(op.Path); err == nil {
		op.Exists, op.FileMode = true, fi.Mode()
	}
	if fi, err := os.Lstat(filepath.Dir(op.Path)); err == nil {
		op.DirMode = fi.Mode()
	}
	return op
}

// String renders op for test failure messages.
func (op Op) String() string {
	switch op.Kind {
	case OpExec:
		return fmt.Sprintf("exec %q", op.Cmd)
	case OpRename:
		return fmt.Sprintf("rename %s -> %s", op.Path, op.To)
	case OpOpen:
		return fmt.Sprintf("open %s (write=%v create=%v excl=%v)", op.Path, op.Write, op.Create, op.Excl)
	case OpRead, OpWrite:
		return fmt.Sprintf("%s %s (%d bytes)", op.Kind, op.Path, op.Len)
	case OpSetstat:
		if op.HasMode {
			return fmt.Sprintf("setstat %s mode %04o", op.Path, op.Mode)
		}
		return "setstat " + op.Path
	}
	return string(op.Kind) + " " + op.Path
}
