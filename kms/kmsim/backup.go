package kmsim

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/kmsctl/kmsctl/kms/wire"
)

// snapshotFormat names the /v1/db snapshot format: a JSON object whose
// "sealed" member is the replicated data (enclaves, keys, policies,
// identities; never membership) as JSON, sealed with AES-256-GCM under a key
// derived from the HSM key. The fingerprint of that HSM key and counts are in
// plaintext, so a restore with another key is refused with a clear message.
const snapshotFormat = "kmsim-backup-v1"

type snapshot struct {
	Format         string    `json:"format"`
	HSMFingerprint string    `json:"hsm_fingerprint"`
	CreatedAt      time.Time `json:"created_at"`
	Commit         uint64    `json:"commit"`
	Enclaves       int       `json:"enclaves"`
	Keys           int       `json:"keys"`
	Policies       int       `json:"policies"`
	Identities     int       `json:"identities"`
	Sealed         []byte    `json:"sealed"`
}

// acceptsGzip reports whether the client accepts a gzip body (Accept-Encoding
// or, as the vendor SDK sends it, an Accept value "gzip").
func acceptsGzip(r *http.Request) bool {
	for _, h := range []string{"Accept-Encoding", "Accept"} {
		for _, v := range r.Header.Values(h) {
			for _, part := range strings.Split(v, ",") {
				token, _, _ := strings.Cut(strings.TrimSpace(part), ";")
				if strings.EqualFold(token, "gzip") {
					return true
				}
			}
		}
	}
	return false
}

// sysAdmin checks that the request comes from a SysAdmin.
func (n *Node) sysAdmin(r *http.Request) *apiError {
	n.mu.Lock()
	st := n.st
	n.mu.Unlock()
	c := &call{n: n, st: st, identity: identityOf(r)}
	if c.identity == "" || !c.isSysAdmin() {
		return errAccessDenied
	}
	return nil
}

func (n *Node) serveBackup(w http.ResponseWriter, r *http.Request) {
	if aerr := n.sysAdmin(r); aerr != nil {
		writeError(w, r, aerr)
		return
	}
	n.mu.Lock()
	st := n.st
	n.mu.Unlock()
	plain, err := json.Marshal(st.Data)
	if err != nil {
		writeError(w, r, errorf(http.StatusInternalServerError, "encode snapshot: %v", err))
		return
	}
	sealed, err := seal(n.backupKey, plain, []byte(snapshotFormat))
	if err != nil {
		writeError(w, r, errorf(http.StatusInternalServerError, "seal snapshot: %v", err))
		return
	}
	snap := snapshot{Format: snapshotFormat, HSMFingerprint: n.cfg.HSMKey.Fingerprint(), CreatedAt: time.Now().UTC(), Commit: st.Commit, Sealed: sealed}
	for _, e := range st.Data.Enclaves {
		snap.Enclaves++
		snap.Keys += e.Keys.len()
		snap.Policies += e.Policies.len()
		snap.Identities += e.Identities.len()
	}
	body, err := json.Marshal(snap)
	if err != nil {
		writeError(w, r, errorf(http.StatusInternalServerError, "encode snapshot: %v", err))
		return
	}
	if acceptsGzip(r) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(body)
		if err := zw.Close(); err != nil {
			writeError(w, r, errorf(http.StatusInternalServerError, "compress snapshot: %v", err))
			return
		}
		body = buf.Bytes()
		w.Header().Set("Content-Encoding", "gzip")
	}
	writeBody(w, wire.ContentTypeProtobuf, body)
}

// errNotSnapshot refuses a body that is not a snapshot of ours.
var errNotSnapshot = fromWire(wire.ErrInvalidBackup, "not a %s snapshot", snapshotFormat)

// decodeSnapshot reads a snapshot from r without reading ahead of what it
// decodes: a body that does not start with our format field is refused
// after a few bytes.
func decodeSnapshot(r io.Reader) (*snapshot, *apiError) {
	var snap snapshot
	fields := map[string]any{
		"format": &snap.Format, "hsm_fingerprint": &snap.HSMFingerprint, "created_at": &snap.CreatedAt,
		"commit": &snap.Commit, "enclaves": &snap.Enclaves, "keys": &snap.Keys, "policies": &snap.Policies,
		"identities": &snap.Identities, "sealed": &snap.Sealed,
	}
	dec := json.NewDecoder(r)
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errNotSnapshot
	}
	for first := true; dec.More(); first = false {
		t, err := dec.Token()
		name, ok := t.(string)
		ptr, known := fields[name]
		if err != nil || !ok || !known || (first && name != "format") {
			return nil, errNotSnapshot
		}
		if err := dec.Decode(ptr); err != nil || snap.Format != snapshotFormat {
			return nil, errNotSnapshot
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, errNotSnapshot
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fromWire(wire.ErrInvalidBackup, "trailing data after the snapshot")
	}
	return &snap, nil
}

