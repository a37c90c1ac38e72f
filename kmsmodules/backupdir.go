package kmsmodules

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// A backup directory holds kmsctl's backups: pairs of a snapshot named
// after the vendor's pattern YYYYMMDD_HHMMSS_kms.db.gzip (UTC; a later
// backup in the same second YYYYMMDD_HHMMSS-N_kms.db.gzip, N from 2) and
// its manifest, the same name plus .manifest.json. Other files in it are
// never touched.

// backupTimeLayout is the time part of a backup's name.
const backupTimeLayout = "20060102_150405"

// BackupSuffix ends the name of every snapshot kmsctl backup writes.
const BackupSuffix = "_kms.db.gzip"

// ManifestSuffix is added to a snapshot's name to name its manifest.
const ManifestSuffix = manifestSuffix

var backupName = regexp.MustCompile(`^([0-9]{8}_[0-9]{6})(?:-([2-9]|[1-9][0-9]+))?_kms\.db\.gzip$`)

// reservedSuffix ends the name of the hidden file (.NAME.reserved) that
// holds a snapshot's name while a backup is written under it.
const reservedSuffix = ".reserved"

// maxPerSecond bounds the backups named in one second.
const maxPerSecond = 1000

// ErrNoBackup is returned by NewestBackup when no backup in the directory
// checks out.
var ErrNoBackup = errors.New("no good backup")

// BackupName is the name of the first snapshot taken in t's second:
// YYYYMMDD_HHMMSS_kms.db.gzip in UTC, the vendor's pattern.
func BackupName(t time.Time) string {
	return backupNameSeq(t, 0)
}

// backupNameSeq is BackupName with seq > 1 as -seq after the time.
func backupNameSeq(t time.Time, seq int) string {
	name := t.UTC().Format(backupTimeLayout)
	if seq > 1 {
		name += "-" + strconv.Itoa(seq)
	}
	return name + BackupSuffix
}

// ReserveBackup returns the path in dir for a snapshot taken at t that no
// other backup has or is being written under: BackupName(t), or when that
// second already has one, the same time with -2, -3, ... (newer than the
// first, as ListBackups orders them). The name is held by a hidden file
// (.NAME.reserved) made exclusively, so that two runs in one second never
// take the same name; release removes it once the backup is written or
// has failed.
func ReserveBackup(dir string, t time.Time) (string, func() error, error) {
	for seq := 1; seq <= maxPerSecond; seq++ {
		name := backupNameSeq(t, seq)
		p := filepath.Join(dir, name)
		if exists(p) || exists(p+manifestSuffix) {
			continue
		}
		hold := filepath.Join(dir, "."+name+reservedSuffix)
		f, err := os.OpenFile(hold, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("reserve the backup name %s: %w", p, err)
		}
		if err := f.Close(); err != nil {
			return "", nil, fmt.Errorf("reserve the backup name %s: %w", p, err)
		}
		// Taken meanwhile by a run that had reserved it and is done.
		if exists(p) || exists(p+manifestSuffix) {
			if err := os.Remove(hold); err != nil {
				return "", nil, fmt.Errorf("release the backup name %s: %w", p, err)
			}
			continue
		}
		release := func() error {
			if err := os.Remove(hold); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("release the backup name %s: %w", p, err)
			}
			return nil
		}
		return p, release, nil
	}
	return "", nil, fmt.Errorf("reserve a backup name in %s: %d backups named in the second of %s already", dir, maxPerSecond, t.UTC().Format(time.RFC3339))
}

// exists reports whether a file is at p (a broken symlink included).
func exists(p string) bool {
	_, err := os.Lstat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// Backup is one of kmsctl's backups in a directory: a snapshot and its
// manifest.
type Backup struct {
	Snapshot string    // path of the snapshot
	Manifest string    // path of its manifest
	Time     time.Time // when it was taken, from its name (UTC)
	// Seq orders the backups of one second: 0 for the first (the
	// vendor's name), N for the name with -N.
	Seq int
}

// ListBackups returns kmsctl's own backups in dir, newest first: each file
// named after the pattern with a manifest beside it that kmsctl wrote for
// it (one that reads as a kmsctl manifest and names that snapshot).
// Everything else is left out.
func ListBackups(dir string) ([]Backup, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list backups in %s: %w", dir, err)
	}
	var out []Backup
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !backupName.MatchString(name) {
			continue
		}
		parts := backupName.FindStringSubmatch(name)
		t, err := time.Parse(backupTimeLayout, parts[1])
		if err != nil {
			continue
		}
		seq := 0
		if parts[2] != "" {
			if seq, err = strconv.Atoi(parts[2]); err != nil {
				continue
			}
		}
		b := Backup{Snapshot: filepath.Join(dir, name), Manifest: filepath.Join(dir, name+manifestSuffix), Time: t, Seq: seq}
		m, err := readManifest(b.Manifest)
		if err != nil || m.Snapshot != name {
			continue
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Backup) int { return cmp.Or(b.Time.Compare(a.Time), cmp.Compare(b.Seq, a.Seq)) })
	return out, nil
}

