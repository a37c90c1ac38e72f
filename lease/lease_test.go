package lease_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/lease"
	"github.com/kmsctl/kmsctl/remote/fake"
)

// clock is a settable clock for the leases' expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// cluster is three fake nodes; down marks those that do not answer.
type cluster struct {
	hosts []*fake.Conn
	mu    sync.Mutex
	down  map[string]bool
	// wrap, when set, wraps each connection dialled.
	wrap func(*fake.Conn) lease.Conn
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{down: map[string]bool{}}
	for _, h := range []string{"kms1", "kms2", "kms3"} {
		c.hosts = append(c.hosts, fake.New(t, h))
	}
	return c
}

// setDown makes host refuse connections and fail those open (or, with
// false, answer again).
func (c *cluster) setDown(host string, down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down[host] = down
	for _, f := range c.hosts {
		if f.Host() == host {
			f.SetUnreachable(down)
		}
	}
}

// shared is one of the connections to a fake host, which several runs of
// a test share: closing it leaves the host's fake open for the others.
type shared struct{ *fake.Conn }

func (shared) Close() error { return nil }

func (c *cluster) nodes() []lease.Node {
	var out []lease.Node
	for _, f := range c.hosts {
		out = append(out, lease.Node{Name: f.Host(), Dial: func(context.Context) (lease.Conn, error) {
			c.mu.Lock()
			down := c.down[f.Host()]
			c.mu.Unlock()
			if down {
				return nil, fmt.Errorf("connect to %s: connection refused", f.Host())
			}
			if c.wrap != nil {
				return c.wrap(f), nil
			}
			return shared{f}, nil
		}})
	}
	return out
}

// file returns the lease file on host h ("" when there is none).
func (c *cluster) file(t *testing.T, h int) string {
	t.Helper()
	f, ok := c.hosts[h].File(lease.Path("", "kms"))
	if !ok {
		return ""
	}
	if f.Mode.Perm() != 0o644 {
		t.Errorf("%s: lease file mode %v, want 0644", c.hosts[h].Host(), f.Mode.Perm())
	}
	return string(f.Content)
}

func (c *cluster) record(t *testing.T, h int) lease.Record {
	t.Helper()
	r, err := lease.Parse([]byte(c.file(t, h)))
	if err != nil {
		t.Fatalf("%s: %v", c.hosts[h].Host(), err)
	}
	return r
}

var t0 = time.Date(2026, 12, 2, 8, 51, 0, 0, time.UTC)

func holder(user, run string) lease.Record {
	return lease.Record{User: user, PID: 4242, Run: run, Command: "kmsctl recover node kms2", Since: t0}
}

