// Package journal keeps each run's journal: an append-only file of JSON
// lines in the state directory (file 0600, directory 0700), each line
// written whole and fsynced before the run goes on. It records the run
// (ID, command, who, where, when), the intent before and the result after
// each mutating step (File implements tasks.Journal), and how the run
// ended. A command that can be resumed also records its plan (Plan) and
// each phase it finished (Done); Continue reopens an unfinished run's
// journal to append the rest of it under the same run ID. It never holds
// a task's arguments, and every text is masked by the run's redactor.
// Read tolerates a torn last line (a crash mid-write).
package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kmsctl/kmsctl/redact"
	"github.com/kmsctl/kmsctl/tasks"
)

// Subdir is the journals' directory under the state directory.
const Subdir = "journal"

// Keep is how many journals Create keeps at least: the finished journals
// older than the newest Keep are removed. A journal without an end (its
// run was killed, or is still going) is never removed: resuming the run
// needs it.
const Keep = 500

// Record types, one per line.
const (
	TypeRun    = "run"    // the first line: the run's Header
	TypeIntent = "intent" // a step is about to run
	TypeResult = "result" // a step ended
	TypeEnd    = "end"    // the run ended
	TypePlan   = "plan"   // what a resumable command set out to do (Plan)
	TypeDone   = "done"   // a phase of the plan finished (its name)
	TypeResume = "resume" // the run was taken up again (Resumed)
)

// Header describes a run: the journal's first line.
type Header struct {
	ID      string    `json:"id"`
	Command string    `json:"command"`
	User    string    `json:"user"` // user@host of the operator
	PID     int       `json:"pid"`
	Start   time.Time `json:"start"`
}

// End is how a run ended: the journal's last line.
type End struct {
	// ExitCode is the process's exit code, Outcome its word ("ok",
	// "failed", "refused", ...).
	ExitCode int    `json:"exit_code"`
	Outcome  string `json:"outcome"`
	// Hosts is how many hosts the run's plays targeted.
	Hosts int `json:"hosts"`
}

// Plan is what a resumable command set out to do, recorded before its
// first step: enough for `kmsctl resume` to find the command's resume hook
// and do the rest. It holds names, never a secret.
type Plan struct {
	// Command names the command and its resume hook ("recover node").
	Command string `json:"command"`
	// Args are the command's arguments (the hosts of recover node).
	Args []string `json:"args,omitempty"`
	// Group is the inventory group of the cluster, Clusters the clusters
	// (kms_cluster) whose lock the run holds.
	Group    string   `json:"group,omitempty"`
	Clusters []string `json:"clusters,omitempty"`
	// Inventories are the inventory files the run read.
	Inventories []string `json:"inventories,omitempty"`
	// Phases are the phases of the plan in order, as Done names them.
	Phases []string `json:"phases,omitempty"`
	// Data is the command's own plan (JSON), read back by its hook.
	Data json.RawMessage `json:"data,omitempty"`
}

// Resumed records a resume of the run: who took it up, when, with what
// command line.
type Resumed struct {
	Command string    `json:"command"`
	User    string    `json:"user"`
	PID     int       `json:"pid"`
	Start   time.Time `json:"start"`
}

// record is one line of a journal.
type record struct {
	Type    string      `json:"type"`
	Time    time.Time   `json:"time"`
	Run     *Header     `json:"run,omitempty"`
	Step    *tasks.Step `json:"step,omitempty"`
	Status  string      `json:"status,omitempty"`
	End     *End        `json:"end,omitempty"`
	Plan    *Plan       `json:"plan,omitempty"`
	Phase   string      `json:"phase,omitempty"`
	Resumed *Resumed    `json:"resumed,omitempty"`
}

