package kmsmodules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kmsctl/kmsctl/kms"
)

// manifestSuffix names a snapshot's manifest: SNAPSHOT.manifest.json.
const manifestSuffix = ".manifest.json"

// manifest is what kms_backup writes beside a snapshot: where and when it
// was taken, the snapshot's size and sha256, the fingerprint of the node's
// HSM key, the objects the node held, and a canary ciphertext that a
// restored node must decrypt. It holds no key.
type manifest struct {
	Format  int       `json:"format"` // 1
	Created time.Time `json:"created"`
	// Cluster is the inventory group backed up ("" when not given).
	Cluster  string `json:"cluster,omitempty"`
	Endpoint string `json:"endpoint"` // the node backed up
	NodeID   uint32 `json:"node_id"`
	Version  string `json:"version"` // its server version
	// Nodes are the cluster's members as the node backed up knew them.
	Nodes    []manifestNode `json:"nodes,omitempty"`
	Snapshot string         `json:"snapshot"`
	// Compression is "gzip" when the snapshot file is gzip-compressed,
	// "" when it is the server's raw snapshot.
	Compression string `json:"compression,omitempty"`
	Size        int64  `json:"size"` // of the file
	SHA256      string `json:"sha256"`
	// Counts are the numbers of enclaves, keys, policies and identities
	// in Objects.
	Counts *counts `json:"counts,omitempty"`
	// HSMFingerprint is the fingerprint of the HSM key in the node's env
	// file: the key the snapshot's values are sealed under.
	HSMFingerprint string  `json:"hsm_fingerprint"`
	Objects        objects `json:"objects"`
	Canary         *canary `json:"canary,omitempty"` // nil when the node held no key
}

// manifestNode is a cluster member: its node ID and endpoint.
type manifestNode struct {
	ID       uint32 `json:"id"`
	Endpoint string `json:"endpoint"`
}

// counts are the numbers of objects a backup holds.
type counts struct {
	Enclaves   int `json:"enclaves"`
	Keys       int `json:"keys"`
	Policies   int `json:"policies"`
	Identities int `json:"identities"`
}

// canary is a ciphertext made at backup time under one of the backed-up
// keys; the plaintext is random and protects nothing.
type canary struct {
	Enclave    string `json:"enclave"`
	Key        string `json:"key"`
	Version    uint32 `json:"version"`
	Ciphertext []byte `json:"ciphertext"`
	Plaintext  []byte `json:"plaintext"`
}

// objects are a node's enclaves with their keys, policies and identities,
// sorted by name.
type objects struct {
	Enclaves []enclave `json:"enclaves"`
}

type enclave struct {
	Name       string   `json:"name"`
	Keys       []key    `json:"keys"`
	Policies   []string `json:"policies"`
	Identities []string `json:"identities"`
}

type key struct {
	Name    string `json:"name"`
	Version uint32 `json:"version"`
}

// count is the number of enclaves, keys, policies and identities.
func (o objects) count() counts {
	c := counts{Enclaves: len(o.Enclaves)}
	for _, e := range o.Enclaves {
		c.Keys, c.Policies, c.Identities = c.Keys+len(e.Keys), c.Policies+len(e.Policies), c.Identities+len(e.Identities)
	}
	return c
}

// data is the registered form of c.
func (c counts) data() map[string]any {
	return map[string]any{"enclaves": c.Enclaves, "keys": c.Keys, "policies": c.Policies, "identities": c.Identities}
}

// listObjects lists every object of the node c talks to.
func listObjects(ctx context.Context, c *kms.Client) (objects, error) {
	var o objects
	for es, err := range c.ListEnclaves(ctx, "") {
		if err != nil {
			return o, fmt.Errorf("list enclaves: %w", err)
		}
		o.Enclaves = append(o.Enclaves, enclave{Name: es.GetName(), Keys: []key{}, Policies: []string{}, Identities: []string{}})
	}
	for i := range o.Enclaves {
		e := &o.Enclaves[i]
		for ks, err := range c.ListKeys(ctx, e.Name, "") {
			if err != nil {
				return o, fmt.Errorf("list keys of enclave %s: %w", e.Name, err)
			}
			e.Keys = append(e.Keys, key{Name: ks.GetName(), Version: ks.GetVersion()})
		}
		for ps, err := range c.ListPolicies(ctx, e.Name, "") {
			if err != nil {
				return o, fmt.Errorf("list policies of enclave %s: %w", e.Name, err)
			}
			e.Policies = append(e.Policies, ps.GetName())
		}
		for is, err := range c.ListIdentities(ctx, e.Name, "") {
			if err != nil {
				return o, fmt.Errorf("list identities of enclave %s: %w", e.Name, err)
			}
			e.Identities = append(e.Identities, is.GetIdentity())
		}
		slices.SortFunc(e.Keys, func(a, b key) int { return strings.Compare(a.Name, b.Name) })
		slices.Sort(e.Policies)
		slices.Sort(e.Identities)
	}
	slices.SortFunc(o.Enclaves, func(a, b enclave) int { return strings.Compare(a.Name, b.Name) })
	return o, nil
}