func opts(c *cluster, clk *clock, h lease.Record) lease.Options {
	return lease.Options{Cluster: "kms", Nodes: c.nodes(), Holder: h, Now: clk.Now}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestSecondBastionRefused: a run on one bastion writes its lease on every
// node (0644, naming it); a run from another bastion is refused with a
// *HeldError naming the node and the holder, and changes no lease file.
func TestSecondBastionRefused(t *testing.T) {
	c := newCluster(t)
	clk := &clock{now: t0}
	a, err := lease.Acquire(ctx(t), opts(c, clk, holder("alice@bastion1", "run-a")))
	if err != nil {
		t.Fatal(err)
	}
	if n := a.Notices(); len(n) != 0 {
		t.Errorf("notices: %q", n)
	}
	before := make([]string, 3)
	for i := range c.hosts {
		r := c.record(t, i)
		if r.Run != "run-a" || r.User != "alice@bastion1" || r.Cluster != "kms" || !r.Renewed.Equal(t0) || !r.Expires.Equal(t0.Add(lease.TTL)) {
			t.Errorf("%s: lease %+v", c.hosts[i].Host(), r)
		}
		before[i] = c.file(t, i)
	}
	clk.add(time.Minute)
	_, err = lease.Acquire(ctx(t), opts(c, clk, holder("bob@bastion2", "run-b")))
	var held *lease.HeldError
	if !errors.As(err, &held) || held.Lease == nil || held.Lease.Run != "run-a" {
		t.Fatalf("second run: %v, want a *HeldError naming run-a", err)
	}
	want := "cluster kms is leased on kms1 by alice@bastion1 (pid 4242, run run-a, `kmsctl recover node kms2`, since 2026-12-02 08:51 UTC, renewed 08:51:00, expires 08:54:00 UTC)"
	if err.Error() != want {
		t.Errorf("error:\n%s\nwant\n%s", err, want)
	}
	for i := range c.hosts {
		if got := c.file(t, i); got != before[i] {
			t.Errorf("%s: the refused run changed the lease:\n%s", c.hosts[i].Host(), got)
		}
	}
}

// TestExpiredTakenOver: a lease not renewed for TTL is taken over, and the
// notice says whose it was.
func TestExpiredTakenOver(t *testing.T) {
	c := newCluster(t)
	clk := &clock{now: t0}
	if _, err := lease.Acquire(ctx(t), opts(c, clk, holder("alice@bastion1", "run-a"))); err != nil {
		t.Fatal(err)
	}
	// Just before expiry it still holds.
	clk.add(lease.TTL - time.Second)
	if _, err := lease.Acquire(ctx(t), opts(c, clk, holder("bob@bastion2", "run-b"))); err == nil {
		t.Fatal("a lease one second before its expiry was taken")
	}
	clk.add(time.Second)
	b, err := lease.Acquire(ctx(t), opts(c, clk, holder("bob@bastion2", "run-b")))
	if err != nil {
		t.Fatal(err)
	}
	n := b.Notices()
	if len(n) != 3 || !strings.Contains(n[0], "lease of cluster kms on kms1 taken over: it had expired (alice@bastion1 (pid 4242, run run-a") {
		t.Errorf("notices: %q", n)
	}
	for i := range c.hosts {
		if r := c.record(t, i); r.Run != "run-b" {
			t.Errorf("%s: %+v", c.hosts[i].Host(), r)
		}
	}
}

// TestRenewAndRelease: Renew moves the renewal and the expiry and writes
// the step in flight; Release removes the lease everywhere, but leaves a
// lease another run took over meanwhile.
func TestRenewAndRelease(t *testing.T) {
	c := newCluster(t)
	clk := &clock{now: t0}
	a, err := lease.Acquire(ctx(t), opts(c, clk, holder("alice@bastion1", "run-a")))
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute)
	a.SetStep(`"wipe" on kms2`)
	if err := a.Renew(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for i := range c.hosts {
		r := c.record(t, i)
		if !r.Renewed.Equal(t0.Add(time.Minute)) || !r.Expires.Equal(t0.Add(time.Minute+lease.TTL)) || r.Step != `"wipe" on kms2` || !r.Since.Equal(t0) {
			t.Errorf("%s: after renewal %+v", c.hosts[i].Host(), r)
		}
	}
	// A lease file removed by hand is written again at the next renewal.
	c.hosts[1].DeleteFile(lease.Path("", "kms"))
	if err := a.Renew(ctx(t)); err != nil || c.file(t, 1) == "" {
		t.Fatalf("renew after the file was removed: %v, file %q", err, c.file(t, 1))
	}
	// kms3 was taken over by another run after run-a's lease expired there.
	other := holder("bob@bastion2", "run-b")
	other.Kind, other.Version, other.Cluster, other.Renewed, other.Expires = lease.Kind, lease.Version, "kms", t0, t0.Add(time.Hour)
	c.hosts[2].SetFile(lease.Path("", "kms"), mustJSON(t, other), 0o644)
	err = a.Renew(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "leased on kms3 by bob@bastion2") {
		t.Errorf("renew over another run's lease: %v", err)
	}
	if r := c.record(t, 2); r.Run != "run-b" {
		t.Errorf("renewal overwrote another run's live lease: %+v", r)
	}
	if err := a.Release(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if f := c.file(t, i); f != "" {
			t.Errorf("%s: lease left after release: %s", c.hosts[i].Host(), f)
		}
	}
	if r := c.record(t, 2); r.Run != "run-b" {
		t.Errorf("release removed another run's lease: %+v", r)
	}
	// The lease directory goes with the lease where nothing else is in it (a refused run
	// leaves the node as it found it), and stays where another lease is.
	for i := range 2 {
		if _, ok := c.hosts[i].File(lease.DefaultDir); ok {
			t.Errorf("%s: the empty lease directory %s was left after release", c.hosts[i].Host(), lease.DefaultDir)
		}
	}
	if _, ok := c.hosts[2].File(lease.DefaultDir); !ok {
		t.Errorf("kms3: the lease directory holding run-b's lease was removed")
	}
	if err := a.Release(ctx(t)); err != nil {
		t.Errorf("second release: %v", err)
	}
}

// TestKeepRenews: the keeper writes a step soon after SetStep and keeps
// renewing until Release.
func TestKeepRenews(t *testing.T) {
	c := newCluster(t)
	a, err := lease.Acquire(ctx(t), lease.Options{Cluster: "kms", Nodes: c.nodes(), Holder: holder("alice@bastion1", "run-a")})
	if err != nil {
		t.Fatal(err)
	}
	warned := make(chan error, 10)
	a.Keep(ctx(t), time.Hour, func(err error) { warned <- err })
	a.SetStep(`"add" on kms1`)
	for !strings.Contains(c.file(t, 0), `"add\" on kms1`) {
		select {
		case err := <-warned:
			t.Fatal(err)
		case <-ctx(t).Done():
			t.Fatal("the step never reached the lease")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := a.Release(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if f := c.file(t, 0); f != "" {
		t.Errorf("lease left: %s", f)
	}
}

// TestGarbageLease: a file in the lease's place that is not a kmsctl
// lease refuses the run (held by someone unknown), names the file and the
// node, and is left as it was.
func TestGarbageLease(t *testing.T) {
	for name, content := range map[string]string{
		"not JSON":   "hello\n",
		"other kind": `{"kind":"something","run":"x","user":"u","expires":"2030-01-01T00:00:00Z","version":1}`,
		"no expiry":  `{"kind":"kmsctl-lease","version":1,"run":"x","user":"u"}`,
		"empty":      "",
	} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			c.hosts[1].MkdirAll(lease.DefaultDir)
			c.hosts[1].SetFile(lease.Path("", "kms"), content, 0o644)
			_, err := lease.Acquire(ctx(t), opts(c, &clock{now: t0}, holder("alice@bastion1", "run-a")))
			var held *lease.HeldError
			if !errors.As(err, &held) || held.Garbage == "" || held.Node != "kms2" {
				t.Fatalf("%v, want a *HeldError for kms2's garbage", err)
			}
			if !strings.Contains(err.Error(), "the lease file /var/lib/kmsctl/lease-kms.json on kms2 is not a kmsctl lease") || !strings.Contains(err.Error(), "kmsctl lock release") {
				t.Errorf("message: %v", err)
			}
			if got := c.file(t, 1); got != content {
				t.Errorf("garbage changed: %q", got)
			}
			for _, i := range []int{0, 2} {
				if f := c.file(t, i); f != "" {
					t.Errorf("%s: lease written although the run was refused: %s", c.hosts[i].Host(), f)
				}
			}
		})
	}
}

// TestUnreachableNodeDoesNotBlock: a node that does not answer does not
// stop the run; the notice says its lease was not checked; the next
// renewal writes it there once it answers.
func TestUnreachableNodeDoesNotBlock(t *testing.T) {
	c := newCluster(t)
	c.setDown("kms2", true)
	a, err := lease.Acquire(ctx(t), opts(c, &clock{now: t0}, holder("alice@bastion1", "run-a")))
	if err != nil {
		t.Fatal(err)
	}
	n := a.Notices()
	if len(n) != 1 || n[0] != "lease of cluster kms on kms2 not checked: connect to kms2: connection refused" {
		t.Errorf("notices: %q", n)
	}
	if c.file(t, 1) != "" || c.file(t, 0) == "" || c.file(t, 2) == "" {
		t.Fatal("lease files not as expected")
	}
	c.setDown("kms2", false)
	if err := a.Renew(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if r := c.record(t, 1); r.Run != "run-a" {
		t.Errorf("kms2 after it answers again: %+v", r)
	}
	// Down again at the end: release says the lease there expires later.
	c.setDown("kms2", true)
	err = a.Release(ctx(t))
	if err == nil || !strings.HasPrefix(err.Error(), "remove the lease of cluster kms on kms2: ") || !strings.HasSuffix(err.Error(), "unreachable (fake); it expires at 08:54:00 UTC") {
		t.Errorf("release with kms2 down: %v", err)
	}
	if c.file(t, 0) != "" || c.file(t, 2) != "" {
		t.Error("leases left on the nodes that answer")
	}
}

// TestResumeTakesOverItsRun: a run resuming an interrupted one takes over
// its unexpired lease (the notice says so), as does a new acquisition by
// the same run ID; a third run is still refused.
func TestResumeTakesOverItsRun(t *testing.T) {
	c := newCluster(t)
	clk := &clock{now: t0}
	if _, err := lease.Acquire(ctx(t), opts(c, clk, holder("alice@bastion1", "run-a"))); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute)
	// The same run again (resume keeping the run's ID): silently its own.
	same, err := lease.Acquire(ctx(t), opts(c, clk, holder("alice@bastion1", "run-a")))
	if err != nil || len(same.Notices()) != 0 {
		t.Fatalf("same run: %v %q", err, same.Notices())
	}
	// A resume with an ID of its own names the run it finishes.
	o := opts(c, clk, holder("bob@bastion2", "run-r"))
	o.Resumes = "run-a"
	r, err := lease.Acquire(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Notices(); len(n) != 3 || !strings.Contains(n[0], "taken over from the run it resumes, alice@bastion1") {
		t.Errorf("notices: %q", n)
	}
	if rec := c.record(t, 0); rec.Run != "run-r" {
		t.Errorf("lease after resume: %+v", rec)
	}
	o = opts(c, clk, holder("carol@bastion3", "run-c"))
	o.Resumes = "run-a" // resuming a run whose lease another run holds now
	if _, err := lease.Acquire(ctx(t), o); err == nil || !strings.Contains(err.Error(), "by bob@bastion2") {
		t.Errorf("a third run: %v", err)
	}
}

// racer writes another run's lease on its node right after each upload of
// the run under test, as a run on another bastion starting at the same
// moment would.
type racer struct {
	shared
	other string
}

func (r racer) Upload(ctx context.Context, p string, src io.Reader, sum string, perm fs.FileMode, owner string) (string, error) {
	s, err := r.Conn.Upload(ctx, p, src, sum, perm, owner)
	r.Conn.SetFile(p, r.other, 0o644)
	return s, err
}

// TestSimultaneousRunsBackOff: when another run's lease appears on a node
// between the write and the read-back, Acquire backs off with a
// *HeldError and removes its own lease from the other nodes.
func TestSimultaneousRunsBackOff(t *testing.T) {
	c := newCluster(t)
	other := holder("bob@bastion2", "run-b")
	other.Kind, other.Version, other.Cluster, other.Renewed, other.Expires = lease.Kind, lease.Version, "kms", t0, t0.Add(lease.TTL)
	c.wrap = func(f *fake.Conn) lease.Conn {
		if f.Host() == "kms3" {
			return racer{shared{f}, mustJSON(t, other)}
		}
		return shared{f}
	}
	_, err := lease.Acquire(ctx(t), opts(c, &clock{now: t0}, holder("alice@bastion1", "run-a")))
	var held *lease.HeldError
	if !errors.As(err, &held) || held.Node != "kms3" || held.Lease.Run != "run-b" {
		t.Fatalf("%v, want a *HeldError for kms3", err)
	}
	if c.file(t, 0) != "" || c.file(t, 1) != "" {
		t.Errorf("the run that backed off left its lease: %q %q", c.file(t, 0), c.file(t, 1))
	}
	if r := c.record(t, 2); r.Run != "run-b" {
		t.Errorf("kms3: %+v", r)
	}
}

// TestWaitForRelease: with Wait, Acquire tries again until the holder
// releases.
func TestWaitForRelease(t *testing.T) {
	c := newCluster(t)
	a, err := lease.Acquire(ctx(t), lease.Options{Cluster: "kms", Nodes: c.nodes(), Holder: holder("alice@bastion1", "run-a")})
	if err != nil {
		t.Fatal(err)
	}
	o := lease.Options{Cluster: "kms", Nodes: c.nodes(), Holder: holder("bob@bastion2", "run-b"), Wait: time.Minute, RetryEvery: 20 * time.Millisecond}
	o.Wait = 0
	if _, err := lease.Acquire(ctx(t), o); err == nil {
		t.Fatal("acquired while held")
	}
	o.Wait = time.Minute
	go func() {
		time.Sleep(100 * time.Millisecond)
		a.Release(context.Background())
	}()
	b, err := lease.Acquire(ctx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.record(t, 0); r.Run != "run-b" {
		t.Errorf("%+v", r)
	}
	b.Release(ctx(t))
}

// TestSurveyAndRemoveIfUnchanged: Survey reports every node (lease,
// expired, garbage, not checked); RemoveIfUnchanged removes what was read
// and refuses a lease renewed since.
func TestSurveyAndRemoveIfUnchanged(t *testing.T) {
	c := newCluster(t)
	clk := &clock{now: t0}
	a, err := lease.Acquire(ctx(t), opts(c, clk, holder("alice@bastion1", "run-a")))
	if err != nil {
		t.Fatal(err)
	}
	c.hosts[1].SetFile(lease.Path("", "kms"), "junk", 0o644)
	c.setDown("kms3", true)
	got := lease.Survey(ctx(t), "kms", c.nodes(), t0.Add(lease.TTL))
	want := []string{
		"kms1: expired lease of alice@bastion1 (pid 4242, run run-a, `kmsctl recover node kms2`, since 2026-12-02 08:51 UTC, renewed 08:51:00, expires 08:54:00 UTC)",
		"kms2: /var/lib/kmsctl/lease-kms.json is not a kmsctl lease (not JSON: invalid character 'j' looking for beginning of value): held by someone unknown",
		"kms3: lease not checked: connect to kms3: connection refused",
	}
	for i, nl := range got {
		if nl.Describe() != want[i] {
			t.Errorf("node %d:\n%s\nwant\n%s", i, nl.Describe(), want[i])
		}
	}
	if got[0].Held() || !got[1].Held() || got[2].Held() {
		t.Errorf("held: %v %v %v", got[0].Held(), got[1].Held(), got[2].Held())
	}
	// Renewed after the survey: not removed.
	clk.add(time.Minute)
	if err := a.Renew(ctx(t)); err == nil {
		t.Fatal("renew over garbage and a down node reported nothing")
	}
	n := c.nodes()
	if err := lease.RemoveIfUnchanged(ctx(t), n[0], got[0]); err == nil || !strings.Contains(err.Error(), "changed since it was read") {
		t.Errorf("remove a renewed lease: %v", err)
	}
	if c.file(t, 0) == "" {
		t.Error("a renewed lease was removed")
	}
	if err := lease.RemoveIfUnchanged(ctx(t), n[1], got[1]); err != nil || c.file(t, 1) != "" {
		t.Errorf("remove the garbage: %v", err)
	}
}

func mustJSON(t *testing.T, r lease.Record) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// landedButFailed reports an error for an upload that landed, as a
// connection cut after the rename does.
type landedButFailed struct{ shared }

func (c landedButFailed) Upload(ctx context.Context, p string, src io.Reader, sum string, perm fs.FileMode, owner string) (string, error) {
	if _, err := c.shared.Upload(ctx, p, src, sum, perm, owner); err != nil {
		return "", err
	}
	return "", errors.New("connection lost")
}

// TestReleaseRemovesAWriteThatFailedLate: a lease whose write reported an
// error but landed is removed at release all the same.
func TestReleaseRemovesAWriteThatFailedLate(t *testing.T) {
	c := newCluster(t)
	c.wrap = func(f *fake.Conn) lease.Conn {
		if f.Host() == "kms2" {
			return landedButFailed{shared{f}}
		}
		return shared{f}
	}
	a, err := lease.Acquire(ctx(t), opts(c, &clock{now: t0}, holder("alice@bastion1", "run-a")))
	if err != nil {
		t.Fatal(err)
	}
	if n := a.Notices(); len(n) != 1 || !strings.Contains(n[0], "lease of cluster kms on kms2 not written: write /var/lib/kmsctl/lease-kms.json: connection lost") {
		t.Errorf("notices: %q", n)
	}
	if err := a.Release(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for i := range c.hosts {
		if f := c.file(t, i); f != "" {
			t.Errorf("%s: lease left: %s", c.hosts[i].Host(), f)
		}
	}
}
