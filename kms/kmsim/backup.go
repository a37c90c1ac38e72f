package kmsim

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// readSnapshot decodes and unseals a PUT /v1/db body (raw or gzip).
func (n *Node) readSnapshot(body []byte) (*data, *apiError) {
	if len(body) >= 2 && body[0] == 0x1f && body[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fromWire(wire.ErrInvalidBackup, "gzip: %v", err)
		}
		body, err = io.ReadAll(io.LimitReader(zr, maxDBBody+1))
		if err != nil {
			return nil, fromWire(wire.ErrInvalidBackup, "gzip: %v", err)
		}
		if len(body) > maxDBBody {
			return nil, fromWire(wire.ErrTooLarge, "decompressed snapshot exceeds %d bytes", maxDBBody)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var snap snapshot
	if err := dec.Decode(&snap); err != nil || snap.Format != snapshotFormat {
		return nil, fromWire(wire.ErrInvalidBackup, "not a %s snapshot", snapshotFormat)
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

func (n *Node) serveRestore(w http.ResponseWriter, r *http.Request) {
	if aerr := n.sysAdmin(r); aerr != nil {
		writeError(w, r, aerr)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDBBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, r, fromWire(wire.ErrTooLarge, "snapshot exceeds %d bytes", maxDBBody))
			return
		}
		writeError(w, r, fromWire(wire.ErrBadRequest, "read body: %v", err))
		return
	}
	n.mu.Lock()
	st := n.st
	n.mu.Unlock()
	if len(st.Nodes) != 1 {
		writeError(w, r, fromWire(wire.ErrRestoreNotSingle, "node %d is one of %d nodes (%s)", st.NodeID, len(st.Nodes), describeNodes(st.Nodes)))
		return
	}
	d, aerr := n.readSnapshot(body)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	err = n.commit(r.Context(), func(t *tx) (*membership, error) {
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
