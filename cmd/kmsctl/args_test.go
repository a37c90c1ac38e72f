package main

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
)

func TestReorderArgs(t *testing.T) {
	app := newApp(env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }})
	cases := []struct {
		in, want string
	}{
		{"kmsctl version", "kmsctl version"},
		{"kmsctl play site.yml --check --limit kms2", "kmsctl --check --limit kms2 play site.yml"},
		{"kmsctl play --check site.yml -l kms2", "kmsctl --check -l kms2 play site.yml"},
		{"kmsctl -i inv.yml play site.yml", "kmsctl -i inv.yml play site.yml"},
		{"kmsctl play site.yml -e a=1 -e b=2 -i x.yml", "kmsctl -e a=1 -e b=2 -i x.yml play site.yml"},
		{"kmsctl play site.yml --limit=kms2 --forks=3", "kmsctl --limit=kms2 --forks=3 play site.yml"},
		// a flag taking a value takes the next word, even if it looks like a command
		{"kmsctl play site.yml -l play", "kmsctl -l play play site.yml"},
		{"kmsctl play site.yml -e --weird", "kmsctl -e --weird play site.yml"},
		// -vv and -vvv expand
		{"kmsctl play site.yml -vv", "kmsctl -v -v play site.yml"},
		{"kmsctl -vvv ping h1", "kmsctl -v -v -v ping h1"},
		// "--" ends flags: what follows stays positional
		{"kmsctl play -C -- -odd.yml --check", "kmsctl -C play -- -odd.yml --check"},
		// positionals before "--" move after it, so that urfave/cli, which
		// stops at the first positional, still consumes the "--"
		{"kmsctl play ping --", "kmsctl play -- ping"},
		{"kmsctl play site.yml -C -- --odd", "kmsctl -C play -- site.yml --odd"},
		// nested commands, and a command flag after the arguments
		{"kmsctl inventory graph --vars -i inv.yml", "kmsctl -i inv.yml inventory graph --vars"},
		{"kmsctl playbooks show ping --output json", "kmsctl --output json playbooks show ping"},
		{"kmsctl ping root@10.0.0.1:22 h2 -u admin --known-hosts kh --accept-new-host-keys",
			"kmsctl -u admin --known-hosts kh --accept-new-host-keys ping root@10.0.0.1:22 h2"},
		// a command word after a positional is an argument, not a command
		{"kmsctl play ping", "kmsctl play ping"},
		// unknown flags go before the positionals, for urfave/cli to report
		{"kmsctl play site.yml --bogus", "kmsctl play --bogus site.yml"},
		{"kmsctl", "kmsctl"},
		// play's own flags move after the command, global ones before it
		{"kmsctl play site.yml --tags push,config -C --skip-tags=slow", "kmsctl -C play --tags push,config --skip-tags=slow site.yml"},
		{"kmsctl play site.yml -t push", "kmsctl play -t push site.yml"},
		{"kmsctl play site.yml --help", "kmsctl play --help"},
		{"kmsctl inventory graph -h -i x", "kmsctl -i x inventory graph --help"},
		// a global flag without its value at the end does not take the
		// command's name as its value
		{"kmsctl status -o", "kmsctl -o"},
		{"kmsctl status -i inv.yml --timeout", "kmsctl -i inv.yml --timeout"},
		{"kmsctl status --cluster", "kmsctl status --cluster"},
	}
	for _, c := range cases {
		got := reorderArgs(app, strings.Fields(c.in))
		if !slices.Equal(got, strings.Fields(c.want)) {
			t.Errorf("reorderArgs(%q)\n got %q\nwant %q", c.in, strings.Join(got, " "), c.want)
		}
	}
}

// TestFlagsAfterArguments runs commands in-process with flags after their
// arguments and checks that urfave/cli saw them.
func TestFlagsAfterArguments(t *testing.T) {
	var got options
	var gotArgs []string
	e := testEnv(t)
	app := newApp(e.env)
	for _, c := range app.Commands {
		if c.Name == "play" {
			c.Action = func(ctx *cli.Context) error {
				o, err := decodeOptions(ctx, 0)
				got, gotArgs = o, ctx.Args().Slice()
				return err
			}
		}
	}
	args := strings.Fields("kmsctl play site.yml --check --limit kms2 -e a=1 -e {\"b\":2} -f 3 --timeout 2m -o json")
	if err := app.Run(reorderArgs(app, args)); err != nil {
		t.Fatal(err)
	}
	if !got.Check || got.Limit != "kms2" || got.Forks != 3 || got.Output != "json" || got.Timeout.Minutes() != 2 {
		t.Errorf("options = %+v", got)
	}
	if got.ExtraVars["a"] != "1" || got.ExtraVars["b"] != 2 {
		t.Errorf("extra vars = %v", got.ExtraVars)
	}
	if !slices.Equal(gotArgs, []string{"site.yml"}) {
		t.Errorf("args = %q, want [site.yml]", gotArgs)
	}
}

// TestFlagMistakes: a misspelt flag is named as typed, with the command's
// closest flag when one is close (a global flag only when one letter is
// wrong, missing, extra or swapped) and the command's help; a flag at the end
// without its value says so (exit 1), instead of taking the command's name
// as its value and showing the help with exit 0.
func TestFlagMistakes(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"status --clustr kms", "kmsctl: unknown flag --clustr (did you mean --cluster?); see 'kmsctl status --help'\n"},
		{"--outptu json status", "kmsctl: unknown flag --outptu (did you mean --output?); see 'kmsctl --help'\n"},
		{"backup --zzz", "kmsctl: unknown flag --zzz; see 'kmsctl backup --help'\n"},
		// A command's own flag first; a global flag only for a typing slip:
		// --force is not a misspelt --forks (parallelism).
		{"backup --force", "kmsctl: unknown flag --force; see 'kmsctl backup --help'\n"},
		{"backup --kepe 3", "kmsctl: unknown flag --kepe (did you mean --keep?); see 'kmsctl backup --help'\n"},
		{"backup --froks 3", "kmsctl: unknown flag --froks (did you mean --forks?); see 'kmsctl backup --help'\n"},
		{"recover node kms3 --forec", "kmsctl: unknown flag --forec (did you mean --force?); see 'kmsctl recover node --help'\n"},
		{"status --invetnory x.yml", "kmsctl: unknown flag --invetnory (did you mean --inventory?); see 'kmsctl status --help'\n"},
		{"runs show -q", "kmsctl: unknown flag -q; see 'kmsctl runs show --help'\n"},
		{"status -o", "kmsctl: -o needs a value; see 'kmsctl --help'\n"},
		{"status --cluster", "kmsctl: --cluster needs a value; see 'kmsctl status --help'\n"},
		{"--timeout 1 version", "kmsctl: --timeout 1: want a duration such as 90s, 5m or 1h30m; see 'kmsctl --help'\n"},
		{"--lock-wait soon status", "kmsctl: --lock-wait soon: want a duration such as 90s, 5m or 1h30m; see 'kmsctl --help'\n"},
	} {
		te := testEnv(t)
		code := te.run(t, strings.Fields(c.args)...)
		if code != exit.Usage || te.errOut.String() != c.want || te.out.String() != "" {
			t.Errorf("kmsctl %s: exit %d, stderr %q, want 1 and %q; stdout %q", c.args, code, te.errOut, c.want, te.out)
		}
	}
}