// readSnapshot decodes and unseals a raw snapshot from r.
func (n *Node) readSnapshot(r io.Reader) (*data, *apiError) {
	snap, aerr := decodeSnapshot(r)
	if aerr != nil {
		return nil, aerr
	}
	if snap.HSMFingerprint != n.cfg.HSMKey.Fingerprint() {
		return nil, fromWire(wire.ErrHSMMismatch, "the snapshot was made under HSM key %s, this node has %s", snap.HSMFingerprint, n.cfg.HSMKey.Fingerprint())
	}
	plain, err := open(n.backupKey, snap.Sealed, []byte(snapshotFormat))
	if err != nil {
		return nil, fromWire(wire.ErrInvalidBackup, "the snapshot does not authenticate under this HSM key (damaged file)")
	}
	var d data
	if err := json.Unmarshal(plain, &d); err != nil {
		return nil, fromWire(wire.ErrInvalidBackup, "decode snapshot data: %v", err)
	}
	d.normalize()
	return &d, nil
}

// spool streams a PUT /v1/db body (raw, or gzip: sniffed and decompressed
// on the fly) into a temporary file under the data directory, at most
// MaxSnapshotSize bytes before and after decompression, and returns it
// rewound. The caller closes and removes it.
func (n *Node) spool(w http.ResponseWriter, r *http.Request) (*os.File, *apiError) {
	limit := n.cfg.MaxSnapshotSize
	br := bufio.NewReader(n.body(w, r, limit))
	var src io.Reader = br
	what := "snapshot"
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fromWire(wire.ErrInvalidBackup, "gzip: %v", err)
		}
		src, what = io.LimitReader(zr, limit+1), "decompressed snapshot"
	}
	f, err := os.CreateTemp(n.cfg.Dir, "restore-*.tmp")
	if err != nil {
		return nil, errorf(http.StatusInternalServerError, "create a file for the snapshot: %v", err)
	}
	fail := func(e *apiError) (*os.File, *apiError) {
		f.Close()
		os.Remove(f.Name())
		return nil, e
	}
	size, err := io.Copy(f, src)
	switch {
	case err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, new(*http.MaxBytesError))):
		return fail(n.bodyError(err, "snapshot"))
	case err != nil:
		return fail(fromWire(wire.ErrInvalidBackup, "read the %s: %v", what, err))
	case size > limit:
		return fail(fromWire(wire.ErrTooLarge, "%s exceeds %d bytes", what, limit))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(errorf(http.StatusInternalServerError, "rewind the snapshot file: %v", err))
	}
	return f, nil
}

func (n *Node) serveRestore(w http.ResponseWriter, r *http.Request) {
	if aerr := n.sysAdmin(r); aerr != nil {
		writeError(w, r, aerr)
		return
	}
	n.mu.Lock()
	st := n.st
	n.mu.Unlock()
	if len(st.Nodes) != 1 {
		writeError(w, r, fromWire(wire.ErrRestoreNotSingle, "node %d is one of %d nodes (%s)", st.NodeID, len(st.Nodes), describeNodes(st.Nodes)))
		return
	}
	f, aerr := n.spool(w, r)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	defer os.Remove(f.Name())
	d, aerr := n.readSnapshot(bufio.NewReader(f))
	f.Close()
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	err := n.commit(r.Context(), func(t *tx) (*membership, error) {
		if st := t.st; len(st.Nodes) != 1 {
			return nil, fromWire(wire.ErrRestoreNotSingle, "node %d is one of %d nodes (%s)", st.NodeID, len(st.Nodes), describeNodes(st.Nodes))
		}
		t.setData(d)
		return nil, nil
	})
	if err != nil {
		writeError(w, r, asAPIError(err))
		return
	}
	n.logf("restored a snapshot: %s", fmt.Sprintf("%d enclaves", len(d.Enclaves)))
	writeBody(w, wire.ContentTypeText, nil)
}
