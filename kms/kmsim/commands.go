package kmsim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// call is one command of a POST /v1/kms request.
type call struct {
	n        *Node
	ctx      context.Context
	st       *nodeState // snapshot the reads use; writes re-check on the leader's copy
	identity string
	enclave  string
	cmd      wire.Command
	now      time.Time
}

type handler func(c *call, payload []byte) (proto.Message, *apiError)

// handlers is the immutable command table of the simulator.
var handlers = map[wire.Command]handler{
	wire.ClusterAddNode:    clusterAddNode,
	wire.ClusterRemoveNode: clusterRemoveNode,
	wire.ClusterStatus:     clusterStatus,
	wire.ClusterEdit:       clusterEdit,
	wire.ClusterAddHSM:     unsupported,
	wire.ClusterRemoveHSM:  unsupported,
	wire.EnclaveCreate:     enclaveCreate,
	wire.EnclaveDelete:     enclaveDelete,
	wire.EnclaveStatus:     enclaveStatus,
	wire.EnclaveList:       enclaveList,
	wire.KeyCreate:         keyCreate,
	wire.KeyImport:         keyImport,
	wire.KeyDelete:         keyDelete,
	wire.KeyStatus:         keyStatus,
	wire.KeyEncrypt:        keyEncrypt,
	wire.KeyDecrypt:        keyDecrypt,
	wire.KeyGenerate:       keyGenerate,
	wire.KeyList:           keyList,
	wire.KeyListVersions:   unsupported,
	wire.KeyMAC:            keyMAC,
	wire.PolicyCreate:      policyCreate,
	wire.PolicyDelete:      policyDelete,
	wire.PolicyAssign:      policyAssign,
	wire.PolicyGet:         policyGet,
	wire.PolicyStatus:      policyStatus,
	wire.PolicyList:        policyList,
	wire.IdentityCreate:    identityCreate,
	wire.IdentityDelete:    identityDelete,
	wire.IdentityStatus:    identityStatus,
	wire.IdentityList:      identityList,
}

// maxFrames caps the commands of one request.
const maxFrames = 1000

// decodeFrames splits a request body into frames.
func decodeFrames(body []byte) ([]wire.Frame, *apiError) {
	dec := wire.NewDecoder(bytes.NewReader(body), maxFrameSize)
	var frames []wire.Frame
	for {
		f, err := dec.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, wire.ErrFrameTooLarge) {
			return nil, fromWire(wire.ErrTooLarge, "%v", err)
		}
		if err != nil {
			return nil, fromWire(wire.ErrBadRequest, "%v", err)
		}
		if _, ok := handlers[f.Command]; !ok {
			return nil, fromWire(wire.ErrUnknownCommand, "frame %d: %s", len(frames)+1, f.Command)
		}
		if len(frames) == maxFrames {
			return nil, fromWire(wire.ErrTooLarge, "more than %d frames in one request", maxFrames)
		}
		frames = append(frames, f)
	}
	if len(frames) == 0 {
		return nil, fromWire(wire.ErrBadRequest, "no command frames")
	}
	return frames, nil
}

// execute runs the commands of one request body for identity and returns
// the response frames. Writes run on the leader: a follower forwards them.
func (n *Node) execute(ctx context.Context, identity, enclave string, body []byte, forwarded bool) ([]byte, *apiError) {
	frames, aerr := decodeFrames(body)
	if aerr != nil {
		return nil, aerr
	}
	if identity == "" {
		return nil, errAccessDenied
	}
	write := false
	for _, f := range frames {
		write = write || f.Command.IsWrite()
	}
	if write && len(frames) > 1 {
		return nil, fromWire(wire.ErrBadRequest, "a state-changing command must be sent alone, not in a batch of %d", len(frames))
	}
	if enclave == "" {
		enclave = defaultEnclave
	}
	n.mu.Lock()
	st, leader := n.st, n.leaderLocked()
	n.mu.Unlock()
	// CLUSTER:EDIT is local by design; other writes go to the leader.
	if write && frames[0].Command != wire.ClusterEdit && leader != int64(st.NodeID) {
		if forwarded || leader < 0 {
			return nil, errNoLeader
		}
		return n.forward(ctx, identity, enclave, body)
	}
	var out []byte
	for _, f := range frames {
		c := &call{n: n, ctx: ctx, st: st, identity: identity, enclave: enclave, cmd: f.Command, now: time.Now().UTC()}
		msg, aerr := handlers[f.Command](c, f.Payload)
		if aerr != nil {
			return nil, aerr
		}
		var err error
		if out, err = wire.AppendFrame(out, f.Command, msg); err != nil {
			return nil, errorf(http.StatusInternalServerError, "encode response: %v", err)
		}
	}
	return out, nil
}

