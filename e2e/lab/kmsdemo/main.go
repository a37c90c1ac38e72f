// Command kmsdemo is the Key Manager side of the lab (`make lab`, `make demo`: e2e/lab.sh,
// e2e/demo.sh):
//
//	kmsdemo certs DIR NODE[=NAME_OR_IP,...]...
//	    write a new lab CA (DIR/ca.crt) and a server certificate and key per node
//	    (DIR/NODE.crt, DIR/NODE.key 0600) valid for NODE, the extra names/IPs,
//	    127.0.0.1 and localhost
//	kmsdemo join   --ssh-config FILE --ca FILE NODE...
//	    add every other NODE to the first node's cluster (CLUSTER:ADDNODE, one at a
//	    time, each time waiting until the grown cluster agrees) and print each node's view
//	kmsdemo status --ssh-config FILE --ca FILE NODE...
//	    print each node's view of the cluster (ID, role, leader, commit); exit 1 unless,
//	    within 30 s, all NODEs are up, in one cluster, with one leader
//	kmsdemo key    --ssh-config FILE --ca FILE [--name KEY] NODE...
//	    create the key KEY (default demo-key) if missing, encrypt and decrypt with it
//	kmsdemo keys   --ssh-config FILE --ca FILE [--count N] [--prefix P] [--workers W] NODE...
//	    seed the default enclave with the keys P00001 .. PN (default 10000 keys named
//	    key-00001 ..., 16 writers at once, through the first NODE; keys already there are
//	    kept, so a second run only adds what is missing) and print the rate: the 10,000-key
//	    figures of BENCHMARKS.md (bench/keys10k)
//	kmsdemo seed   --ssh-config FILE --ca FILE --file FILE [--keys N] NODE...
//	    create the enclave demo, N keys (default 20) in the default enclave and N in demo,
//	    encrypt a plaintext with the first key of each and write the ciphertexts (and the key
//	    names) to FILE (make demo)
//	kmsdemo check  --ssh-config FILE --ca FILE --file FILE NODE...
//	    ask every NODE on its own: it must list every key seed wrote to FILE and decrypt every
//	    ciphertext in FILE to its plaintext; prints one line per node, exit 1 on any miss
//
// join, status, key, keys, seed and check authenticate with the admin API key from $MINIO_KMS_API_KEY (never
// argv) and reach each node's Key Manager through an SSH tunnel to its 127.0.0.1:7373 (the
// lab's ssh_config pins the host keys), verifying the server certificate for NODE against
// the lab CA (--ca).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/kmsctl/kmsctl/e2e/lab/labkit"
	"github.com/kmsctl/kmsctl/kms"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kmsdemo:", err)
		os.Exit(1)
	}
}

