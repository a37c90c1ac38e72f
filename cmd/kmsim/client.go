package main

import (
	"compress/gzip"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/renameio/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/pb"
)

// The client side of the vendor's minkms CLI (docs/protocol.md §11), so that the
// lab is a place to practise the vendor's manual procedure. Where the
// vendor's form is unknown, these are the choices (documented in
// kms/kmsim/doc.go, "Client commands"); they live here only.
const (
	// defaultServer is used when MINIO_KMS_SERVER is unset.
	defaultServer = "https://localhost:7373"
	// caDir, under $HOME, holds extra CA certificates (*.crt, *.pem) that
	// the client trusts besides the system pool.
	caDir = ".minkms/certs/CAs"
	// backupLayout and backupSuffix name `minkms backup`'s file when none is
	// given: the UTC time, e.g. 20261202_081500_kms.db.gzip.
	backupLayout = "20060102_150405"
	backupSuffix = "_kms.db.gzip"
	// rmDeletesState: `minkms rm` asks the removed node to drop its cluster
	// state, so it restarts as a fresh node that can be added again.
	rmDeletesState = true
)

// clientCommands are the client commands: name, arguments, what they do.
var clientCommands = []struct{ name, args, help string }{
	{"ls", "[--json]", "the nodes: ID, online/offline, role, uptime, host"},
	{"stat", "[--json]", "per node: status, role, uptime, host, commit, leader, version, system"},
	{"add", "[MEMBER] HOST", "add the fresh node HOST via MEMBER (default: the first MINIO_KMS_SERVER)"},
	{"rm", "HOST", "remove HOST with write quorum (it restarts fresh)"},
	{"edit", "HOST --rm ID", "remove node ID from HOST's cluster definition, without quorum"},
	{"backup", "[FILE] [--compress off]", "write a backup (default name YYYYMMDD_HHMMSS_kms.db.gzip, UTC)"},
	{"restore", "[HOST] FILE", "restore FILE onto HOST (default: the first MINIO_KMS_SERVER)"},
	{"ls-enclave", "[PREFIX] [--json]", "the enclaves"},
	{"ls-key", "[PREFIX] [-e ENCLAVE] [--json]", "the keys of an enclave"},
	{"ls-policy", "[PREFIX] [-e ENCLAVE] [--json]", "the policies of an enclave"},
}

const clientUsage = `Client commands (server: MINIO_KMS_SERVER, comma-separated, default ` + defaultServer + `;
API key: MINIO_KMS_API_KEY, or -a/--api-key KEY, which other users can read in the process list;
-k/--insecure skips server certificate verification; CAs: the system pool and $HOME/` + caDir + `;
enclave: -e/--enclave, else MINIO_KMS_ENCLAVE, else the server's default):
`

// clientHelp is the usage of the client commands.
func clientHelp() string {
	var b strings.Builder
	b.WriteString(clientUsage)
	for _, c := range clientCommands {
		fmt.Fprintf(&b, "  minkms %-42s %s\n", c.name+" "+c.args, c.help)
	}
	return b.String()
}

func isClientCommand(name string) bool {
	return slices.ContainsFunc(clientCommands, func(c struct{ name, args, help string }) bool { return c.name == name })
}

// clientFlags are the flags of the client commands.
type clientFlags struct {
	apiKey   string
	insecure bool
	json     bool
	enclave  string
	compress string
	rm       idList
}

// idList is a repeatable node-ID flag.
type idList []uint32

func (l *idList) String() string { return fmt.Sprint([]uint32(*l)) }

func (l *idList) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("node ID %q: want a number from `minkms ls`", s)
	}
	*l = append(*l, uint32(v))
	return nil
}

