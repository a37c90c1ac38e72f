// Package lease keeps kmsctl's cluster leases on the nodes themselves: a
// small JSON file per cluster on every reachable node, outside the storage
// path (DefaultDir/lease-CLUSTER.json, 0644, no secret in it), naming the
// run that holds the cluster (user@host, pid, run ID, command, the step in
// flight, start, last renewal, expiry). Where the local lock (package lock)
// keeps apart the runs of one machine, the lease lets an operator on
// another bastion see who is doing what, and stops a second run there.
//
// A lease is renewed every RenewEvery while its run lives and expires TTL
// after its last renewal, so a run killed with SIGKILL (or a bastion that
// lost power) blocks others for at most TTL. Expiry is judged with the
// reader's clock against the times the holder wrote: bastions' clocks must
// agree to well within TTL (NTP). A node that cannot be reached does not
// block a run (dead nodes must be recoverable): Acquire says its lease
// could not be checked. A file there that is not a kmsctl lease is treated
// as held by an unknown holder, never ignored.
//
// The file is written through the connection's atomic upload (temp file,
// fsync, checksum, rename), so a reader never sees half of one. There is
// no compare-and-swap over SSH: Acquire reads every node, writes its lease
// where none is live, then reads them again and backs off (removing its
// own) when another run's lease appeared meanwhile; two runs started within
// the same moment from two bastions may both back off, never both hold.
package lease

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Defaults of the lease: where it lives on a node, how often a run renews
// it and how long after the last renewal it expires.
const (
	// DefaultDir is the lease directory on a node (kms_lease_dir).
	DefaultDir = "/var/lib/kmsctl"
	// RenewEvery is how often a run renews its leases.
	RenewEvery = 30 * time.Second
	// TTL is how long after its last renewal a lease expires: six
	// renewals, so a node that misses a few (sshd restarted, a network
	// blip) keeps it, and a dead run blocks others for a few minutes only.
	TTL = 3 * time.Minute
	// Kind marks a kmsctl lease file.
	Kind = "kmsctl-lease"
	// Version is the lease file format.
	Version = 1
)

// Record is the content of a lease file. It holds no secret.
type Record struct {
	Kind    string    `json:"kind"`
	Version int       `json:"version"`
	Cluster string    `json:"cluster"`
	User    string    `json:"user"` // user@host of the operator
	PID     int       `json:"pid"`
	Run     string    `json:"run"`     // the run's ID
	Command string    `json:"command"` // e.g. "kmsctl recover node kms2"
	Step    string    `json:"step,omitempty"`
	Since   time.Time `json:"since"`
	Renewed time.Time `json:"renewed"`
	Expires time.Time `json:"expires"`
}

// Expired reports whether the lease has expired at now.
func (r Record) Expired(now time.Time) bool { return !now.Before(r.Expires) }

// String names the holder for a message: "alice@bastion1 (pid 4242, run
// ID, `kmsctl recover node kms2`, at STEP, since 2026-12-02 08:51 UTC,
// renewed 08:53:10, expires 08:56:10 UTC)".
func (r Record) String() string {
	var b strings.Builder
	b.WriteString(r.User)
	fmt.Fprintf(&b, " (pid %d, run %s, `%s`", r.PID, r.Run, r.Command)
	if r.Step != "" {
		fmt.Fprintf(&b, ", at %s", r.Step)
	}
	fmt.Fprintf(&b, ", since %s UTC, renewed %s, expires %s UTC)", r.Since.UTC().Format("2006-01-02 15:04"),
		r.Renewed.UTC().Format("15:04:05"), r.Expires.UTC().Format("15:04:05"))
	return b.String()
}

