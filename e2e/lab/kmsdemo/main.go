// Command kmsdemo is the Key Manager side of `make demo` (e2e/demo.sh):
//
//	kmsdemo certs DIR NODE[=NAME_OR_IP,...]...
//	    write a new lab CA (DIR/ca.crt) and a server certificate and key per node
//	    (DIR/NODE.crt, DIR/NODE.key 0600) valid for NODE, the extra names/IPs,
//	    127.0.0.1 and localhost
//	kmsdemo cluster --ssh-config FILE --ca FILE NODE...
//	    with the admin API key from $MINIO_KMS_API_KEY (never argv), reach each node's
//	    Key Manager through an SSH tunnel to its 127.0.0.1:7373 (the server certificate
//	    still verified against --ca), add every other NODE to the first node's cluster
//	    (CLUSTER:ADDNODE, one at a time), create a key, encrypt and decrypt with it, and
//	    print each node's view of the cluster (ID, role, leader, commit)
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

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: kmsdemo certs DIR NODE[=IP,...]... | kmsdemo cluster --ssh-config FILE --ca FILE NODE...")
	}
	switch args[0] {
	case "certs":
		return certs(args[1:], out)
	case "cluster":
		return cluster(ctx, args[1:], getenv, out)
	}
	return fmt.Errorf("unknown command %q (want certs or cluster)", args[0])
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

func cluster(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	sshConfig := fs.String("ssh-config", "", "the lab's ssh_config (pins the host keys)")
	caFile := fs.String("ca", "", "the lab CA's PEM certificate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nodes := fs.Args()
	if *sshConfig == "" || *caFile == "" || len(nodes) == 0 {
		return errors.New("usage: kmsdemo cluster --ssh-config FILE --ca FILE NODE...")
	}
	key, err := kms.ParseAPIKey(getenv("MINIO_KMS_API_KEY"))
	if err != nil {
		return fmt.Errorf("admin API key from $MINIO_KMS_API_KEY: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	tun, err := labkit.DialTunnels(ctx, *sshConfig, nodes)
	if err != nil {
		return err
	}
	defer tun.Close()
	c, err := labkit.NewClient(tun, *caFile, key, nodes)
	if err != nil {
		return err
	}
	defer c.Close()

	fmt.Fprintln(out, "before joining: every node is its own one-node cluster")
	printViews(out, labkit.Views(ctx, c, nodes))
	for _, n := range nodes[1:] {
		fmt.Fprintf(out, "CLUSTER:ADDNODE %s via %s\n", labkit.Endpoint(n), labkit.Endpoint(nodes[0]))
	}
	if err := labkit.Join(ctx, c, nodes[0], nodes[1:]); err != nil {
		return err
	}

	const keyName = "demo-key"
	if err := c.CreateKey(ctx, "", keyName); err != nil && !errors.Is(err, kms.ErrKeyExists) {
		return err
	}
	plain := []byte("hello from kmsdemo")
	ct, version, err := c.Encrypt(ctx, "", keyName, plain, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "created key %s, encrypted %d bytes -> %d bytes of ciphertext (key version %d)\n", keyName, len(plain), len(ct), version)
	got, err := c.Decrypt(ctx, "", keyName, version, ct, nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, plain) {
		return fmt.Errorf("decrypt: got %q, want %q", got, plain)
	}
	fmt.Fprintln(out, "decrypted it again: plaintext matches")

	views, err := labkit.WaitConverged(ctx, c, nodes)
	fmt.Fprintln(out, "each node's own view:")
	printViews(out, views)
	return err
}

func printViews(out io.Writer, views []labkit.NodeView) {
	for _, v := range views {
		fmt.Fprintln(out, "  "+v.String())
	}
}
