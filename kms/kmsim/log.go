package kmsim

import (
	"encoding/hex"
	"fmt"
)

// Kinds of object a change puts or deletes.
const (
	kindEnclave  = "enclave"
	kindKey      = "key"
	kindPolicy   = "policy"
	kindIdentity = "identity"
)

// change is one object that a write puts or deletes: an enclave (Name
// empty), or a key, policy or identity of an enclave.
type change struct {
	Kind     string    `json:"kind"`
	Enclave  string    `json:"enclave"`
	Name     string    `json:"name,omitempty"`
	Delete   bool      `json:"delete,omitempty"`
	NewEncl  *enclave  `json:"new_enclave,omitempty"` // put of an enclave: a new, empty one
	Key      *key      `json:"key,omitempty"`
	Policy   *policy   `json:"policy,omitempty"`
	Identity *identity `json:"identity,omitempty"`
}

// entry is one committed write as the leader replicates it and every node
// appends it to its log: the changes of one command, applied in order, and
// the new cluster definition if the write changed it. A restore carries
// the whole data instead (it only runs on a one-node cluster).
type entry struct {
	Index   uint64            `json:"index"` // the commit it makes
	ID      string            `json:"id"`    // random; the Head of a node that applied it
	Prev    string            `json:"prev"`  // the Head it applies to
	Changes []change          `json:"changes,omitempty"`
	Nodes   map[uint32]string `json:"nodes,omitempty"` // the new definition, if it changed
	Epoch   uint64            `json:"epoch,omitempty"` // its epoch
	Data    *data             `json:"data,omitempty"`  // a restore: replaces all data
}

// newEntryID returns a random entry ID.
func newEntryID() (string, error) {
	b, err := randomBytes(12)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// apply returns s with e applied (s is unchanged). It fails if e does not
// follow s, or names an enclave s does not have: the node then needs the
// leader's snapshot.
func (s *nodeState) apply(e *entry) (*nodeState, error) {
	if e.Index != s.Commit+1 || e.Prev != s.Head {
		return nil, fmt.Errorf("entry %d (after %q) does not follow commit %d (%q)", e.Index, e.Prev, s.Commit, s.Head)
	}
	next := s.clone()
	if e.Data != nil {
		next.Data = e.Data
	}
	for _, c := range e.Changes {
		d, err := next.Data.apply(c)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", e.Index, err)
		}
		next.Data = d
	}
	if e.Nodes != nil {
		next.Nodes, next.Epoch = e.Nodes, e.Epoch
	}
	next.Commit, next.Head = e.Index, e.ID
	return next, nil
}

// apply returns d with c applied (d is unchanged).
func (d *data) apply(c change) (*data, error) {
	if c.Kind == kindEnclave {
		if c.Delete {
			return d.withoutEnclave(c.Enclave), nil
		}
		if c.NewEncl == nil || c.NewEncl.Name != c.Enclave {
			return nil, fmt.Errorf("put of enclave %q without the enclave", c.Enclave)
		}
		return d.withEnclave(c.NewEncl), nil
	}
	e, ok := d.Enclaves[c.Enclave]
	if !ok {
		return nil, fmt.Errorf("no enclave %q", c.Enclave)
	}
	ec := *e
	switch {
	case c.Kind == kindKey && c.Delete:
		ec.Keys = ec.Keys.without(c.Name)
	case c.Kind == kindKey && c.Key != nil:
		ec.Keys = ec.Keys.with(c.Name, c.Key)
	case c.Kind == kindPolicy && c.Delete:
		ec.Policies = ec.Policies.without(c.Name)
	case c.Kind == kindPolicy && c.Policy != nil:
		ec.Policies = ec.Policies.with(c.Name, c.Policy)
	case c.Kind == kindIdentity && c.Delete:
		ec.Identities = ec.Identities.without(c.Name)
	case c.Kind == kindIdentity && c.Identity != nil:
		ec.Identities = ec.Identities.with(c.Name, c.Identity)
	default:
		return nil, fmt.Errorf("invalid change of %s %q in enclave %q", c.Kind, c.Name, c.Enclave)
	}
	return d.withEnclave(&ec), nil
}

// tx builds the entry of one write on the leader. Its state is the state
// with the changes so far: read it, never modify it; change it only
// through tx's methods, with new objects.
type tx struct {
	st *nodeState
	e  entry
}

// record applies c to the tx state and adds it to the entry.
func (t *tx) record(c change) error {
	d, err := t.st.Data.apply(c)
	if err != nil {
		return err
	}
	next := t.st.clone()
	next.Data = d
	t.st = next
	t.e.Changes = append(t.e.Changes, c)
	return nil
}

func (t *tx) putEnclave(e *enclave) error {
	return t.record(change{Kind: kindEnclave, Enclave: e.Name, NewEncl: e})
}

func (t *tx) deleteEnclave(name string) error {
	return t.record(change{Kind: kindEnclave, Enclave: name, Delete: true})
}

func (t *tx) putKey(enclave string, k *key) error {
	return t.record(change{Kind: kindKey, Enclave: enclave, Name: k.Name, Key: k})
}

func (t *tx) putPolicy(enclave string, p *policy) error {
	return t.record(change{Kind: kindPolicy, Enclave: enclave, Name: p.Name, Policy: p})
}

func (t *tx) putIdentity(enclave string, i *identity) error {
	return t.record(change{Kind: kindIdentity, Enclave: enclave, Name: i.Identity, Identity: i})
}

// delete removes the key, policy or identity name (kind) of enclave.
func (t *tx) delete(kind, enclave, name string) error {
	return t.record(change{Kind: kind, Enclave: enclave, Name: name, Delete: true})
}

// setNodes changes the cluster definition (a membership change: epoch+1).
func (t *tx) setNodes(nodes map[uint32]string) {
	next := t.st.clone()
	next.Nodes, next.Epoch = nodes, t.st.Epoch+1
	t.st = next
	t.e.Nodes, t.e.Epoch = nodes, next.Epoch
}

// setData replaces all data (a restore).
func (t *tx) setData(d *data) {
	next := t.st.clone()
	next.Data = d
	t.st = next
	t.e.Data, t.e.Changes = d, nil
}
