package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/kmsctl/kmsctl/e2e/lab/labkit"
	"github.com/kmsctl/kmsctl/kms"
)

// demoEnclave is the enclave seed creates beside the default one.
const demoEnclave = "demo"

// seeded is what seed writes and check reads: the keys made, and ciphertexts made with them
// that every node must decrypt afterwards.
type seeded struct {
	Keys        map[string][]string `json:"keys"` // enclave ("" is the default) → key names
	Ciphertexts []ciphertext        `json:"ciphertexts"`
}

// ciphertext is one encryption seed made.
type ciphertext struct {
	Enclave    string `json:"enclave"`
	Key        string `json:"key"`
	Version    uint32 `json:"version"`
	Ciphertext []byte `json:"ciphertext"`
	Plaintext  string `json:"plaintext"` // demo data, not a secret
}

// seed creates the demo enclave and n keys in it and in the default enclave, encrypts a
// plaintext with the first key of each, and writes it all to file (0600).
func seed(ctx context.Context, c *kms.Client, n int, file string, out io.Writer) error {
	if n < 1 {
		return fmt.Errorf("seed: --keys %d: want at least 1", n)
	}
	if err := c.CreateEnclave(ctx, demoEnclave); err != nil && !errors.Is(err, kms.ErrEnclaveExists) {
		return fmt.Errorf("create enclave %s: %w", demoEnclave, err)
	}
	s := seeded{Keys: map[string][]string{}}
	for _, enclave := range []string{"", demoEnclave} {
		for i := range n {
			name := fmt.Sprintf("demo-key-%03d", i)
			if err := c.CreateKey(ctx, enclave, name); err != nil && !errors.Is(err, kms.ErrKeyExists) {
				return fmt.Errorf("create key %s in enclave %q: %w", name, enclave, err)
			}
			s.Keys[enclave] = append(s.Keys[enclave], name)
		}
		plain := fmt.Sprintf("made by kmsdemo seed with %s/%s before any failure", enclaveName(enclave), s.Keys[enclave][0])
		ct, version, err := c.Encrypt(ctx, enclave, s.Keys[enclave][0], []byte(plain), nil)
		if err != nil {
			return fmt.Errorf("encrypt with %s in enclave %q: %w", s.Keys[enclave][0], enclave, err)
		}
		s.Ciphertexts = append(s.Ciphertexts, ciphertext{Enclave: enclave, Key: s.Keys[enclave][0], Version: version, Ciphertext: ct, Plaintext: plain})
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	fmt.Fprintf(out, "created enclave %s, %d keys in each of the enclaves default and %s, and %d ciphertexts (kept in %s)\n",
		demoEnclave, n, demoEnclave, len(s.Ciphertexts), file)
	return nil
}

// check asks every node on its own (a client with that node alone) for every key seed made
// and has it decrypt every ciphertext.
func check(ctx context.Context, tun *labkit.Tunnels, caFile string, apiKey kms.APIKey, nodes []string, file string, out io.Writer) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read %s (written by kmsdemo seed): %w", file, err)
	}
	var s seeded
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	var failed []string
	for _, node := range nodes {
		problems, keys, err := checkNode(ctx, tun, caFile, apiKey, node, s)
		if err != nil {
			problems = append(problems, err.Error())
		}
		if len(problems) > 0 {
			fmt.Fprintf(out, "  %s: FAILED: %s\n", node, strings.Join(problems, "; "))
			failed = append(failed, node)
			continue
		}
		fmt.Fprintf(out, "  %s: all %d keys listed, %d old ciphertexts decrypt to their plaintexts\n", node, keys, len(s.Ciphertexts))
	}
	if len(failed) > 0 {
		return fmt.Errorf("check: %s miss keys or cannot decrypt", strings.Join(failed, ", "))
	}
	return nil
}

// checkNode returns what node misses of s, and how many keys it listed of s's.
func checkNode(ctx context.Context, tun *labkit.Tunnels, caFile string, apiKey kms.APIKey, node string, s seeded) ([]string, int, error) {
	c, err := labkit.NewClient(tun, caFile, apiKey, []string{node})
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	var problems []string
	found := 0
	for enclave, want := range s.Keys {
		var listed []string
		for k, err := range c.ListKeys(ctx, enclave, "") {
			if err != nil {
				return problems, found, fmt.Errorf("list keys of enclave %s: %w", enclaveName(enclave), err)
			}
			listed = append(listed, k.GetName())
		}
		for _, k := range want {
			if slices.Contains(listed, k) {
				found++
			} else {
				problems = append(problems, fmt.Sprintf("key %s/%s not listed", enclaveName(enclave), k))
			}
		}
	}
	for _, ct := range s.Ciphertexts {
		pt, err := c.Decrypt(ctx, ct.Enclave, ct.Key, ct.Version, ct.Ciphertext, nil)
		if err != nil {
			problems = append(problems, fmt.Sprintf("decrypt with %s/%s: %v", enclaveName(ct.Enclave), ct.Key, err))
		} else if !bytes.Equal(pt, []byte(ct.Plaintext)) {
			problems = append(problems, fmt.Sprintf("decrypt with %s/%s: wrong plaintext", enclaveName(ct.Enclave), ct.Key))
		}
	}
	return problems, found, nil
}

// enclaveName is how the output names an enclave.
func enclaveName(e string) string {
	if e == "" {
		return "default"
	}
	return e
}
