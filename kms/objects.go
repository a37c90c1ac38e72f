package kms

import (
	"context"
	"fmt"
	"iter"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// Enclave, key, policy and identity operations. They are load-balanced over
// the configured endpoints; to address one node, make a Client with only
// that endpoint. Key, policy and identity commands go to /v1/kms/{enclave}
// (an empty enclave sends them to /v1/kms: the server's default enclave).

// CreateEnclave creates an enclave (ENCLAVE:CREATE, SysAdmin).
func (c *Client) CreateEnclave(ctx context.Context, name string) error {
	if err := c.send1(ctx, "", "", wire.EnclaveCreate, &pb.CreateEnclaveRequest{Name: name}, nil); err != nil {
		return fmt.Errorf("create enclave %q: %w", name, err)
	}
	return nil
}

// CreateKey creates a key in enclave (KEY:CREATE); the server picks the type.
func (c *Client) CreateKey(ctx context.Context, enclave, name string) error {
	if err := checkEnclave(enclave); err != nil {
		return fmt.Errorf("create key %q: %w", name, err)
	}
	if err := c.send1(ctx, "", enclave, wire.KeyCreate, &pb.CreateKeyRequest{Name: name}, nil); err != nil {
		return fmt.Errorf("create key %q in enclave %q: %w", name, enclave, err)
	}
	return nil
}

// DeleteKey deletes a key from enclave (KEY:DELETE).
func (c *Client) DeleteKey(ctx context.Context, enclave, name string) error {
	if err := checkEnclave(enclave); err != nil {
		return fmt.Errorf("delete key %q: %w", name, err)
	}
	if err := c.send1(ctx, "", enclave, wire.KeyDelete, &pb.DeleteKeyRequest{Name: name}, nil); err != nil {
		return fmt.Errorf("delete key %q in enclave %q: %w", name, enclave, err)
	}
	return nil
}

// Encrypt encrypts plaintext with the latest version of key (KEY:ENCRYPT)
// and returns the ciphertext and the key version used.
func (c *Client) Encrypt(ctx context.Context, enclave, key string, plaintext, associatedData []byte) (ciphertext []byte, version uint32, err error) {
	if err := checkEnclave(enclave); err != nil {
		return nil, 0, fmt.Errorf("encrypt with key %q: %w", key, err)
	}
	resp := &pb.EncryptResponse{}
	req := &pb.EncryptRequest{Name: key, Plaintext: plaintext, AssociatedData: associatedData}
	if err := c.send1(ctx, "", enclave, wire.KeyEncrypt, req, resp); err != nil {
		return nil, 0, fmt.Errorf("encrypt with key %q in enclave %q: %w", key, enclave, err)
	}
	return resp.Ciphertext, resp.Version, nil
}

// Decrypt decrypts ciphertext made by Encrypt with version of key
// (KEY:DECRYPT; version must not be 0).
func (c *Client) Decrypt(ctx context.Context, enclave, key string, version uint32, ciphertext, associatedData []byte) ([]byte, error) {
	if err := checkEnclave(enclave); err != nil {
		return nil, fmt.Errorf("decrypt with key %q: %w", key, err)
	}
	if version == 0 {
		return nil, fmt.Errorf("decrypt with key %q in enclave %q: key version 0 is invalid: pass the version Encrypt returned", key, enclave)
	}
	resp := &pb.DecryptResponse{}
	req := &pb.DecryptRequest{Name: key, Version: version, Ciphertext: ciphertext, AssociatedData: associatedData}
	if err := c.send1(ctx, "", enclave, wire.KeyDecrypt, req, resp); err != nil {
		return nil, fmt.Errorf("decrypt with key %q in enclave %q: %w", key, enclave, err)
	}
	return resp.Plaintext, nil
}

// DataKey is a generated data key: its plaintext and its ciphertext under a
// Key Manager key version.
type DataKey struct {
	Version    uint32
	Plaintext  []byte
	Ciphertext []byte
}

// String describes the data key without its plaintext.
func (k DataKey) String() string {
	return fmt.Sprintf("kms.DataKey{Version: %d, Plaintext: <redacted %d bytes>, Ciphertext: %d bytes}", k.Version, len(k.Plaintext), len(k.Ciphertext))
}

// GoString is String.
func (k DataKey) GoString() string { return k.String() }

// GenerateKey generates a data key of length bytes (0 = 32) under key
// (KEY:GENERATE).
func (c *Client) GenerateKey(ctx context.Context, enclave, key string, length int, associatedData []byte) (DataKey, error) {
	if err := checkEnclave(enclave); err != nil {
		return DataKey{}, fmt.Errorf("generate data key with key %q: %w", key, err)
	}
	if length < 0 || length > 1024 {
		return DataKey{}, fmt.Errorf("generate data key with key %q: length %d out of range 0..1024", key, length)
	}
	resp := &pb.GenerateKeyResponse{}
	req := &pb.GenerateKeyRequest{Name: key, AssociatedData: associatedData, Length: uint32(length)}
	if err := c.send1(ctx, "", enclave, wire.KeyGenerate, req, resp); err != nil {
		return DataKey{}, fmt.Errorf("generate data key with key %q in enclave %q: %w", key, enclave, err)
	}
	return DataKey{Version: resp.Version, Plaintext: resp.Plaintext, Ciphertext: resp.Ciphertext}, nil
}

// CreatePolicy creates a policy in enclave (POLICY:CREATE). req.Allow and
// req.Deny map command names such as "KEY:ENCRYPT" to rule sets.
func (c *Client) CreatePolicy(ctx context.Context, enclave string, req *pb.CreatePolicyRequest) error {
	if err := checkEnclave(enclave); err != nil {
		return fmt.Errorf("create policy %q: %w", req.GetName(), err)
	}
	if err := c.send1(ctx, "", enclave, wire.PolicyCreate, req, nil); err != nil {
		return fmt.Errorf("create policy %q in enclave %q: %w", req.GetName(), enclave, err)
	}
	return nil
}

// AssignPolicy assigns policy to identity in enclave (POLICY:ASSIGN).
func (c *Client) AssignPolicy(ctx context.Context, enclave, identity, policy string) error {
	if err := checkEnclave(enclave); err != nil {
		return fmt.Errorf("assign policy %q: %w", policy, err)
	}
	req := &pb.AssignPolicyRequest{Identity: identity, Policy: policy}
	if err := c.send1(ctx, "", enclave, wire.PolicyAssign, req, nil); err != nil {
		return fmt.Errorf("assign policy %q to %s in enclave %q: %w", policy, identity, enclave, err)
	}
	return nil
}

// CreateIdentity creates an identity in enclave (IDENTITY:CREATE).
func (c *Client) CreateIdentity(ctx context.Context, enclave string, req *pb.CreateIdentityRequest) error {
	if err := checkEnclave(enclave); err != nil {
		return fmt.Errorf("create identity %s: %w", req.GetIdentity(), err)
	}
	if err := ValidIdentity(req.GetIdentity()); err != nil {
		return fmt.Errorf("create identity: %w", err)
	}
	if err := c.send1(ctx, "", enclave, wire.IdentityCreate, req, nil); err != nil {
		return fmt.Errorf("create identity %s in enclave %q: %w", req.GetIdentity(), enclave, err)
	}
	return nil
}

// ListEnclaves iterates over the enclaves whose names start with prefix
// (ENCLAVE:LIST), page by page. Iteration ends after the first error.
func (c *Client) ListEnclaves(ctx context.Context, prefix string) iter.Seq2[*pb.EnclaveStatusResponse, error] {
	return list(c, ctx, wire.EnclaveList, "", prefix, func(r *pb.ListEnclavesResponse) []*pb.EnclaveStatusResponse { return r.Enclaves })
}

// ListKeys iterates over the keys of enclave whose names start with prefix
// (KEY:LIST).
func (c *Client) ListKeys(ctx context.Context, enclave, prefix string) iter.Seq2[*pb.KeyStatusResponse, error] {
	return list(c, ctx, wire.KeyList, enclave, prefix, func(r *pb.ListKeysResponse) []*pb.KeyStatusResponse { return r.Keys })
}

// ListPolicies iterates over the policies of enclave whose names start with
// prefix (POLICY:LIST).
func (c *Client) ListPolicies(ctx context.Context, enclave, prefix string) iter.Seq2[*pb.PolicyStatusResponse, error] {
	return list(c, ctx, wire.PolicyList, enclave, prefix, func(r *pb.ListPoliciesResponse) []*pb.PolicyStatusResponse { return r.Policies })
}

// ListIdentities iterates over the identities of enclave starting with
// prefix (IDENTITY:LIST).
func (c *Client) ListIdentities(ctx context.Context, enclave, prefix string) iter.Seq2[*pb.IdentityResponse, error] {
	return list(c, ctx, wire.IdentityList, enclave, prefix, func(r *pb.ListIdentitiesResponse) []*pb.IdentityResponse { return r.Identities })
}

// listResponse is a List*Response message.
type listResponse[R any] interface {
	*R
	proto.Message
	GetContinueAt() string
}

// list pages through a *:LIST command: each response's ContinueAt names the
// first item of the next page; an empty page or ContinueAt ends the list.
func list[R any, PR listResponse[R], T any](c *Client, ctx context.Context, id wire.Command, enclave, prefix string, items func(PR) []T) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		if err := checkEnclave(enclave); err != nil {
			yield(zero, fmt.Errorf("list %s: %w", id, err))
			return
		}
		continueAt := ""
		for {
			resp := PR(new(R))
			req := &pb.ListRequest{Prefix: prefix, ContinueAt: continueAt}
			if err := c.send1(ctx, "", enclave, id, req, resp); err != nil {
				yield(zero, fmt.Errorf("%s (prefix %q, from %q): %w", id, prefix, continueAt, err))
				return
			}
			page := items(resp)
			for _, it := range page {
				if !yield(it, nil) {
					return
				}
			}
			next := resp.GetContinueAt()
			if len(page) == 0 || next == "" {
				return
			}
			if next == continueAt {
				yield(zero, fmt.Errorf("%s: %w: server returned the same page twice (continue at %q)", id, ErrProtocol, next))
				return
			}
			continueAt = next
		}
	}
}

// checkEnclave rejects enclave names that cannot be one URL path element.
// The empty name is allowed: the request then goes to /v1/kms and the server
// applies its default (vendor behaviour unknown, docs/protocol.md §4.1).
func checkEnclave(enclave string) error {
	if enclave == "." || enclave == ".." || strings.Contains(enclave, "/") {
		return fmt.Errorf("invalid enclave name %q", enclave)
	}
	return nil
}
