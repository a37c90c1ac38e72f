// Command kmsim is the Key Manager simulator, installed as /usr/local/bin/minkms
// on test hosts. It is started like the real server:
//
//	MINIO_KMS_HSM_KEY=hsm:aes256:... minkms server DIR --config FILE [--address IP:PORT] [--host HOST:PORT]
//
// and also offers
//
//	minkms identity            print a new k1: API key and its h1: identity
//	minkms identity -          read a k1:/k2: API key (or an hsm:aes256: key) from stdin and print its identity
//	minkms identity --hsm      print the root API key derived from $MINIO_KMS_HSM_KEY and its identity
//	minkms identity KEY        the same with the key in argv (avoid: argv is visible to other users)
//	minkms --soft-hsm          print a new HSM key
//	minkms --version
//
// and the client commands of the vendor's manual, against MINIO_KMS_SERVER
// with the API key in MINIO_KMS_API_KEY (or -a/--api-key, visible to other
// users in the process list): ls, stat, add, rm, edit HOST --rm ID, backup,
// restore, ls-enclave, ls-key, ls-policy (see client.go and `minkms help`).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms/kmsim"
)

// Set by the linker (see Makefile).
var (
	version = ""
	commit  = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

// usage is the command's help text.
func usage() string {
	return `usage:
  minkms server DIR --config FILE [--address IP:PORT] [--host HOST:PORT]   (HSM key in MINIO_KMS_HSM_KEY)
  minkms identity [- | --hsm | KEY] [--json]
  minkms --soft-hsm
  minkms --version
` + clientHelp()
}

// run is the whole command; it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	var err error
	switch args[0] {
	case "server":
		err = server(ctx, args[1:], getenv, stdout, stderr)
	case "identity":
		err = identity(args[1:], getenv, stdin, stdout)
	case "--soft-hsm", "-soft-hsm":
		var secret [32]byte
		if _, err = rand.Read(secret[:]); err == nil {
			_, err = fmt.Fprintln(stdout, hsm.New(secret).Text())
		}
	case "--version", "-version", "version":
		v, c := serverVersion(version, commit)
		_, err = fmt.Fprintf(stdout, "minkms (kmsim) version %s commit %s\n", v, orDefault(c, "kmsim"))
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage())
		return 0
	default:
		if isClientCommand(args[0]) {
			err = client(ctx, args[0], args[1:], getenv, stdout)
			break
		}
		fmt.Fprintf(stderr, "minkms: unknown command %q\n%s", args[0], usage())
		return 2
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "minkms: %v\n%s", err, usage())
			return 2
		}
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	return 0
}

type usageError struct{ error }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// interleave moves flags after positional arguments to the front, so that
// "server DIR --config FILE" parses with the flag package.
func interleave(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			return nil, usageError{fmt.Errorf("unknown flag %s", a)}
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		if i+1 >= len(args) {
			return nil, usageError{fmt.Errorf("flag %s needs a value", a)}
		}
		i++
		flags = append(flags, args[i])
	}
	return append(flags, pos...), nil
}

func server(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configFile := fs.String("config", "", "YAML configuration file")
	address := fs.String("address", kmsim.DefaultAddress, "listen address IP:PORT")
	host := fs.String("host", "", "HOST:PORT this node announces to the cluster")
	fs.String("license", "", "license file (accepted and ignored, as by current servers)")
	heartbeat := fs.Duration("heartbeat", kmsim.DefaultHeartbeatInterval, "inter-node heartbeat interval (simulator only)")
	args, err := interleave(fs, args)
	if err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("server needs exactly one DIR argument")}
	}
	text := getenv("MINIO_KMS_HSM_KEY")
	if strings.TrimSpace(text) == "" {
		return errors.New("kms: no HSM provided")
	}
	key, err := hsm.Parse(text)
	if err != nil {
		return fmt.Errorf("kms: MINIO_KMS_HSM_KEY: %w", err)
	}
	cfg := kmsim.Config{
		Dir: fs.Arg(0), HSMKey: key, Address: *address, Host: *host, HeartbeatInterval: *heartbeat,
		Log: stderr,
	}
	cfg.Version, cfg.Commit = serverVersion(version, commit)
	if *configFile == "" {
		return errors.New("kms: no TLS configuration provided")
	}
	fc, err := kmsim.LoadConfig(*configFile)
	if err != nil {
		return err
	}
	if err := fc.Apply(&cfg); err != nil {
		return err
	}
	node, err := kmsim.Start(ctx, cfg)
	if err != nil {
		return err
	}
	if err := node.Banner(stdout); err != nil {
		node.Close()
		return fmt.Errorf("write banner: %w", err)
	}
	<-ctx.Done()
	done := make(chan struct{})
	go func() { node.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return errors.New("kms: shutdown timed out")
	}
	return nil
}

// vendorVersion is the vendor's version format, e.g. 2024-03-26T17-52-38Z.
var vendorVersion = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z$`)

// serverVersion returns the version and commit the server reports: clients
// may expect the vendor's version format, so a build version in another
// format (git describe) is reported as the commit instead.
func serverVersion(v, c string) (string, string) {
	if vendorVersion.MatchString(v) {
		return v, c
	}
	if c == "" {
		c = v
	}
	return kmsim.DefaultVersion, c
}

func identity(args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("identity", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print JSON")
	fromHSM := fs.Bool("hsm", false, "use the HSM key in MINIO_KMS_HSM_KEY")
	args, err := interleave(fs, args)
	if err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 1 || (*fromHSM && fs.NArg() > 0) {
		return usageError{errors.New("identity takes at most one KEY argument")}
	}
	var text string
	switch {
	case *fromHSM:
		text = getenv("MINIO_KMS_HSM_KEY")
		if strings.TrimSpace(text) == "" {
			return errors.New("kms: no HSM provided: MINIO_KMS_HSM_KEY is empty")
		}
	case fs.NArg() == 1 && fs.Arg(0) == "-":
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read key from stdin: %w", err)
		}
		text = line
	case fs.NArg() == 1:
		text = fs.Arg(0)
	}
	text = strings.TrimSpace(text)

	var apiKey, id string
	switch {
	case text == "":
		apiKey, id, err = kmsim.NewAPIKey()
	case strings.HasPrefix(text, hsm.Prefix):
		var k hsm.Key
		if k, err = hsm.Parse(text); err == nil {
			apiKey, id, err = kmsim.RootAPIKey(k)
		}
	default:
		id, err = kmsim.APIKeyIdentity(text) // the key itself is not printed again
	}
	if err != nil {
		return err
	}
	if *asJSON {
		out := map[string]string{"identity": id}
		if apiKey != "" {
			out["api_key"] = apiKey
		}
		return json.NewEncoder(stdout).Encode(out)
	}
	if apiKey == "" {
		_, err = fmt.Fprintln(stdout, id)
		return err
	}
	_, err = fmt.Fprintf(stdout, "API Key:  %s\nIdentity: %s\n", apiKey, id)
	return err
}