// diff compares what a node holds (got) with what a backup held (want): the
// objects missing or different, and those the backup did not hold.
func diff(want, got objects) (missing, extra []string) {
	gotE := map[string]enclave{}
	for _, e := range got.Enclaves {
		gotE[e.Name] = e
	}
	wantE := map[string]bool{}
	for _, w := range want.Enclaves {
		wantE[w.Name] = true
		g, ok := gotE[w.Name]
		if !ok {
			missing = append(missing, "enclave "+w.Name)
			continue
		}
		gk := map[string]uint32{}
		for _, k := range g.Keys {
			gk[k.Name] = k.Version
		}
		wk := map[string]bool{}
		for _, k := range w.Keys {
			wk[k.Name] = true
			v, ok := gk[k.Name]
			switch {
			case !ok:
				missing = append(missing, fmt.Sprintf("key %s/%s", w.Name, k.Name))
			case v != k.Version:
				missing = append(missing, fmt.Sprintf("key %s/%s version %d (the node has version %d)", w.Name, k.Name, k.Version, v))
			}
		}
		for _, k := range g.Keys {
			if !wk[k.Name] {
				extra = append(extra, fmt.Sprintf("key %s/%s", w.Name, k.Name))
			}
		}
		m, x := diffNames(w.Policies, g.Policies)
		missing, extra = append(missing, prefixed("policy "+w.Name+"/", m)...), append(extra, prefixed("policy "+w.Name+"/", x)...)
		m, x = diffNames(w.Identities, g.Identities)
		missing, extra = append(missing, prefixed("identity "+w.Name+"/", m)...), append(extra, prefixed("identity "+w.Name+"/", x)...)
	}
	for _, g := range got.Enclaves {
		if !wantE[g.Name] {
			extra = append(extra, "enclave "+g.Name)
		}
	}
	return missing, extra
}

func diffNames(want, got []string) (missing, extra []string) {
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	return missing, extra
}

func prefixed(p string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return out
}

// readManifest reads a manifest written by kms_backup.
func readManifest(path string) (manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return manifest{}, fmt.Errorf("read the backup manifest: %w", err)
	}
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return manifest{}, fmt.Errorf("read the backup manifest %s: %w", path, err)
	}
	if m.Format != 1 || m.HSMFingerprint == "" || m.SHA256 == "" {
		return manifest{}, fmt.Errorf("read the backup manifest %s: format %d without its sha256 or HSM-key fingerprint; want format 1, written by kms_backup", path, m.Format)
	}
	return m, nil
}

// checkSnapshot checks that the snapshot at path is the one m describes
// (size and sha256).
func checkSnapshot(path string, m manifest) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open the snapshot: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("read the snapshot %s: %w", path, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != m.Size || sum != m.SHA256 {
		return mismatch{"the snapshot " + path + " is not the one its manifest describes (size " + fmt.Sprint(n) + ", sha256 " + sum +
			"; the manifest says " + fmt.Sprint(m.Size) + ", " + m.SHA256 + "): take the backup again or name the right manifest"}
	}
	return nil
}

// ErrSnapshotMismatch is wrapped by the errors that say a snapshot is not
// the one its manifest describes (size or sha256).
var ErrSnapshotMismatch = errors.New("the snapshot does not match its manifest")

// mismatch is a snapshot that is not the one its manifest describes.
type mismatch struct{ msg string }

func (e mismatch) Error() string        { return e.msg }
func (e mismatch) Is(target error) bool { return target == ErrSnapshotMismatch }

// checkCanary decrypts the manifest's canary through c.
func checkCanary(ctx context.Context, c *kms.Client, cn *canary) error {
	if cn == nil {
		return nil
	}
	pt, err := c.Decrypt(ctx, cn.Enclave, cn.Key, cn.Version, cn.Ciphertext, nil)
	if err != nil {
		return fmt.Errorf("decrypt the canary under key %s/%s version %d: %w", cn.Enclave, cn.Key, cn.Version, err)
	}
	if !bytes.Equal(pt, cn.Plaintext) {
		return fmt.Errorf("the canary under key %s/%s version %d decrypts to other bytes", cn.Enclave, cn.Key, cn.Version)
	}
	return nil
}
