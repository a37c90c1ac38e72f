package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/journal"
)

// newRunsCommand builds `kmsctl runs ls|show RUN-ID`: the runs recorded in
// the state directory's journals.
func newRunsCommand(e env) *cli.Command {
	return &cli.Command{
		Name:   "runs",
		Usage:  "list past runs and show one run's journal",
		Action: unknownCommand,
		Subcommands: []*cli.Command{
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list the runs (ID, start, command, outcome, hosts, steps), oldest first",
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return exit.Usagef("runs ls: takes no argument, got %d", c.NArg())
					}
					return listRuns(e.stdout, e.stateDir, c.String("output") == "json")
				},
			},
			{
				Name:      "show",
				Usage:     "show one run's journal: each step that may change something, with its result",
				ArgsUsage: "RUN-ID",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return exit.Usagef("runs show: want exactly one run ID (see 'kmsctl runs ls'), got %d arguments", c.NArg())
					}
					return showRun(e.stdout, e.stateDir, c.Args().First(), c.String("output") == "json")
				},
			},
		},
	}
}

// runSummary is one line of `runs ls`.
type runSummary struct {
	ID      string    `json:"id"`
	Start   time.Time `json:"start"`
	Command string    `json:"command"`
	User    string    `json:"user"`
	// Outcome is the end's word, or "unfinished" when the journal has no
	// end (the run was killed, or is still running).
	Outcome  string `json:"outcome"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Hosts    *int   `json:"hosts,omitempty"`
	Steps    int    `json:"steps"`
	// Open counts the steps with an intent and no result.
	Open int `json:"open_steps"`
}

func summarize(r *journal.Run) runSummary {
	s := runSummary{ID: r.ID, Start: r.Start, Command: r.Command, User: r.User, Outcome: "unfinished", Steps: len(r.Steps)}
	if r.End != nil {
		s.Outcome, s.ExitCode, s.Hosts = r.End.Outcome, &r.End.ExitCode, &r.End.Hosts
	}
	for _, st := range r.Steps {
		if st.Status == "" {
			s.Open++
		}
	}
	return s
}

// listRuns prints the runs journaled under stateDir, as a table or a
// JSON list.
func listRuns(w io.Writer, stateDir string, asJSON bool) error {
	runs, err := journal.List(stateDir)
	if err != nil {
		return err
	}
	list := make([]runSummary, 0, len(runs))
	for _, r := range runs {
		list = append(list, summarize(r))
	}
	if asJSON {
		return json.NewEncoder(w).Encode(list)
	}
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no runs recorded yet")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTART\tCOMMAND\tOUTCOME\tHOSTS\tSTEPS")
	for _, s := range list {
		hosts := "-"
		if s.Hosts != nil {
			hosts = strconv.Itoa(*s.Hosts)
		}
		steps := strconv.Itoa(s.Steps)
		if s.Open > 0 {
			steps += fmt.Sprintf(" (%d cut short)", s.Open)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Start.UTC().Format(time.DateTime), s.Command, s.Outcome, hosts, steps)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write run list: %w", err)
	}
	return nil
}

// showRun prints one run's journal: its header, its end and each step.
func showRun(w io.Writer, stateDir, id string, asJSON bool) error {
	path, err := journal.Path(stateDir, id)
	if err != nil {
		return exit.With(exit.Usage, err)
	}
	r, err := journal.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return exit.Usagef("no run %s in %s; see 'kmsctl runs ls'", id, stateDir)
	}
	if err != nil {
		return err
	}
	if asJSON {
		if r.Steps == nil {
			r.Steps = []journal.Step{}
		}
		return json.NewEncoder(w).Encode(r)
	}
	s := summarize(r)
	fmt.Fprintf(w, "run %s: %s\n", r.ID, r.Command)
	fmt.Fprintf(w, "by %s (pid %d), started %s\n", r.User, r.PID, r.Start.UTC().Format(time.DateTime+" MST"))
	switch {
	case r.End != nil:
		fmt.Fprintf(w, "ended: %s (exit %d), %d hosts\n", r.End.Outcome, r.End.ExitCode, r.End.Hosts)
	default:
		fmt.Fprintf(w, "unfinished: the journal has no end (kmsctl was killed, or the run is still going)\n")
	}
	for _, rs := range r.Resumes {
		fmt.Fprintf(w, "resumed %s by %s (pid %d)\n", rs.Start.UTC().Format(time.DateTime+" MST"), rs.User, rs.PID)
	}
	if r.Torn {
		fmt.Fprintf(w, "the journal's last line was cut short (a crash while writing it) and is ignored\n")
	}
	if r.Plan != nil {
		fmt.Fprintf(w, "phases done: %s\n", doneText(r.Done))
		if unfinished(r) {
			fmt.Fprintf(w, "to finish it: kmsctl resume %s\n", r.ID)
		}
	}
	if len(r.Steps) == 0 {
		_, err := fmt.Fprintln(w, "no step that may change something")
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tHOST\tTASK\tMODULE\tSTATUS\tDURATION\tWHERE")
	for _, st := range r.Steps {
		status, took := st.Status, "-"
		if status == "" {
			status = "no result (cut short: effect unknown)"
		} else {
			took = st.Ended.Sub(st.Started).Round(time.Millisecond).String()
		}
		host := st.Host
		if st.DelegateTo != "" {
			host += " → " + st.DelegateTo
		}
		task := st.Task
		if st.Item > 0 {
			task += fmt.Sprintf(" (item %d)", st.Item)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", st.Seq, host, task, st.Module, status, took, st.Pos)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write run: %w", err)
	}
	if s.Open > 0 {
		_, err := fmt.Fprintf(w, "\n%d step(s) have no result: check those hosts before running again.\n", s.Open)
		return err
	}
	return nil
}