// Parse decodes a lease file. Anything that is not a kmsctl lease (not
// JSON, another kind, no run or expiry) is an error.
func Parse(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("not JSON: %w", err)
	}
	switch {
	case r.Kind != Kind:
		return Record{}, fmt.Errorf("kind %q, want %q", r.Kind, Kind)
	case r.Version != Version:
		return Record{}, fmt.Errorf("version %d, this kmsctl reads version %d", r.Version, Version)
	case r.Run == "" || r.User == "" || r.Expires.IsZero():
		return Record{}, errors.New("no run, user or expiry")
	}
	return r, nil
}

// validCluster is the shape of a cluster name, which names the file.
var validCluster = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Path is the lease file of cluster in dir ("" = DefaultDir).
func Path(dir, cluster string) string {
	if dir == "" {
		dir = DefaultDir
	}
	return path.Join(dir, "lease-"+cluster+".json")
}

// Conn is what the lease needs of a connection to a node: the transport's
// method set (tasks.Conn and remote.Conn satisfy it).
type Conn interface {
	Host() string
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error
	Upload(ctx context.Context, path string, src io.Reader, sum string, perm fs.FileMode, owner string) (string, error)
	Download(ctx context.Context, path string, dst io.Writer) error
	Remove(ctx context.Context, path string) error
	Close() error
}

// Node is one node of a cluster, as the lease reaches it.
type Node struct {
	Name string
	// Dir is the node's lease directory ("" = DefaultDir).
	Dir string
	// Dial connects to the node (as a user that may write Dir).
	Dial func(ctx context.Context) (Conn, error)
}

// NodeLease is what one node holds for a cluster.
type NodeLease struct {
	Node string `json:"node"`
	Path string `json:"path"`
	// Lease is the record found; nil when there is none (or see Err,
	// Garbage).
	Lease *Record `json:"lease,omitempty"`
	// Expired says whether Lease had expired when it was read.
	Expired bool `json:"expired,omitempty"`
	// Garbage says why the file there is not a kmsctl lease; "" if it is
	// one or there is none.
	Garbage string `json:"garbage,omitempty"`
	// Err says why the node could not be checked (unreachable, the file
	// could not be read); "" when it was.
	Err string `json:"error,omitempty"`
	// raw is the file as read, for RemoveIfUnchanged.
	raw []byte
}

// Held reports whether the node holds a live lease or a file that is not
// a lease (held by someone unknown) at the time it was read.
func (n NodeLease) Held() bool { return n.Garbage != "" || (n.Lease != nil && !n.Expired) }

// Describe says in one line what the node holds.
func (n NodeLease) Describe() string {
	switch {
	case n.Err != "":
		return fmt.Sprintf("%s: lease not checked: %s", n.Node, n.Err)
	case n.Garbage != "":
		return fmt.Sprintf("%s: %s is not a kmsctl lease (%s): held by someone unknown", n.Node, n.Path, n.Garbage)
	case n.Lease == nil:
		return fmt.Sprintf("%s: no lease", n.Node)
	case n.Expired:
		return fmt.Sprintf("%s: expired lease of %s", n.Node, n.Lease)
	}
	return fmt.Sprintf("%s: leased by %s", n.Node, n.Lease)
}

// HeldError is returned when another run holds a cluster's lease on a
// node (or a file there is not a kmsctl lease).
type HeldError struct {
	Cluster string
	NodeLease
}

// Error names the cluster, the node and the holder.
func (e *HeldError) Error() string {
	if e.Garbage != "" {
		return fmt.Sprintf("cluster %s: the lease file %s on %s is not a kmsctl lease (%s), so kmsctl cannot tell who holds the cluster; "+
			"look at it, and remove it with `kmsctl lock release` once nobody runs against the cluster", e.Cluster, e.Path, e.Node, e.Garbage)
	}
	return fmt.Sprintf("cluster %s is leased on %s by %s", e.Cluster, e.Node, e.Lease)
}

// read reads the lease at p through c.
func read(ctx context.Context, c Conn, name, p string, now time.Time) NodeLease {
	var buf bytes.Buffer
	err := c.Download(ctx, p, &buf)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return NodeLease{Node: name, Path: p}
	case err != nil:
		return NodeLease{Node: name, Path: p, Err: err.Error()}
	}
	return Decode(name, p, buf.Bytes(), now)
}