const usage = "usage: kmsdemo certs DIR NODE[=IP,...]... | kmsdemo join|status|key|keys|seed|check --ssh-config FILE --ca FILE [--name KEY] [--count N --prefix P --workers W] [--file FILE --keys N] NODE..."

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	if args[0] == "certs" {
		return certs(args[1:], out)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	sshConfig := fs.String("ssh-config", "", "the lab's ssh_config (pins the host keys)")
	caFile := fs.String("ca", "", "the lab CA's PEM certificate")
	keyName := fs.String("name", "demo-key", "the key that the key command creates and uses")
	count := fs.Int("count", 10000, "keys: how many keys the enclave should hold")
	prefix := fs.String("prefix", "key-", "keys: the names' prefix")
	workers := fs.Int("workers", 16, "keys: writes at once")
	seedFile := fs.String("file", "", "seed and check: the file of key names and ciphertexts")
	keysPer := fs.Int("keys", 20, "seed: how many keys per enclave")
	cmd, ok := map[string]func(context.Context, *kms.Client, []string, string, io.Writer) error{
		"join": join, "status": status, "key": key,
		"keys": func(ctx context.Context, c *kms.Client, _ []string, _ string, out io.Writer) error {
			return seedKeys(ctx, c, *prefix, *count, *workers, out)
		},
	}[args[0]]
	story := args[0] == "seed" || args[0] == "check"
	if !ok && !story {
		return fmt.Errorf("unknown command %q (want certs, join, status, key, keys, seed or check)", args[0])
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *count < 1 || *workers < 1 {
		return fmt.Errorf("--count and --workers must be at least 1, got %d and %d", *count, *workers)
	}
	nodes := fs.Args()
	if *sshConfig == "" || *caFile == "" || len(nodes) == 0 || (story && *seedFile == "") {
		return errors.New(usage)
	}
	apiKey, err := kms.ParseAPIKey(getenv("MINIO_KMS_API_KEY"))
	if err != nil {
		return fmt.Errorf("admin API key from $MINIO_KMS_API_KEY: %w", err)
	}
	timeout := 5 * time.Minute
	if args[0] == "keys" {
		timeout = time.Hour
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tun, err := labkit.DialTunnels(ctx, *sshConfig, nodes)
	if err != nil {
		return err
	}
	defer tun.Close()
	c, err := labkit.NewClient(tun, *caFile, apiKey, nodes)
	if err != nil {
		return err
	}
	defer c.Close()
	switch args[0] {
	case "seed":
		return seed(ctx, c, *keysPer, *seedFile, out)
	case "check":
		return check(ctx, tun, *caFile, apiKey, nodes, *seedFile, out)
	}
	return cmd(ctx, c, nodes, *keyName, out)
}

func certs(args []string, out io.Writer) error {
	if len(args) < 2 {
		return errors.New("usage: kmsdemo certs DIR NODE[=IP,...]...")
	}
	nodes := map[string][]string{}
	for _, a := range args[1:] {
		name, extra, _ := strings.Cut(a, "=")
		nodes[name] = nil
		if extra != "" {
			nodes[name] = strings.Split(extra, ",")
		}
	}
	if err := labkit.WriteCerts(args[0], nodes); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s/ca.crt and a certificate per node for %s\n", args[0], strings.Join(args[1:], " "))
	return nil
}

func join(ctx context.Context, c *kms.Client, nodes []string, _ string, out io.Writer) error {
	fmt.Fprintln(out, "before joining: every node is its own one-node cluster")
	printViews(out, kms.Views(ctx, c, labkit.Endpoints(nodes)))
	for _, n := range nodes[1:] {
		fmt.Fprintf(out, "CLUSTER:ADDNODE %s via %s\n", labkit.Endpoint(n), labkit.Endpoint(nodes[0]))
	}
	if err := kms.Join(ctx, c, labkit.Endpoint(nodes[0]), labkit.Endpoints(nodes[1:]), time.Minute); err != nil {
		return err
	}
	return status(ctx, c, nodes, "", out)
}

func status(ctx context.Context, c *kms.Client, nodes []string, _ string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	views, err := kms.WaitConverged(ctx, c, labkit.Endpoints(nodes))
	fmt.Fprintln(out, "each node's own view:")
	printViews(out, views)
	return err
}

func key(ctx context.Context, c *kms.Client, _ []string, name string, out io.Writer) error {
	if err := c.CreateKey(ctx, "", name); err != nil && !errors.Is(err, kms.ErrKeyExists) {
		return err
	}
	plain := []byte("hello from kmsdemo")
	ct, version, err := c.Encrypt(ctx, "", name, plain, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "key %s: encrypted %d bytes -> %d bytes of ciphertext (key version %d)\n", name, len(plain), len(ct), version)
	got, err := c.Decrypt(ctx, "", name, version, ct, nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, plain) {
		return fmt.Errorf("decrypt with %s: got %q, want %q", name, got, plain)
	}
	fmt.Fprintln(out, "decrypted it again: plaintext matches")
	return nil
}

func printViews(out io.Writer, views []kms.NodeView) {
	for _, v := range views {
		fmt.Fprintln(out, "  "+v.String())
	}
}