// authorize checks that the caller may run c.cmd on resource (a key,
// policy or identity name; "" for commands without one).
func (c *call) authorize(resource string) *apiError {
	if c.identity == c.n.adminID {
		return nil
	}
	id, e := c.st.Data.findIdentity(c.identity)
	switch {
	case id == nil:
		return errAccessDenied
	case id.Privilege == privSysAdmin:
		return nil
	case c.cmd.IsCluster() || e.Name != c.enclave:
		return errAccessDenied
	case id.Privilege == privAdmin:
		return nil
	}
	p, ok := e.Policies.get(id.Policy)
	if !ok {
		return errAccessDenied
	}
	name := c.cmd.Name()
	if matchRules(p.Deny[name], resource) || !matchRules(p.Allow[name], resource) {
		return errAccessDenied
	}
	return nil
}

// isSysAdmin reports whether the caller has SysAdmin privilege.
func (c *call) isSysAdmin() bool {
	if c.identity == c.n.adminID {
		return true
	}
	id, _ := c.st.Data.findIdentity(c.identity)
	return id != nil && id.Privilege == privSysAdmin
}

func matchRules(patterns []string, resource string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, resource); err == nil && ok {
			return true
		}
	}
	return false
}

// enclaveOf returns the request's enclave in st.
func (c *call) enclaveOf(st *nodeState) (*enclave, *apiError) {
	e, ok := st.Data.Enclaves[c.enclave]
	if !ok {
		return nil, errNoEnclave
	}
	return e, nil
}

// commit runs a write on the leader (see Node.commit).
func (c *call) commit(mutate func(t *tx) error) (proto.Message, *apiError) {
	err := c.n.commit(c.ctx, func(t *tx) (*membership, error) { return nil, mutate(t) })
	return nil, asAPIError(err)
}

// lookupIn authorizes name and returns it from the map of the request's
// enclave that pick selects, or notFound.
func lookupIn[T any](c *call, name string, notFound *apiError, pick func(e *enclave) objects[T]) (T, *apiError) {
	var zero T
	if err := c.authorize(name); err != nil {
		return zero, err
	}
	e, aerr := c.enclaveOf(c.st)
	if aerr != nil {
		return zero, aerr
	}
	v, ok := pick(e).get(name)
	if !ok {
		return zero, notFound
	}
	return v, nil
}

// deleteIn commits the removal of name (of kind) from the objects of the
// request's enclave that pick selects; notFound if it is not there.
func deleteIn[T any](c *call, kind, name string, notFound *apiError, pick func(e *enclave) objects[T]) (proto.Message, *apiError) {
	if err := c.authorize(name); err != nil {
		return nil, err
	}
	return c.commit(func(t *tx) error {
		e, aerr := c.enclaveOf(t.st)
		if aerr != nil {
			return aerr
		}
		if _, ok := pick(e).get(name); !ok {
			return notFound
		}
		return t.delete(kind, e.Name, name)
	})
}

// listIn decodes a ListRequest, authorizes its prefix and returns one page of
// the map of the request's enclave that pick selects (sorted by name) and the
// name the next page continues at.
func listIn[T any](c *call, payload []byte, pick func(e *enclave) objects[T]) ([]T, string, *apiError) {
	var req pb.ListRequest
	if err := decode(payload, &req); err != nil {
		return nil, "", err
	}
	if err := c.authorize(req.Prefix); err != nil {
		return nil, "", err
	}
	e, aerr := c.enclaveOf(c.st)
	if aerr != nil {
		return nil, "", aerr
	}
	items, next := pick(e).page(req.Prefix, req.ContinueAt, req.Limit)
	return items, next, nil
}

func enclaveKeys(e *enclave) objects[*key]            { return e.Keys }
func enclavePolicies(e *enclave) objects[*policy]     { return e.Policies }
func enclaveIdentities(e *enclave) objects[*identity] { return e.Identities }