// Decode judges the content of node's lease file at p, read at now by
// other means (a task of a read-only play).
func Decode(node, p string, content []byte, now time.Time) NodeLease {
	nl := NodeLease{Node: node, Path: p, raw: content}
	r, err := Parse(content)
	if err != nil {
		nl.Garbage = err.Error()
		return nl
	}
	nl.Lease, nl.Expired = &r, r.Expired(now)
	return nl
}

// Survey reads the lease of cluster on every node at once, at now, and
// closes its connections.
func Survey(ctx context.Context, cluster string, nodes []Node, now time.Time) []NodeLease {
	out := make([]NodeLease, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := Path(n.Dir, cluster)
			c, err := n.Dial(ctx)
			if err != nil {
				out[i] = NodeLease{Node: n.Name, Path: p, Err: err.Error()}
				return
			}
			defer c.Close()
			out[i] = read(ctx, c, n.Name, p, now)
		}()
	}
	wg.Wait()
	return out
}

// RemoveIfUnchanged removes the lease file nl was read from when it still
// holds what was read then: a lease renewed (or taken) since is left alone
// and reported. nl must come from Survey.
func RemoveIfUnchanged(ctx context.Context, n Node, nl NodeLease) error {
	c, err := n.Dial(ctx)
	if err != nil {
		return fmt.Errorf("remove the lease on %s: %w", n.Name, err)
	}
	defer c.Close()
	var buf bytes.Buffer
	if err := c.Download(ctx, nl.Path, &buf); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove the lease on %s: %w", n.Name, err)
	}
	if !bytes.Equal(buf.Bytes(), nl.raw) {
		return fmt.Errorf("remove the lease on %s: %s changed since it was read (its holder renewed it or another run took it); nothing removed there, see `kmsctl lock status`", n.Name, nl.Path)
	}
	if err := c.Remove(ctx, nl.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the lease on %s: %w", n.Name, err)
	}
	return nil
}

// Options describe the lease a run takes.
type Options struct {
	Cluster string
	Nodes   []Node
	// Holder names the run (User, PID, Run, Command, Since); Kind,
	// Version, Cluster and the times are filled in.
	Holder Record
	// Resumes is the ID of an interrupted run that this one finishes
	// (kmsctl resume RUN-ID): its leases are taken over even when they
	// have not expired. A lease of Holder.Run is always the run's own.
	Resumes string
	// Wait is how long Acquire keeps trying while another run holds the
	// lease (0: not at all); RetryEvery is the pause between tries
	// (0: 2 s).
	Wait       time.Duration
	RetryEvery time.Duration
	// TTL is how long a lease lives after a renewal (0: TTL).
	TTL time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Lease is a run's lease of one cluster, held on every node that could be
// written, until Release.
type Lease struct {
	o Options
	// io serializes the rounds over the nodes (acquire, renewals,
	// release) and guards conns and held.
	io    sync.Mutex
	conns []Conn
	// held marks the nodes where the lease was written, or a write was
	// tried; Release removes it there when it still names the run.
	held []bool
	// mu guards rec, which SetStep changes without waiting for a round.
	mu  sync.Mutex
	rec Record
	// notices say what Acquire found worth telling (leases not checked,
	// leases taken over).
	notices []string
	// kick asks the keeper to write the step now.
	kick chan struct{}
	stop func()
}

// Notices returns what Acquire found worth telling the operator: nodes
// whose lease could not be checked or written, leases taken over.
func (l *Lease) Notices() []string { return append([]string(nil), l.notices...) }

// Record returns the lease as last written.
func (l *Lease) Record() Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Options) ttl() time.Duration {
	if o.TTL > 0 {
		return o.TTL
	}
	return TTL
}

