package fake_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/remote/fake"
)

// transcriptStep is one command of testdata/systemctl-transcript.txt and
// how the real systemctl answered it.
type transcriptStep struct {
	line           int
	cmd            string
	stdout, stderr string
	exit           int
}

// readTranscript parses the transcript: the units it declares and its steps.
func readTranscript(t *testing.T, name string) (map[string]fake.Unit, []transcriptStep) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	units := map[string]fake.Unit{}
	var steps []transcriptStep
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		var cur *transcriptStep
		if len(steps) > 0 {
			cur = &steps[len(steps)-1]
		}
		switch {
		case strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "unit "):
			f := strings.Fields(l)
			spec := strings.Join(f[2:], " ")
			// A unit of the script reloads only when declared so.
			units[f[1]] = fake.Unit{NoReload: !strings.Contains(spec, "reload"), FailStart: strings.Contains(spec, "fail-start")}
		case strings.HasPrefix(l, "$ "):
			steps = append(steps, transcriptStep{line: n, cmd: l[2:], exit: -1})
		case cur != nil && strings.HasPrefix(l, "> "):
			cur.stdout += l[2:] + "\n"
		case cur != nil && strings.HasPrefix(l, "! "):
			cur.stderr += l[2:] + "\n"
		case cur != nil && strings.HasPrefix(l, "= "):
			if cur.exit, err = strconv.Atoi(l[2:]); err != nil {
				t.Fatalf("%s:%d: %v", name, n, err)
			}
		default:
			t.Fatalf("%s:%d: cannot parse %q", name, n, l)
		}
	}
	if len(steps) < 10 || len(units) == 0 {
		t.Fatalf("%s: %d units, %d steps: not a transcript", name, len(units), len(steps))
	}
	return units, steps
}

// TestSystemctlTranscript holds the fake's systemctl to the real one.
// systemctl cannot run under the conformance suite (its in-process SSH
// server runs commands on this machine, which has no systemd as PID 1), so
// the contract is a transcript of systemd 252 answering kmsctl's command
// lines, recorded by testdata/systemctl-transcript.sh in the e2e test-host
// image. The fake, given the same units, must answer every step with the
// same stdout and exit status, and a failing step with the same stderr
// (the informational stderr of a successful step, such as "Created
// symlink ...", is not reproduced).
func TestSystemctlTranscript(t *testing.T) {
	units, steps := readTranscript(t, "testdata/systemctl-transcript.txt")
	c := fake.New(t, "node1")
	for name, u := range units {
		c.SetUnit(name, u)
	}
	for _, s := range steps {
		var out, errb bytes.Buffer
		err := c.Run(context.Background(), s.cmd, nil, &out, &errb)
		exit := 0
		var xe *fake.ExitError
		if errors.As(err, &xe) {
			exit = xe.Status
		} else if err != nil {
			t.Fatalf("line %d: %s: %v", s.line, s.cmd, err)
		}
		if exit != s.exit || out.String() != s.stdout {
			t.Errorf("line %d: %s\n got exit %d, stdout %q\nwant exit %d, stdout %q", s.line, s.cmd, exit, out.String(), s.exit, s.stdout)
		}
		if s.exit != 0 && errb.String() != s.stderr {
			t.Errorf("line %d: %s\n got stderr %q\nwant stderr %q", s.line, s.cmd, errb.String(), s.stderr)
		}
	}
}

func TestSystemdUnits(t *testing.T) {
	c := fake.New(t, "node1")
	c.SetUnit("minkms", fake.Unit{})
	if _, ok := c.Unit("minkms.service"); !ok {
		t.Fatal(`SetUnit("minkms") did not create minkms.service`)
	}
	for _, cmd := range []string{"systemctl enable -- minkms", "systemctl start -- minkms.service", "systemctl daemon-reload"} {
		if err := c.Run(context.Background(), cmd, nil, nil, nil); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	if u, _ := c.Unit("minkms"); !u.Active || !u.Enabled || u.Failed {
		t.Errorf("after enable and start: %+v", u)
	}
	if s := c.Snapshot(); !strings.Contains(s, "unit minkms.service {Active:true Failed:false Enabled:true") {
		t.Errorf("Snapshot lacks the unit:\n%s", s)
	}
	// A show of properties it does not know is not emulated.
	r := &recorder{TB: t}
	c2 := fake.New(r, "node2")
	var ue *fake.UnexpectedError
	if err := c2.Run(context.Background(), "systemctl show --property=MainPID -- minkms", nil, nil, nil); !errors.As(err, &ue) || len(r.errs) != 1 {
		t.Errorf("show --property=MainPID = %v (test failures %q), want an unexpected command", err, r.errs)
	}
	// An expectation overrides the emulation.
	c.Expect("systemctl is-active minkms").Stdout("activating\n").Exit(3)
	var out bytes.Buffer
	if err := c.Run(context.Background(), "systemctl is-active minkms", nil, &out, nil); err == nil || out.String() != "activating\n" {
		t.Errorf("scripted is-active = %q, %v", out.String(), err)
	}
}