// client runs one client command.
func client(ctx context.Context, name string, args []string, getenv func(string) string, stdout io.Writer) error {
	var f clientFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.apiKey, "api-key", "", "API key")
	fs.StringVar(&f.apiKey, "a", "", "API key")
	fs.BoolVar(&f.insecure, "insecure", false, "skip server certificate verification")
	fs.BoolVar(&f.insecure, "k", false, "skip server certificate verification")
	switch name {
	case "ls", "stat", "ls-enclave", "ls-key", "ls-policy":
		fs.BoolVar(&f.json, "json", false, "print JSON")
	}
	switch name {
	case "ls-key", "ls-policy":
		fs.StringVar(&f.enclave, "enclave", "", "enclave")
		fs.StringVar(&f.enclave, "e", "", "enclave")
	case "edit":
		fs.Var(&f.rm, "rm", "node ID to remove")
	case "backup":
		fs.StringVar(&f.compress, "compress", "on", "on or off")
	}
	args, err := interleave(fs, args)
	if err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	c, err := newClient(&f, getenv)
	if err != nil {
		return err
	}
	defer c.Close()
	pos := fs.Args()
	nargs := func(lo, hi int) error {
		if len(pos) < lo || len(pos) > hi {
			return usageError{fmt.Errorf("%s takes %d to %d arguments, got %d", name, lo, hi, len(pos))}
		}
		return nil
	}
	first := c.Endpoints()[0]
	switch name {
	case "ls", "stat":
		if err := nargs(0, 0); err != nil {
			return err
		}
		st, err := c.ClusterStatus(ctx, "")
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(stdout, st)
		}
		return printNodes(stdout, st, name == "stat")
	case "add":
		if err := nargs(1, 2); err != nil {
			return err
		}
		via, host := first, pos[len(pos)-1]
		if len(pos) == 2 {
			via = pos[0]
		}
		return c.AddNode(ctx, via, host)
	case "rm":
		if err := nargs(1, 1); err != nil {
			return err
		}
		return c.RemoveNode(ctx, first, pos[0], rmDeletesState)
	case "edit":
		if err := nargs(1, 1); err != nil {
			return err
		}
		if len(f.rm) != 1 {
			return usageError{errors.New("edit needs exactly one --rm ID: remove one failed node at a time")}
		}
		return c.EditCluster(ctx, pos[0], f.rm[0])
	case "backup":
		if err := nargs(0, 1); err != nil {
			return err
		}
		if f.compress != "on" && f.compress != "off" {
			return usageError{fmt.Errorf("--compress %q: want on or off", f.compress)}
		}
		file := time.Now().UTC().Format(backupLayout) + backupSuffix
		if len(pos) == 1 {
			file = pos[0]
		}
		if err := backup(ctx, c, file, f.compress == "on"); err != nil {
			return err
		}
		_, err := fmt.Fprintln(stdout, file)
		return err
	case "restore":
		if err := nargs(1, 2); err != nil {
			return err
		}
		host, file := first, pos[len(pos)-1]
		if len(pos) == 2 {
			host = pos[0]
		}
		return restore(ctx, c, host, file)
	default: // ls-enclave, ls-key, ls-policy
		if err := nargs(0, 1); err != nil {
			return err
		}
		prefix := ""
		if len(pos) == 1 {
			prefix = pos[0]
		}
		enclave := f.enclave
		if enclave == "" {
			enclave = getenv("MINIO_KMS_ENCLAVE")
		}
		switch name {
		case "ls-enclave":
			return printList(stdout, f.json, c.ListEnclaves(ctx, prefix), (*pb.EnclaveStatusResponse).GetName)
		case "ls-key":
			return printList(stdout, f.json, c.ListKeys(ctx, enclave, prefix), (*pb.KeyStatusResponse).GetName)
		default:
			return printList(stdout, f.json, c.ListPolicies(ctx, enclave, prefix), (*pb.PolicyStatusResponse).GetName)
		}
	}
}

// newClient builds the kms client from the flags and the environment.
func newClient(f *clientFlags, getenv func(string) string) (*kms.Client, error) {
	text := strings.TrimSpace(f.apiKey)
	if text == "" {
		text = strings.TrimSpace(getenv("MINIO_KMS_API_KEY"))
	}
	if text == "" {
		return nil, errors.New("no API key: set MINIO_KMS_API_KEY (or pass --api-key, which other users can read in the process list)")
	}
	key, err := kms.ParseAPIKey(text)
	if err != nil {
		return nil, fmt.Errorf("API key: %w", err)
	}
	var servers []string
	for _, s := range strings.Split(getenv("MINIO_KMS_SERVER"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			servers = append(servers, s)
		}
	}
	if len(servers) == 0 {
		servers = []string{defaultServer}
	}
	pool, err := rootCAs(getenv("HOME"))
	if err != nil {
		return nil, err
	}
	return kms.New(kms.Config{Endpoints: servers, APIKey: key, RootCAs: pool, InsecureSkipVerify: f.insecure})
}