// own reports whether r is a lease this run may take as its own.
func (o *Options) own(r *Record) bool {
	return r.Run == o.Holder.Run || (o.Resumes != "" && r.Run == o.Resumes)
}

// Acquire takes the lease of o.Cluster on every node that answers, waiting
// up to o.Wait while another run holds it on one (ctx ends the wait too).
// A live lease of another run, or a file that is not a lease, is a
// *HeldError naming the node and the holder; an expired lease, or one of
// the run itself or of the run it resumes, is taken over (Notices says
// so), and so is a node that cannot be reached (Notices says its lease was
// not checked).
func Acquire(ctx context.Context, o Options) (*Lease, error) {
	if !validCluster.MatchString(o.Cluster) {
		return nil, fmt.Errorf("lease: cluster name %q: want letters, digits, '.', '_' and '-'", o.Cluster)
	}
	every := o.RetryEvery
	if every <= 0 {
		every = 2 * time.Second
	}
	deadline := time.Now().Add(o.Wait)
	for {
		l, err := tryAcquire(ctx, o)
		var held *HeldError
		left := time.Until(deadline)
		if !errors.As(err, &held) || left <= 0 {
			return l, err
		}
		// Two runs that backed off from each other should not meet again:
		// a random part in the pause.
		pause := min(every+rand.N(every/2+1), left)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lease cluster %s: %w (last seen: %v)", o.Cluster, ctx.Err(), err)
		case <-time.After(pause):
		}
	}
}

func tryAcquire(ctx context.Context, o Options) (*Lease, error) {
	l := &Lease{o: o, conns: make([]Conn, len(o.Nodes)), held: make([]bool, len(o.Nodes)), kick: make(chan struct{}, 1)}
	l.rec = o.Holder
	l.rec.Kind, l.rec.Version, l.rec.Cluster = Kind, Version, o.Cluster
	now := o.now()
	found := l.each(ctx, func(ctx context.Context, i int, c Conn) NodeLease {
		return read(ctx, c, o.Nodes[i].Name, Path(o.Nodes[i].Dir, o.Cluster), now)
	})
	for _, nl := range found {
		if nl.Err == "" && nl.Garbage == "" && nl.Lease != nil && !nl.Expired && !o.own(nl.Lease) {
			l.closeAll()
			return nil, &HeldError{Cluster: o.Cluster, NodeLease: nl}
		}
	}
	for _, nl := range found {
		if nl.Garbage != "" {
			l.closeAll()
			return nil, &HeldError{Cluster: o.Cluster, NodeLease: nl}
		}
	}
	for _, nl := range found {
		switch {
		case nl.Err != "":
			l.notices = append(l.notices, fmt.Sprintf("lease of cluster %s on %s not checked: %s", o.Cluster, nl.Node, nl.Err))
		case nl.Lease == nil:
		case nl.Lease.Run == o.Holder.Run:
		case o.own(nl.Lease):
			l.notices = append(l.notices, fmt.Sprintf("lease of cluster %s on %s taken over from the run it resumes, %s", o.Cluster, nl.Node, nl.Lease))
		default:
			l.notices = append(l.notices, fmt.Sprintf("lease of cluster %s on %s taken over: it had expired (%s)", o.Cluster, nl.Node, nl.Lease))
		}
	}
	werrs := l.writeLocked(ctx, now, found)
	for i, err := range werrs {
		if err != nil && found[i].Err == "" {
			l.notices = append(l.notices, fmt.Sprintf("lease of cluster %s on %s not written: %v", o.Cluster, o.Nodes[i].Name, err))
		}
	}
	// Read again: a run that wrote at the same moment wins on some node.
	again := l.each(ctx, func(ctx context.Context, i int, c Conn) NodeLease {
		if !l.held[i] {
			return NodeLease{}
		}
		return read(ctx, c, o.Nodes[i].Name, Path(o.Nodes[i].Dir, o.Cluster), now)
	})
	for i, nl := range again {
		if !l.held[i] || !nl.Held() || (nl.Lease != nil && (nl.Lease.Run == o.Holder.Run || o.own(nl.Lease))) {
			continue
		}
		rerr := l.Release(ctx)
		return nil, errors.Join(&HeldError{Cluster: o.Cluster, NodeLease: nl}, rerr)
	}
	return l, nil
}

