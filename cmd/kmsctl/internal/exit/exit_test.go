package exit

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestCode(t *testing.T) {
	base := errors.New("boom")
	cases := []struct {
		err  error
		want int
	}{
		{nil, OK},
		{base, Usage},
		{Usagef("bad flag"), Usage},
		{With(HostFailed, base), HostFailed},
		{fmt.Errorf("wrapped: %w", With(Unreachable, base)), Unreachable},
		{With(Refused, base), Refused},
		{With(Locked, base), Locked},
		{With(VerifyFailed, base), VerifyFailed},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), TimedOut},
		{With(TimedOut, base), TimedOut},
		{Silent{Code: HostFailed}, HostFailed},
		{fmt.Errorf("x: %w", Silent{Code: Unreachable}), Unreachable},
		// urfave/cli's own exit codes (3 for an unknown help topic) are not ours
		{cli.Exit("No help topic for 'x'", 3), Usage},
		// A refusal by a safety rule is 4, found while validating or running.
		{refusal{}, Refused},
		{fmt.Errorf("load inventory: %w", errors.Join(base, refusal{})), Refused},
		{With(Usage, fmt.Errorf("load: %w", refusal{})), Refused},
		{With(HostFailed, errors.Join(base, refusal{})), Refused},
		{With(Unreachable, refusal{}), Refused},
		{With(Interrupted, refusal{}), Interrupted},
		{With(TimedOut, refusal{}), TimedOut},
		{refusal{no: true}, Usage},
	}
	for _, c := range cases {
		if got := Code(c.err); got != c.want {
			t.Errorf("Code(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if With(HostFailed, nil) != nil {
		t.Error("With(code, nil) is not nil")
	}
	if !errors.Is(With(HostFailed, base), base) {
		t.Error("With does not wrap")
	}
	if !IsSilent(fmt.Errorf("x: %w", Silent{Code: 2})) || IsSilent(base) {
		t.Error("IsSilent")
	}
}

// refusal is a test refusal by a safety rule (unless no).
type refusal struct{ no bool }

func (refusal) Error() string   { return "refused" }
func (r refusal) Refused() bool { return !r.no }