// rootCAs is the system pool plus the certificates in $HOME/caDir.
func rootCAs(home string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool() // no system pool on this platform: only caDir
	}
	if home == "" {
		return pool, nil
	}
	dir := filepath.Join(home, caDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return pool, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read CA directory: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".crt") || strings.HasSuffix(e.Name(), ".pem")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read CA certificate: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("read CA certificate %s: no PEM certificate found", filepath.Join(dir, e.Name()))
		}
	}
	return pool, nil
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printNodes prints one row per node of a cluster status: ID, status, role,
// uptime, host; detail adds commit, leader, version and system.
func printNodes(w io.Writer, st *pb.ClusterStatusResponse, detail bool) error {
	var ids []uint32
	for id := range st.NodesUp {
		ids = append(ids, id)
	}
	for id := range st.NodesDown {
		if _, ok := st.NodesUp[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "ID\tSTATUS\tROLE\tUPTIME\tHOST"
	if detail {
		header += "\tCOMMIT\tLEADER\tVERSION\tSYSTEM"
	}
	fmt.Fprintln(tw, header)
	for _, id := range ids {
		s, up := st.NodesUp[id]
		if !up {
			row := fmt.Sprintf("%d\toffline\t-\t-\t%s", id, st.NodesDown[id])
			if detail {
				row += "\t-\t-\t-\t-"
			}
			fmt.Fprintln(tw, row)
			continue
		}
		row := fmt.Sprintf("%d\tonline\t%s\t%s\t%s", id, s.GetRole(), s.GetUpTime().AsDuration().Round(time.Second), s.GetHost())
		if detail {
			leader := "none"
			if s.GetLeaderID() >= 0 {
				leader = strconv.FormatInt(s.GetLeaderID(), 10)
			}
			row += fmt.Sprintf("\t%d\t%s\t%s\t%s/%s, %d CPUs, heap %d MiB", s.GetCommit(), leader, s.GetVersion(), s.GetOS(), s.GetArch(), s.GetCPUs(), s.GetHeapMemInUse()>>20)
		}
		fmt.Fprintln(tw, row)
	}
	return tw.Flush()
}

// printList prints the names of a list, or one JSON object per line.
func printList[T proto.Message](w io.Writer, asJSON bool, items iter.Seq2[T, error], name func(T) string) error {
	for it, err := range items {
		if err != nil {
			return err
		}
		if asJSON {
			b, err := protojson.Marshal(it)
			if err != nil {
				return fmt.Errorf("encode JSON: %w", err)
			}
			fmt.Fprintf(w, "%s\n", b)
			continue
		}
		if _, err := fmt.Fprintln(w, name(it)); err != nil {
			return err
		}
	}
	return nil
}

// backup writes the snapshot of a server to file (gzip-compressed if
// compress), atomically and readable only by its owner; it refuses to
// replace an existing file.
func backup(ctx context.Context, c *kms.Client, file string, compress bool) error {
	if _, err := os.Lstat(file); err == nil {
		return fmt.Errorf("back up to %s: the file exists; name another", file)
	}
	pf, err := renameio.NewPendingFile(file, renameio.WithPermissions(0o600))
	if err != nil {
		return fmt.Errorf("back up to %s: %w", file, err)
	}
	defer pf.Cleanup()
	var w io.Writer = pf
	var zw *gzip.Writer
	if compress {
		zw = gzip.NewWriter(pf)
		w = zw
	}
	if _, err := c.Backup(ctx, "", w); err != nil {
		return err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return fmt.Errorf("back up to %s: compress: %w", file, err)
		}
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("back up to %s: %w", file, err)
	}
	return nil
}

// restore sends a backup file (raw or gzip) to host.
func restore(ctx context.Context, c *kms.Client, host, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return c.Restore(ctx, host, f, fi.Size())
}