// each runs f on every node's connection at once (dialling those not
// connected), and returns f's answers; a node that cannot be dialled gets
// a NodeLease with Err.
func (l *Lease) each(ctx context.Context, f func(ctx context.Context, i int, c Conn) NodeLease) []NodeLease {
	out := make([]NodeLease, len(l.o.Nodes))
	var wg sync.WaitGroup
	for i, n := range l.o.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := l.conn(ctx, i)
			if err != nil {
				out[i] = NodeLease{Node: n.Name, Path: Path(n.Dir, l.o.Cluster), Err: err.Error()}
				return
			}
			out[i] = f(ctx, i, c)
			if out[i].Err != "" {
				l.drop(i)
			}
		}()
	}
	wg.Wait()
	return out
}

// conn returns node i's connection, dialling it when there is none.
func (l *Lease) conn(ctx context.Context, i int) (Conn, error) {
	// Connections are only set and dropped by each (one goroutine per
	// node), never concurrently for one node.
	if c := l.conns[i]; c != nil {
		return c, nil
	}
	c, err := l.o.Nodes[i].Dial(ctx)
	if err != nil {
		return nil, err
	}
	l.conns[i] = c
	return c, nil
}

// drop closes node i's connection after an error, so that the next renewal
// dials it again.
func (l *Lease) drop(i int) {
	if c := l.conns[i]; c != nil {
		c.Close()
		l.conns[i] = nil
	}
}

func (l *Lease) closeAll() {
	for i := range l.conns {
		l.drop(i)
	}
}

// writeLocked writes the lease, renewed at now, on every node whose state
// in found allows it (none, the run's own, expired; never where it could
// not be read), marking held those written. l.io is held (or l is not
// shared yet).
func (l *Lease) writeLocked(ctx context.Context, now time.Time, found []NodeLease) []error {
	l.mu.Lock()
	l.rec.Renewed, l.rec.Expires = now.UTC(), now.Add(l.o.ttl()).UTC()
	if l.rec.Since.IsZero() {
		l.rec.Since = now.UTC()
	}
	rec := l.rec
	l.mu.Unlock()
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return []error{fmt.Errorf("encode lease: %w", err)}
	}
	b = append(b, '\n')
	errs := make([]error, len(l.o.Nodes))
	l.each(ctx, func(ctx context.Context, i int, c Conn) NodeLease {
		nl := found[i]
		if nl.Err != "" || nl.Garbage != "" || (nl.Lease != nil && !nl.Expired && nl.Lease.Run != rec.Run && !l.o.own(nl.Lease)) {
			return NodeLease{}
		}
		// A write that failed may still have landed (cut off after the
		// rename): Release looks there too.
		l.held[i] = true
		if err := write(ctx, c, l.o.Nodes[i], l.o.Cluster, b); err != nil {
			errs[i] = err
			return NodeLease{Err: err.Error()}
		}
		return NodeLease{}
	})
	return errs
}