// Check checks that b's snapshot is the one its manifest describes (size
// and sha256).
func (b Backup) Check() error {
	m, err := readManifest(b.Manifest)
	if err != nil {
		return err
	}
	return checkSnapshot(b.Snapshot, m)
}

// NewestBackup is "the newest backup" of dir: the newest of kmsctl's
// backups whose snapshot checks out against its manifest. It returns an
// error wrapping ErrNoBackup when none does.
func NewestBackup(dir string) (Backup, error) {
	bs, err := ListBackups(dir)
	if err != nil {
		return Backup{}, err
	}
	return newestGood(bs, dir)
}

func newestGood(bs []Backup, dir string) (Backup, error) {
	for _, b := range bs {
		if b.Check() == nil {
			return b, nil
		}
	}
	return Backup{}, fmt.Errorf("%w in %s (of %d backup(s) by kmsctl, none checks out against its manifest)", ErrNoBackup, dir, len(bs))
}

// PruneBackups removes kmsctl's backups in dir beyond the keep newest
// (snapshot and manifest, the manifest last), and returns the snapshots
// removed. The newest backup that checks out is never removed, even when
// keep newer ones do not. keep < 1 removes nothing.
func PruneBackups(dir string, keep int) ([]string, error) {
	if keep < 1 {
		return nil, nil
	}
	bs, err := ListBackups(dir)
	if err != nil {
		return nil, err
	}
	if len(bs) <= keep {
		return nil, nil
	}
	good, err := newestGood(bs, dir)
	if err != nil && !errors.Is(err, ErrNoBackup) {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, b := range bs[keep:] {
		if b.Snapshot == good.Snapshot {
			continue
		}
		if err := os.Remove(b.Snapshot); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove old backup: %w", err))
			continue
		}
		if err := os.Remove(b.Manifest); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove old backup's manifest: %w", err))
			continue
		}
		removed = append(removed, b.Snapshot)
	}
	return removed, errors.Join(errs...)
}

// BackupInfo is what a backup's manifest says of it, for reports,
// metrics and recover cluster's checks: when it was taken, of which
// cluster and node, the snapshot's size, the numbers of objects, whether
// it has a canary and the HSM key's fingerprint. It holds no key.
type BackupInfo struct {
	Snapshot string    `json:"snapshot,omitempty"` // path of the snapshot (CheckBackup)
	Manifest string    `json:"manifest,omitempty"` // path of its manifest (CheckBackup)
	Created  time.Time `json:"created"`
	Cluster  string    `json:"cluster,omitempty"`
	Endpoint string    `json:"endpoint,omitempty"` // the node it was taken from
	Version  string    `json:"version,omitempty"`  // that node's server version
	// Nodes are the endpoints of the cluster's members then.
	Nodes []string `json:"nodes,omitempty"`
	Size  int64    `json:"size"`
	// HSMFingerprint is the fingerprint of the HSM key the snapshot's
	// values are sealed under.
	HSMFingerprint string `json:"hsm_fingerprint"`
	Enclaves       int    `json:"enclaves"`
	Keys           int    `json:"keys"`
	Policies       int    `json:"policies"`
	Identities     int    `json:"identities"`
	// Canary: the manifest holds a canary ciphertext that a restored node
	// must decrypt.
	Canary bool `json:"canary"`
}

// info is what m says of its backup.
func (m manifest) info() BackupInfo {
	c := m.Objects.count()
	if m.Counts != nil {
		c = *m.Counts
	}
	b := BackupInfo{Created: m.Created, Cluster: m.Cluster, Endpoint: m.Endpoint, Version: m.Version, Size: m.Size,
		Enclaves: c.Enclaves, Keys: c.Keys, Policies: c.Policies, Identities: c.Identities,
		Canary: m.Canary != nil, HSMFingerprint: m.HSMFingerprint}
	for _, n := range m.Nodes {
		b.Nodes = append(b.Nodes, n.Endpoint)
	}
	return b
}

// Info reads b's manifest.
func (b Backup) Info() (BackupInfo, error) {
	m, err := readManifest(b.Manifest)
	if err != nil {
		return BackupInfo{}, err
	}
	return m.info(), nil
}

// ErrNoManifest is wrapped by CheckBackup's error when the snapshot has no
// manifest beside it (a backup made with the vendor's CLI, say).
var ErrNoManifest = errors.New("no manifest of kmsctl beside the snapshot")

// CheckBackup reads the manifest beside snapshot (SNAPSHOT.manifest.json)
// and checks the snapshot against it (size and sha256). The error wraps
// ErrNoManifest when there is no manifest, ErrSnapshotMismatch when the
// snapshot is not the one it describes.
func CheckBackup(snapshot string) (BackupInfo, error) {
	mpath := snapshot + manifestSuffix
	if _, err := os.Stat(mpath); errors.Is(err, fs.ErrNotExist) {
		return BackupInfo{}, fmt.Errorf("%w: %s", ErrNoManifest, mpath)
	}
	m, err := readManifest(mpath)
	if err != nil {
		return BackupInfo{}, err
	}
	if err := checkSnapshot(snapshot, m); err != nil {
		return BackupInfo{}, err
	}
	b := m.info()
	b.Snapshot, b.Manifest = snapshot, mpath
	return b, nil
}