func decode(payload []byte, m proto.Message) *apiError {
	if err := proto.Unmarshal(payload, m); err != nil {
		return fromWire(wire.ErrBadRequest, "decode %s: %v", m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

// validName checks an enclave, key or policy name.
func validName(kind, name string) *apiError {
	if name == "" || len(name) > 128 || strings.ContainsAny(name, "/\\*?[]") ||
		strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		return fromWire(wire.ErrBadRequest, "invalid %s name %q", kind, name)
	}
	return nil
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func unsupported(c *call, _ []byte) (proto.Message, *apiError) {
	return nil, fromWire(wire.ErrBadRequest, "%s is not supported by the simulator", c.cmd)
}

// --- cluster ---

func clusterStatus(c *call, payload []byte) (proto.Message, *apiError) {
	if err := c.authorize(""); err != nil {
		return nil, err
	}
	if err := decode(payload, &pb.ClusterStatusRequest{}); err != nil {
		return nil, err
	}
	return c.n.clusterStatus(c.ctx), nil
}

func clusterEdit(c *call, payload []byte) (proto.Message, *apiError) {
	if err := c.authorize(""); err != nil {
		return nil, err
	}
	var req pb.EditClusterRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	return nil, c.n.editCluster(req.RemoveIDs)
}

func clusterAddNode(c *call, payload []byte) (proto.Message, *apiError) {
	if err := c.authorize(""); err != nil {
		return nil, err
	}
	var req pb.AddClusterNodeRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	return nil, c.n.addNode(c.ctx, req.Host)
}

func clusterRemoveNode(c *call, payload []byte) (proto.Message, *apiError) {
	if err := c.authorize(""); err != nil {
		return nil, err
	}
	var req pb.RemoveClusterNodeRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	return nil, c.n.removeNode(c.ctx, req.Host, req.DeleteClusterOnHost)
}

// --- enclaves ---

func enclaveCreate(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.CreateEnclaveRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	if err := c.authorize(req.Name); err != nil {
		return nil, err
	}
	if err := validName("enclave", req.Name); err != nil {
		return nil, err
	}
	return c.commit(func(t *tx) error {
		if _, ok := t.st.Data.Enclaves[req.Name]; ok {
			return errEnclaveExists
		}
		return t.putEnclave(newEnclave(req.Name, c.now, c.identity))
	})
}

func enclaveDelete(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.DeleteEnclaveRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	if err := c.authorize(req.Name); err != nil {
		return nil, err
	}
	return c.commit(func(t *tx) error {
		if _, ok := t.st.Data.Enclaves[req.Name]; !ok {
			return errNoEnclave
		}
		return t.deleteEnclave(req.Name)
	})
}

func enclaveStatusOf(e *enclave) *pb.EnclaveStatusResponse {
	return &pb.EnclaveStatusResponse{Name: e.Name, CreatedAt: ts(e.CreatedAt), CreatedBy: e.CreatedBy}
}

func enclaveStatus(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.EnclaveStatusRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	if err := c.authorize(req.Name); err != nil {
		return nil, err
	}
	e, ok := c.st.Data.Enclaves[req.Name]
	if !ok {
		return nil, errNoEnclave
	}
	return enclaveStatusOf(e), nil
}

func enclaveList(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.ListRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	if err := c.authorize(""); err != nil {
		return nil, err
	}
	names, next := page(mapKeys(c.st.Data.Enclaves), req.Prefix, req.ContinueAt, req.Limit)
	resp := &pb.ListEnclavesResponse{ContinueAt: next}
	for _, name := range names {
		resp.Enclaves = append(resp.Enclaves, enclaveStatusOf(c.st.Data.Enclaves[name]))
	}
	return resp, nil
}

// --- keys ---

func keyType(t string) (string, *apiError) {
	switch {
	case t == "" || strings.EqualFold(t, keyTypeAES256) || strings.EqualFold(t, "AES256-GCM"):
		return keyTypeAES256, nil
	case strings.EqualFold(t, keyTypeChaCha20) || strings.EqualFold(t, "ChaCha20-Poly1305"):
		return keyTypeChaCha20, nil
	}
	return "", fromWire(wire.ErrBadRequest, "unsupported key type %q (want AES256 or ChaCha20)", t)
}

func addKey(c *call, name, typ string, secret []byte, addVersion bool) (proto.Message, *apiError) {
	if err := c.authorize(name); err != nil {
		return nil, err
	}
	if err := validName("key", name); err != nil {
		return nil, err
	}
	typ, aerr := keyType(typ)
	if aerr != nil {
		return nil, aerr
	}
	if secret == nil {
		var err error
		if secret, err = randomBytes(32); err != nil {
			return nil, errorf(http.StatusInternalServerError, "%v", err)
		}
	}
	return c.commit(func(t *tx) error {
		e, aerr := c.enclaveOf(t.st)
		if aerr != nil {
			return aerr
		}
		old, exists := e.Keys.get(name)
		k := &key{Name: name, Type: typ}
		switch {
		case exists && !addVersion:
			return errKeyExists
		case !exists && addVersion:
			return errNoKey
		case exists:
			k = &key{Name: name, Type: old.Type, Latest: old.Latest, Versions: slices.Clone(old.Versions)}
		}
		// Version numbers are never reused, also after the latest was deleted.
		k.Latest++
		k.Versions = append(k.Versions, keyVersion{Version: k.Latest, Secret: secret, CreatedAt: c.now, CreatedBy: c.identity})
		return t.putKey(e.Name, k)
	})
}

func keyCreate(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.CreateKeyRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	return addKey(c, req.Name, req.Type, nil, req.AddVersion)
}

func keyImport(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.ImportKeyRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	if len(req.Key) != 32 {
		return nil, fromWire(wire.ErrBadRequest, "imported key has %d bytes, want 32", len(req.Key))
	}
	return addKey(c, req.Name, req.Type, req.Key, false)
}

func keyDelete(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.DeleteKeyRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	if err := c.authorize(req.Name); err != nil {
		return nil, err
	}
	if req.AllVersions && req.Version != 0 {
		return nil, fromWire(wire.ErrBadRequest, "version and all versions are exclusive")
	}
	return c.commit(func(t *tx) error {
		e, aerr := c.enclaveOf(t.st)
		if aerr != nil {
			return aerr
		}
		k, ok := e.Keys.get(req.Name)
		if !ok {
			return errNoKey
		}
		kv, ok := k.version(req.Version)
		if !ok {
			return errNoKey
		}
		if req.AllVersions || len(k.Versions) == 1 {
			return t.delete(kindKey, e.Name, req.Name)
		}
		v := kv.Version
		nk := *k
		nk.Versions = slices.DeleteFunc(slices.Clone(k.Versions), func(x keyVersion) bool { return x.Version == v })
		return t.putKey(e.Name, &nk)
	})
}

// lookupKey returns key name (version v, 0 = latest) of the request's enclave.
func (c *call) lookupKey(name string, v uint32) (*key, *keyVersion, *apiError) {
	k, aerr := lookupIn(c, name, errNoKey, enclaveKeys)
	if aerr != nil {
		return nil, nil, aerr
	}
	kv, ok := k.version(v)
	if !ok {
		return nil, nil, errNoKey
	}
	return k, kv, nil
}

func keyStatusOf(k *key, kv *keyVersion) *pb.KeyStatusResponse {
	return &pb.KeyStatusResponse{Name: k.Name, Version: kv.Version, Type: k.Type, CreatedAt: ts(kv.CreatedAt), CreatedBy: kv.CreatedBy}
}

func keyStatus(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.KeyStatusRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	k, kv, aerr := c.lookupKey(req.Name, req.Version)
	if aerr != nil {
		return nil, aerr
	}
	return keyStatusOf(k, kv), nil
}

func keyEncrypt(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.EncryptRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	k, kv, aerr := c.lookupKey(req.Name, req.Version)
	if aerr != nil {
		return nil, aerr
	}
	ct, err := kv.encrypt(k.Type, req.Plaintext, req.AssociatedData)
	if err != nil {
		return nil, errorf(http.StatusInternalServerError, "encrypt: %v", err)
	}
	return &pb.EncryptResponse{Version: kv.Version, Ciphertext: ct}, nil
}

func keyDecrypt(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.DecryptRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	if req.Version == 0 {
		return nil, errDecryptVersion0
	}
	k, kv, aerr := c.lookupKey(req.Name, req.Version)
	if aerr != nil {
		return nil, aerr
	}
	pt, err := kv.decrypt(k.Type, req.Ciphertext, req.AssociatedData)
	if err != nil {
		return nil, errInvalidCiphertext
	}
	return &pb.DecryptResponse{Plaintext: pt}, nil
}

func keyGenerate(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.GenerateKeyRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	if req.Length > 1024 {
		return nil, fromWire(wire.ErrBadRequest, "data key length %d exceeds 1024 bytes", req.Length)
	}
	k, kv, aerr := c.lookupKey(req.Name, req.Version)
	if aerr != nil {
		return nil, aerr
	}
	length := req.Length
	if length == 0 {
		length = 32
	}
	pt, err := randomBytes(int(length))
	if err != nil {
		return nil, errorf(http.StatusInternalServerError, "%v", err)
	}
	ct, err := kv.encrypt(k.Type, pt, req.AssociatedData)
	if err != nil {
		return nil, errorf(http.StatusInternalServerError, "encrypt: %v", err)
	}
	return &pb.GenerateKeyResponse{Version: kv.Version, Plaintext: pt, Ciphertext: ct}, nil
}

func keyMAC(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.MACRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	_, kv, aerr := c.lookupKey(req.Name, req.Version)
	if aerr != nil {
		return nil, aerr
	}
	m := hmac.New(sha256.New, kv.Secret)
	m.Write(req.Message)
	return &pb.MACResponse{Version: kv.Version, MAC: m.Sum(nil)}, nil
}

func keyList(c *call, payload []byte) (proto.Message, *apiError) {
	keys, next, aerr := listIn(c, payload, enclaveKeys)
	if aerr != nil {
		return nil, aerr
	}
	resp := &pb.ListKeysResponse{ContinueAt: next}
	for _, k := range keys {
		kv, _ := k.version(0)
		resp.Keys = append(resp.Keys, keyStatusOf(k, kv))
	}
	return resp, nil
}

// --- policies ---

func rulesFrom(m map[string]*pb.RuleSet) (map[string][]string, *apiError) {
	out := map[string][]string{}
	for cmd, rs := range m {
		if _, err := wire.ParseName(cmd); err != nil {
			return nil, fromWire(wire.ErrBadRequest, "policy rule for unknown command %q", cmd)
		}
		for pattern := range rs.GetRules() {
			if _, err := path.Match(pattern, ""); err != nil {
				return nil, fromWire(wire.ErrBadRequest, "invalid pattern %q for %s", pattern, cmd)
			}
			out[strings.ToUpper(cmd)] = append(out[strings.ToUpper(cmd)], pattern)
		}
	}
	return out, nil
}

func rulesTo(m map[string][]string) map[string]*pb.RuleSet {
	out := map[string]*pb.RuleSet{}
	for cmd, patterns := range m {
		rs := &pb.RuleSet{Rules: map[string]*pb.Rule{}}
		for _, p := range patterns {
			rs.Rules[p] = &pb.Rule{}
		}
		out[cmd] = rs
	}
	return out
}

func policyCreate(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.CreatePolicyRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	if err := c.authorize(req.Name); err != nil {
		return nil, err
	}
	if err := validName("policy", req.Name); err != nil {
		return nil, err
	}
	allow, aerr := rulesFrom(req.Allow)
	if aerr != nil {
		return nil, aerr
	}
	deny, aerr := rulesFrom(req.Deny)
	if aerr != nil {
		return nil, aerr
	}
	return c.commit(func(t *tx) error {
		e, aerr := c.enclaveOf(t.st)
		if aerr != nil {
			return aerr
		}
		// Creating a policy that exists replaces it (the vendor's semantics).
		return t.putPolicy(e.Name, &policy{Name: req.Name, Allow: allow, Deny: deny, CreatedAt: c.now, CreatedBy: c.identity})
	})
}

func policyDelete(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.DeletePolicyRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	return deleteIn(c, kindPolicy, req.Name, errNoPolicy, enclavePolicies)
}

func policyAssign(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.AssignPolicyRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	if err := c.authorize(req.Policy); err != nil {
		return nil, err
	}
	return c.commit(func(t *tx) error {
		e, aerr := c.enclaveOf(t.st)
		if aerr != nil {
			return aerr
		}
		if _, ok := e.Policies.get(req.Policy); !ok {
			return errNoPolicy
		}
		id, ok := e.Identities.get(req.Identity)
		if !ok {
			return errNoIdentity
		}
		if id.Privilege != privUser {
			return fromWire(wire.ErrBadRequest, "policies apply to User identities only")
		}
		ni := *id
		ni.Policy = req.Policy
		return t.putIdentity(e.Name, &ni)
	})
}

func policyStatusOf(p *policy) *pb.PolicyStatusResponse {
	return &pb.PolicyStatusResponse{Name: p.Name, CreatedAt: ts(p.CreatedAt), CreatedBy: p.CreatedBy}
}

func policyGet(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.PolicyRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	p, aerr := lookupIn(c, req.Name, errNoPolicy, enclavePolicies)
	if aerr != nil {
		return nil, aerr
	}
	return &pb.PolicyResponse{Name: p.Name, Allow: rulesTo(p.Allow), Deny: rulesTo(p.Deny), CreatedAt: ts(p.CreatedAt), CreatedBy: p.CreatedBy}, nil
}

func policyStatus(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.PolicyRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	p, aerr := lookupIn(c, req.Name, errNoPolicy, enclavePolicies)
	if aerr != nil {
		return nil, aerr
	}
	return policyStatusOf(p), nil
}

func policyList(c *call, payload []byte) (proto.Message, *apiError) {
	policies, next, aerr := listIn(c, payload, enclavePolicies)
	if aerr != nil {
		return nil, aerr
	}
	resp := &pb.ListPoliciesResponse{ContinueAt: next}
	for _, p := range policies {
		resp.Policies = append(resp.Policies, policyStatusOf(p))
	}
	return resp, nil
}

// --- identities ---

func parsePrivilege(s string) (uint32, *apiError) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "user":
		return privUser, nil
	case "admin":
		return privAdmin, nil
	case "sysadmin":
		return privSysAdmin, nil
	}
	return 0, fromWire(wire.ErrBadRequest, "unknown privilege %q (want SysAdmin, Admin or User)", s)
}

func identityCreate(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.CreateIdentityRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	if err := c.authorize(req.Identity); err != nil {
		return nil, err
	}
	if _, err := publicIdentity(req.Identity); err != nil {
		return nil, fromWire(wire.ErrBadRequest, "invalid identity %q: want h1: followed by 43 base64url characters", req.Identity)
	}
	priv, aerr := parsePrivilege(req.Privilege)
	if aerr != nil {
		return nil, aerr
	}
	if priv != privUser && !c.isSysAdmin() {
		return nil, errAccessDenied
	}
	return c.commit(func(t *tx) error {
		e, aerr := c.enclaveOf(t.st)
		if aerr != nil {
			return aerr
		}
		if req.Identity == c.n.adminID {
			return errIdentityIsAdmin
		}
		// Creating an identity that exists replaces it (the vendor's
		// semantics), within its enclave; an identity lives in one enclave.
		if id, other := t.st.Data.findIdentity(req.Identity); id != nil && other.Name != e.Name {
			return errorf(http.StatusConflict, "identity %s belongs to enclave %q; delete it there first", req.Identity, other.Name)
		}
		return t.putIdentity(e.Name, &identity{
			Identity: req.Identity, Privilege: priv, CreatedAt: c.now, CreatedBy: c.identity,
			IsServiceAccount: req.IsServiceAccount, Tags: req.Tags,
		})
	})
}

func identityDelete(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.DeleteIdentityRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	return deleteIn(c, kindIdentity, req.Identity, errNoIdentity, enclaveIdentities)
}

func identityOfRecord(i *identity) *pb.IdentityResponse {
	return &pb.IdentityResponse{
		Identity: i.Identity, Privilege: i.Privilege, Policy: i.Policy, CreatedAt: ts(i.CreatedAt),
		CreatedBy: i.CreatedBy, IsServiceAccount: i.IsServiceAccount, Tags: i.Tags,
	}
}

func identityStatus(c *call, payload []byte) (proto.Message, *apiError) {
	var req pb.IdentityRequest
	if err := decode(payload, &req); err != nil {
		return nil, err
	}
	i, aerr := lookupIn(c, req.Identity, errNoIdentity, enclaveIdentities)
	if aerr != nil {
		return nil, aerr
	}
	return identityOfRecord(i), nil
}

func identityList(c *call, payload []byte) (proto.Message, *apiError) {
	identities, next, aerr := listIn(c, payload, enclaveIdentities)
	if aerr != nil {
		return nil, aerr
	}
	resp := &pb.ListIdentitiesResponse{ContinueAt: next}
	for _, i := range identities {
		resp.Identities = append(resp.Identities, identityOfRecord(i))
	}
	return resp, nil
}