// write puts the lease b on node n through c: the directory made if need
// be, then an atomic upload.
func write(ctx context.Context, c Conn, n Node, cluster string, b []byte) error {
	p := Path(n.Dir, cluster)
	var stderr bytes.Buffer
	if err := c.Run(ctx, "mkdir -p "+quote(path.Dir(p)), nil, io.Discard, &stderr); err != nil {
		return fmt.Errorf("create %s: %w: %s", path.Dir(p), err, strings.TrimSpace(stderr.String()))
	}
	if _, err := c.Upload(ctx, p, bytes.NewReader(b), "", 0o644, ""); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// quote quotes s for a POSIX shell.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// SetStep records the step in flight; the keeper (Keep) writes it to the
// nodes soon, without holding up the run.
func (l *Lease) SetStep(step string) {
	l.mu.Lock()
	l.rec.Step = step
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Renew writes the lease again, renewed now, on every node that answers:
// where it is held, where it is missing, and where it could not be written
// before (a node back from an outage). A node where another run's live
// lease now is keeps it and is reported in the error, as are the nodes
// that could not be written.
func (l *Lease) Renew(ctx context.Context) error {
	l.io.Lock()
	defer l.io.Unlock()
	now := l.o.now()
	found := l.each(ctx, func(ctx context.Context, i int, c Conn) NodeLease {
		return read(ctx, c, l.o.Nodes[i].Name, Path(l.o.Nodes[i].Dir, l.o.Cluster), now)
	})
	var errs []error
	for _, nl := range found {
		switch {
		case nl.Err != "":
			errs = append(errs, fmt.Errorf("renew the lease of cluster %s on %s: %s", l.o.Cluster, nl.Node, nl.Err))
		case nl.Held() && (nl.Lease == nil || nl.Lease.Run != l.o.Holder.Run):
			errs = append(errs, &HeldError{Cluster: l.o.Cluster, NodeLease: nl})
		}
	}
	for i, err := range l.writeLocked(ctx, now, found) {
		if err != nil && found[i].Err == "" {
			errs = append(errs, fmt.Errorf("renew the lease of cluster %s on %s: %w", l.o.Cluster, l.o.Nodes[i].Name, err))
		}
	}
	return errors.Join(errs...)
}

// Keep renews the lease every `every` and soon after each SetStep, until
// Release, reporting each renewal's problems to warn (called from the
// keeper's goroutine). Call it once.
func (l *Lease) Keep(ctx context.Context, every time.Duration, warn func(error)) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	l.stop = func() {
		cancel()
		<-done
	}
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-l.kick:
			}
			if err := l.Renew(ctx); err != nil && ctx.Err() == nil {
				warn(err)
			}
		}
	}()
}

// Release stops the keeper and removes the lease from every node that
// holds it and still names this run (a lease another run took over once
// this one had expired is left alone), then closes the connections. A
// node that cannot be reached keeps the lease until it expires; the error
// says so.
func (l *Lease) Release(ctx context.Context) error {
	if l.stop != nil {
		l.stop()
		l.stop = nil
	}
	l.io.Lock()
	defer l.io.Unlock()
	res := l.each(ctx, func(ctx context.Context, i int, c Conn) NodeLease {
		if !l.held[i] {
			return NodeLease{}
		}
		p := Path(l.o.Nodes[i].Dir, l.o.Cluster)
		nl := read(ctx, c, l.o.Nodes[i].Name, p, l.o.now())
		switch {
		case nl.Err != "":
			return nl
		case nl.Lease == nil || nl.Lease.Run != l.o.Holder.Run:
			l.held[i] = false
			return NodeLease{}
		}
		if err := c.Remove(ctx, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return NodeLease{Err: err.Error()}
		}
		// The lease directory goes too when nothing else is in it, so that a run
		// leaves the node as it found it; one that holds other files (another
		// cluster's lease) refuses the removal and stays, which is right: the
		// error of a directory that is not empty is the expected outcome.
		_ = c.Run(ctx, "rmdir -- "+quote(path.Dir(p)), nil, io.Discard, io.Discard)
		l.held[i] = false
		return NodeLease{}
	})
	errs := make([]error, len(res))
	for i, nl := range res {
		if l.held[i] && nl.Err != "" {
			errs[i] = errors.New(nl.Err)
		}
	}
	l.closeAll()
	var out []error
	for i, err := range errs {
		if err != nil {
			out = append(out, fmt.Errorf("remove the lease of cluster %s on %s: %w; it expires at %s UTC", l.o.Cluster, l.o.Nodes[i].Name, err, l.Record().Expires.Format("15:04:05")))
		}
	}
	return errors.Join(out...)
}
