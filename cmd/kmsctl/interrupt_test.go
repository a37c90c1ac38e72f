package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
)

// TestSecondInterruptNamesSkippedHandlers: the first Ctrl-C stops the
// tasks and runs the owed handlers; a second one exits at once (130) and
// says which owed handlers it skips and on which hosts: on stderr, and in
// run_end with --output json. The task the first cut short is interrupted,
// not failed.
func TestSecondInterruptNamesSkippedHandlers(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			tasksStarted, handlerStarted := make(chan struct{}, 4), make(chan struct{}, 4)
			release := make(chan struct{})
			defer close(release)
			l := newLabExec(t, func(ctx context.Context, cmd string, _ io.Reader, _, _ io.Writer) (int, bool) {
				switch {
				case strings.HasPrefix(cmd, "sleep 30"):
					tasksStarted <- struct{}{}
					<-ctx.Done()
					return 137, true
				case strings.HasPrefix(cmd, "sleep 31"):
					handlerStarted <- struct{}{}
					select {
					case <-ctx.Done():
					case <-release:
					}
					return 137, true
				}
				return 0, false
			})
			pb := writePlaybook(t, `- hosts: kms
  tasks:
    - name: push config
      copy:
        content: "x\n"
        dest: "{{ dir }}.conf"
      notify: [restart, reload]
    - name: long
      command: sleep 30
  handlers:
    - name: restart
      command: sleep 31
    - name: reload
      command: touch {{ dir }}.reloaded
`)
			te := testEnv(t)
			sigs := make(chan os.Signal, 2)
			exited := make(chan int, 1)
			te.signals = sigs
			te.exit = func(code int) { exited <- code }
			done := make(chan int)
			go func() {
				done <- run(context.Background(), te.env, []string{"kmsctl", "play", pb, "-i", l.inventory, "--ssh-config", "none", "-o", format})
			}()
			<-tasksStarted
			<-tasksStarted
			sigs <- os.Interrupt
			<-handlerStarted
			<-handlerStarted
			sigs <- os.Interrupt
			if code := <-exited; code != exit.Interrupted {
				t.Errorf("second Ctrl-C exits %d, want %d", code, exit.Interrupted)
			}
			stderr, stdout := te.errOut.String(), te.out.String()
			for _, want := range []string{
				"press Ctrl-C again",
				`interrupted again: exiting at once; owed handlers skipped: "restart" on kms1, kms2 (cut off while running); "reload" on kms1, kms2`,
			} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if format == "json" {
				var end struct {
					Event    string
					ExitCode int `json:"exit_code"`
					Error    string
					Skipped  []skippedHandler `json:"skipped_handlers"`
				}
				for _, line := range strings.Split(stdout, "\n") {
					if strings.Contains(line, `"run_end"`) {
						if err := json.Unmarshal([]byte(line), &end); err != nil {
							t.Fatal(err)
						}
					}
				}
				if m := lastJSON(t, stdout); m["event"] != "run_end" {
					t.Errorf("run_end is not the last line:\n%s", stdout)
				}
				if end.ExitCode != exit.Interrupted || len(end.Skipped) != 2 || end.Skipped[0].Handler != "restart" || !end.Skipped[0].Running ||
					strings.Join(end.Skipped[1].Hosts, ",") != "kms1,kms2" || !strings.Contains(end.Error, "owed handlers skipped") {
					t.Errorf("run_end %+v\n%s", end, stdout)
				}
			} else if !strings.Contains(stdout, "interrupted: [kms1] long") || strings.Contains(stdout, "failed: [kms1] long") {
				t.Errorf("the cut task is not shown as interrupted:\n%s", stdout)
			}
			release <- struct{}{}
			release <- struct{}{}
			<-done
			if format == "json" {
				if m := lastJSON(t, te.out.String()); m["event"] != "run_end" || m["exit_code"] != float64(exit.Interrupted) {
					t.Errorf("after the second Ctrl-C, events followed run_end:\n%s", te.out)
				}
			}
		})
	}
}