// validID is the shape of a run ID (runlog's: UTC time and a random
// suffix); nothing else names a journal file.
var validID = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]+$`)

// File is one run's journal, open for appending. Its methods are safe for
// concurrent use.
type File struct {
	// Path is the file's path.
	Path string
	red  *redact.Redactor

	mu     sync.Mutex
	f      *os.File
	closed bool
	// seq is added to the engine's step numbers: a continued run numbers
	// its steps after those already in the journal.
	seq int
}

// Path returns the journal file of run id under the state directory dir.
func Path(dir, id string) (string, error) {
	if !validID.MatchString(id) {
		return "", fmt.Errorf("run ID %q: want the form 20060102T150405Z-1a2b3c4d (see 'kmsctl runs ls')", id)
	}
	return filepath.Join(dir, Subdir, id+".jsonl"), nil
}

// Create creates the journal of the run h describes under the state
// directory dir, writes its header and removes the finished journals
// beyond Keep. red (nil = none) masks every text written.
func Create(dir string, h Header, red *redact.Redactor) (*File, error) {
	path, err := Path(dir, h.ID)
	if err != nil {
		return nil, err
	}
	jdir := filepath.Dir(path)
	if err := os.MkdirAll(jdir, 0o700); err != nil {
		return nil, fmt.Errorf("create journal directory: %w", err)
	}
	// MkdirAll keeps the mode of existing directories: tighten ours.
	for _, d := range []string{dir, jdir} {
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("restrict journal directory: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create journal: %w", err)
	}
	j := &File{Path: path, red: red, f: f}
	h.Command = j.mask(h.Command)
	h.User = j.mask(h.User)
	if err := j.append(record{Type: TypeRun, Time: h.Start, Run: &h}); err != nil {
		f.Close()
		return nil, err
	}
	// The new name must survive a crash too.
	if err := syncDir(jdir); err != nil {
		f.Close()
		return nil, err
	}
	if err := prune(jdir, Keep); err != nil {
		f.Close()
		return nil, err
	}
	return j, nil
}

// prune removes the finished journals in jdir older than the newest keep.
// Names start with the UTC start time, so name order is age order. A
// journal that has no end, or cannot be read, is kept: it may be a run to
// resume.
func prune(jdir string, keep int) error {
	paths, err := filepath.Glob(filepath.Join(jdir, "*.jsonl"))
	if err != nil {
		return fmt.Errorf("list journals: %w", err)
	}
	if len(paths) <= keep {
		return nil
	}
	sort.Strings(paths)
	for _, p := range paths[:len(paths)-keep] {
		r, err := Read(p)
		if err != nil || r.End == nil {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove old journal: %w", err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync journal directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync journal directory: %w", err)
	}
	return nil
}

func (j *File) mask(s string) string {
	if j.red == nil {
		return s
	}
	return j.red.String(s)
}

// append writes rec as one line and fsyncs it.
func (j *File) append(rec record) error {
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	rec.Time = rec.Time.UTC()
	if rec.Step != nil {
		s := *rec.Step
		s.Play, s.Task, s.Pos = j.mask(s.Play), j.mask(s.Task), j.mask(s.Pos)
		s.Host, s.DelegateTo, s.Module = j.mask(s.Host), j.mask(s.DelegateTo), j.mask(s.Module)
		rec.Step = &s
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode journal record: %w", err)
	}
	b = append(b, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return fmt.Errorf("write journal %s: already closed", j.Path)
	}
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("write journal %s: %w", j.Path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync journal %s: %w", j.Path, err)
	}
	return nil
}

// Intent records that step is about to run (tasks.Journal); an error
// refuses the step.
func (j *File) Intent(step tasks.Step) error {
	step.Seq += j.seq
	return j.append(record{Type: TypeIntent, Step: &step})
}

// Result records how step ended (tasks.Journal).
func (j *File) Result(step tasks.Step, status tasks.Status) error {
	step.Seq += j.seq
	return j.append(record{Type: TypeResult, Step: &step, Status: status.String()})
}

// Plan records what a resumable command set out to do, before its first
// step. Its texts are masked.
func (j *File) Plan(p Plan) error {
	p.Command, p.Group = j.mask(p.Command), j.mask(p.Group)
	p.Data = json.RawMessage(j.mask(string(p.Data)))
	if len(p.Data) > 0 && !json.Valid(p.Data) {
		return fmt.Errorf("record the plan in journal %s: its data is not JSON", j.Path)
	}
	return j.append(record{Type: TypePlan, Plan: &p})
}

// Done records that phase (one of the plan's Phases) finished: a resume
// does not run it again.
func (j *File) Done(phase string) error {
	return j.append(record{Type: TypeDone, Phase: j.mask(phase)})
}

// Continue reopens the journal of the unfinished run id under the state
// directory dir for appending: it records r (who resumes it) and numbers
// the new steps after those already there. A journal that ends with a
// torn line gets a line break first, so the records that follow stay
// whole. A run that ended ok is not continued; one that ended otherwise
// (failed, interrupted) is, and Read then reports the end of its last
// part.
func Continue(dir, id string, r Resumed, red *redact.Redactor) (*File, error) {
	path, err := Path(dir, id)
	if err != nil {
		return nil, err
	}
	run, err := Read(path)
	if err != nil {
		return nil, err
	}
	if run.End != nil && run.End.ExitCode == 0 {
		return nil, fmt.Errorf("continue journal %s: the run ended %s", path, run.End.Outcome)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("continue journal: %w", err)
	}
	j := &File{Path: path, red: red, f: f}
	for _, st := range run.Steps {
		j.seq = max(j.seq, st.Seq)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err != nil {
			f.Close()
			return nil, fmt.Errorf("continue journal %s: %w", path, err)
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte("\n")); err != nil {
				f.Close()
				return nil, fmt.Errorf("continue journal %s: %w", path, err)
			}
		}
	}
	r.Command, r.User = j.mask(r.Command), j.mask(r.User)
	if err := j.append(record{Type: TypeResume, Time: r.Start, Resumed: &r}); err != nil {
		f.Close()
		return nil, err
	}
	return j, nil
}

// End records how the run ended and closes the journal.
func (j *File) End(e End) error {
	e.Outcome = j.mask(e.Outcome)
	err := j.append(record{Type: TypeEnd, End: &e})
	return errors.Join(err, j.Close())
}

// Close closes the journal without an end record (the run was cut short).
// Closing it again does nothing.
func (j *File) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	if err := j.f.Close(); err != nil {
		return fmt.Errorf("close journal %s: %w", j.Path, err)
	}
	return nil
}

// Step is one step as a journal records it.
type Step struct {
	tasks.Step
	// Started is the time of its intent, Ended of its result (zero when
	// it has none).
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	// Status is the result ("ok", "changed", "failed", "interrupted", ...),
	// "" when the journal records no result: the run stopped while the
	// step ran, and whether it changed anything is not known.
	Status string `json:"status"`
}

// Run is a journal as read back.
type Run struct {
	Header
	// Path is the journal's file.
	Path string `json:"path"`
	// Steps are the mutating steps, in the order of their intent.
	Steps []Step `json:"steps"`
	// End is how the run ended (its last part, when it was resumed); nil
	// when the journal does not say (the run was killed, or is still
	// running).
	End *End `json:"end,omitempty"`
	// Torn is set when the last line was cut short (a crash while
	// writing it) and was ignored; also when such a line was followed by
	// the records of a resume.
	Torn bool `json:"torn,omitempty"`
	// Plan is what a resumable command set out to do (nil: the run
	// cannot be resumed).
	Plan *Plan `json:"plan,omitempty"`
	// Done are the plan's phases recorded as finished, in order.
	Done []string `json:"done,omitempty"`
	// Resumes are the times the run was taken up again.
	Resumes []Resumed `json:"resumes,omitempty"`
}

// Read reads the journal at path. A last line that is cut short or does
// not decode is ignored (Run.Torn); any other bad line is an error.
func Read(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	run := &Run{Path: path}
	bySeq := map[int]int{}
	lines := bytes.Split(b, []byte("\n"))
	// A file that ends with a newline splits into a last, empty piece;
	// otherwise the last piece is a line cut short.
	if tail := lines[len(lines)-1]; len(tail) > 0 {
		run.Torn = true
	}
	lines = lines[:len(lines)-1]
	for i, line := range lines {
		var rec record
		err := json.Unmarshal(line, &rec)
		if err == nil && i == 0 && (rec.Type != TypeRun || rec.Run == nil) {
			err = errors.New("the first line is not the run's header")
		}
		// A torn line followed by a resume: the crash's tail, which
		// Continue closed with a line break.
		if err != nil && i > 0 && i+1 < len(lines) && isResume(lines[i+1]) {
			run.Torn = true
			continue
		}
		if err != nil {
			if i == len(lines)-1 {
				// Written in part before a crash (the file system may
				// have kept its length but not its bytes).
				run.Torn = true
				break
			}
			return nil, fmt.Errorf("%s:%d: bad journal line: %w", path, i+1, err)
		}
		switch rec.Type {
		case TypeRun:
			run.Header = *rec.Run
		case TypeIntent:
			if rec.Step != nil {
				bySeq[rec.Step.Seq] = len(run.Steps)
				run.Steps = append(run.Steps, Step{Step: *rec.Step, Started: rec.Time})
			}
		case TypeResult:
			if rec.Step != nil {
				if i, ok := bySeq[rec.Step.Seq]; ok {
					run.Steps[i].Status, run.Steps[i].Ended = rec.Status, rec.Time
				}
			}
		case TypeEnd:
			run.End = rec.End
		case TypePlan:
			run.Plan = rec.Plan
		case TypeDone:
			run.Done = append(run.Done, rec.Phase)
		case TypeResume:
			// The end of the part before, if any, is not the run's.
			run.End = nil
			if rec.Resumed != nil {
				run.Resumes = append(run.Resumes, *rec.Resumed)
			}
		}
	}
	if run.ID == "" {
		run.ID = strings.TrimSuffix(filepath.Base(path), ".jsonl")
	}
	return run, nil
}

// isResume reports whether line is a resume record.
func isResume(line []byte) bool {
	var rec record
	return json.Unmarshal(line, &rec) == nil && rec.Type == TypeResume
}

// IsDone reports whether the journal records phase as finished.
func (r *Run) IsDone(phase string) bool {
	for _, d := range r.Done {
		if d == phase {
			return true
		}
	}
	return false
}

// List reads the journals under the state directory dir, oldest first
// (IDs start with the UTC start time). A journal that cannot be read is
// an error naming it.
func List(dir string) ([]*Run, error) {
	paths, err := filepath.Glob(filepath.Join(dir, Subdir, "*.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("list journals: %w", err)
	}
	sort.Strings(paths)
	runs := make([]*Run, 0, len(paths))
	for _, p := range paths {
		r, err := Read(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	return runs, nil
}
