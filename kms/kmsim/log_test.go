package kmsim

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/kms/kmsim/kmsimtest"
	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// writeEntry builds, on st, the entry that puts key name, as the leader
// does, and returns it with the state it makes.
func writeEntry(t *testing.T, st *nodeState, name string) (*entry, *nodeState) {
	t.Helper()
	x := &tx{st: st}
	k := &key{Name: name, Type: keyTypeAES256, Latest: 1, Versions: []keyVersion{{Version: 1, Secret: make([]byte, 32), CreatedAt: time.Now().UTC()}}}
	if err := x.putKey(defaultEnclave, k); err != nil {
		t.Fatal(err)
	}
	id, err := newEntryID()
	if err != nil {
		t.Fatal(err)
	}
	e := x.e
	e.Index, e.ID, e.Prev = st.Commit+1, id, st.Head
	next, err := st.apply(&e)
	if err != nil {
		t.Fatalf("apply the entry built on the same state: %v", err)
	}
	return &e, next
}

func keyCount(st *nodeState) int { return st.Data.Enclaves[defaultEnclave].Keys.len() }

// The store keeps writes as log records after state.db, replays them on
// open, cuts a torn tail, and compacts once the log outgrows the state.
func TestStoreLog(t *testing.T) {
	dir := t.TempDir()
	k := testHSMKey(1)
	s, st, err := openStore(dir, k)
	if err != nil || st != nil {
		t.Fatalf("open empty dir: %v %v", st, err)
	}
	if st, err = newNodeState("127.0.0.1:7373", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.save(st); err != nil {
		t.Fatal(err)
	}
	stateBefore, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		e, next := writeEntry(t, st, fmt.Sprintf("k%02d", i))
		if err := s.append(e, next); err != nil {
			t.Fatal(err)
		}
		st = next
	}
	if after, _ := os.ReadFile(filepath.Join(dir, stateFile)); !bytes.Equal(after, stateBefore) {
		t.Fatal("a write rewrote state.db")
	}
	s.close()

	// A crash while appending leaves a torn record: it is cut.
	f, err := os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 'x', 'y'})
	f.Close()
	s, got, err := openStore(dir, k)
	if err != nil {
		t.Fatal(err)
	}
	if got.Commit != 20 || got.Head != st.Head || keyCount(got) != 20 {
		t.Fatalf("replayed: commit %d head %q, %d keys; want 20 %q 20", got.Commit, got.Head, keyCount(got), st.Head)
	}
	e, next := writeEntry(t, got, "after-torn")
	if err := s.append(e, next); err != nil {
		t.Fatal(err)
	}
	st = next
	s.close()
	s, got, err = openStore(dir, k)
	if err != nil || got.Commit != 21 || keyCount(got) != 21 {
		t.Fatalf("after the torn record: %v, %v", got, err)
	}

	// Compaction: the log is emptied into state.db once it outgrows it.
	s.minCompact = 0
	st = got
	for i := range 40 {
		e, next := writeEntry(t, st, fmt.Sprintf("c%02d", i))
		if err := s.append(e, next); err != nil {
			t.Fatal(err)
		}
		st = next
	}
	fi, err := os.Stat(filepath.Join(dir, logFile))
	if err != nil {
		t.Fatal(err)
	}
	if s.stateSize == 0 || fi.Size() > s.stateSize+int64(2<<10) {
		t.Fatalf("log %d bytes, state %d bytes: not compacted", fi.Size(), s.stateSize)
	}
	s.close()
	_, got, err = openStore(dir, k)
	if err != nil || got.Commit != 61 || keyCount(got) != 61 || got.Head != st.Head {
		t.Fatalf("after compaction: commit %d, %d keys, %v", got.Commit, keyCount(got), err)
	}
}

// An entry applies only to the state it was made for (index and head).
func TestEntryMustFollow(t *testing.T) {
	st, err := newNodeState("127.0.0.1:7373", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e1, s1 := writeEntry(t, st, "a")
	if _, err := s1.apply(e1); err == nil {
		t.Fatal("an entry applied twice")
	}
	other, _ := writeEntry(t, st, "b") // another write at the same index
	e2, _ := writeEntry(t, s1, "c")
	if _, err := st.apply(e2); err == nil {
		t.Fatal("an entry applied over a gap")
	}
	_, s1b := writeEntry(t, st, "b")
	s1b.Head = other.ID
	if _, err := s1b.apply(e2); err == nil {
		t.Fatal("an entry applied after another history's entry of the same index")
	}
}

// A write reaches the followers as a log entry: no node rewrites its
// state.db, every node's log grows, a restarted follower replays its log
// and rejoins without the whole state, and a follower that missed writes
// while down gets them (as the leader's state) when it is back.
func TestWritesAreLogEntries(t *testing.T) {
	e := newEnv(t)
	nodes, dirs := threeNodes(t, e)
	var states [3][]byte
	for i := range nodes {
		b, err := os.ReadFile(filepath.Join(dirs[i], stateFile))
		if err != nil {
			t.Fatal(err)
		}
		states[i] = b
	}
	for i := range 10 {
		if err := createKey(e, nodes[i%3], fmt.Sprintf("k%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range nodes {
		if b, _ := os.ReadFile(filepath.Join(dirs[i], stateFile)); !bytes.Equal(b, states[i]) {
			t.Fatalf("node %d rewrote state.db for a write", i)
		}
		fi, err := os.Stat(filepath.Join(dirs[i], logFile))
		if err != nil || fi.Size() == 0 {
			t.Fatalf("node %d has no log: %v", i, err)
		}
	}

	// A follower restarts with its data: it replays its log and is in sync.
	addr := nodes[2].Addr()
	nodes[2].Close()
	nodes[2] = e.startWith(dirs[2], addr, e.hsmKey)
	kmsimtest.Eventually(t, "restarted node rejoins", func() error {
		return converged(e, map[uint32]*Node{0: nodes[0], 1: nodes[1], 2: nodes[2]})
	})
	sum := sha256.Sum256(states[2])
	if b, _ := os.ReadFile(filepath.Join(dirs[2], stateFile)); sha256.Sum256(b) != sum {
		t.Fatal("the restarted node got the whole state although its log was complete")
	}
	for i := range 10 {
		if err := send(e.admin, nodes[2].Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: fmt.Sprintf("k%d", i)}, nil); err != nil {
			t.Fatalf("restarted node lacks k%d: %v", i, err)
		}
	}

	// Node 1 is down during a failed write that node 2 applied; once node 1
	// is back, the next writes reach everyone and all nodes agree.
	addr1 := nodes[1].Addr()
	nodes[1].Close()
	if err := createKey(e, nodes[0], "failed"); err == nil {
		t.Fatal("write with node 1 down succeeded")
	}
	nodes[1] = e.startWith(dirs[1], addr1, e.hsmKey)
	kmsimtest.Eventually(t, "write after node 1 is back", func() error { return createKey(e, nodes[0], "after") })
	kmsimtest.Eventually(t, "cluster agrees", func() error {
		return converged(e, map[uint32]*Node{0: nodes[0], 1: nodes[1], 2: nodes[2]})
	})
	for i, n := range nodes {
		if err := send(e.admin, n.Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: "failed"}, nil); !isErr(err, wire.ErrKeyNotFound) {
			t.Fatalf("node %d has the failed write: %v", i, err)
		}
		if err := send(e.admin, n.Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: "after"}, nil); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
}
