package sshtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// signals maps SSH signal names (RFC 4254 §6.10) to Unix signals.
var signals = map[ssh.Signal]syscall.Signal{
	ssh.SIGABRT: syscall.SIGABRT,
	ssh.SIGALRM: syscall.SIGALRM,
	ssh.SIGFPE:  syscall.SIGFPE,
	ssh.SIGHUP:  syscall.SIGHUP,
	ssh.SIGILL:  syscall.SIGILL,
	ssh.SIGINT:  syscall.SIGINT,
	ssh.SIGKILL: syscall.SIGKILL,
	ssh.SIGPIPE: syscall.SIGPIPE,
	ssh.SIGQUIT: syscall.SIGQUIT,
	ssh.SIGSEGV: syscall.SIGSEGV,
	ssh.SIGTERM: syscall.SIGTERM,
	ssh.SIGUSR1: syscall.SIGUSR1,
	ssh.SIGUSR2: syscall.SIGUSR2,
}

// sessionState is what the request loop of one session shares with the
// command it runs: the process group to signal and the context to cancel.
type sessionState struct {
	mu     sync.Mutex
	pid    int // process group leader, 0 before start and after exit
	cancel context.CancelFunc
}

func (st *sessionState) setPid(pid int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.pid = pid
}

// signal delivers sig to the running process group, or cancels the context
// of a command handled by an ExecFunc.
func (st *sessionState) signal(sig syscall.Signal) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pid > 0 {
		syscall.Kill(-st.pid, sig)
		return
	}
	st.cancel()
}

// serveSession handles one "session" channel: env, exec, subsystem sftp and
// signal requests. Closing the channel (or losing the connection) kills the
// command's process group.
func (s *Server) serveSession(c net.Conn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &sessionState{cancel: cancel}
	var done chan struct{}
	for r := range reqs {
		switch r.Type {
		case "env":
			// Like Debian's sshd (AcceptEnv LANG LC_*): locale variables are
			// accepted and ignored, everything else is refused.
			var p struct{ Name, Value string }
			ok := ssh.Unmarshal(r.Payload, &p) == nil && (p.Name == "LANG" || strings.HasPrefix(p.Name, "LC_"))
			r.Reply(ok, nil)
		case "exec", "subsystem":
			var p struct{ Value string }
			if done != nil || ssh.Unmarshal(r.Payload, &p) != nil || (r.Type == "subsystem" && p.Value != "sftp") {
				r.Reply(false, nil)
				continue
			}
			r.Reply(true, nil)
			done = make(chan struct{})
			go func(kind, arg string) {
				defer close(done)
				if kind == "exec" {
					s.runExec(ctx, st, ch, arg)
				} else {
					s.serveSFTP(c, ch)
				}
			}(r.Type, p.Value)
		case "signal":
			var p struct{ Signal string }
			if ssh.Unmarshal(r.Payload, &p) == nil {
				if sig, ok := signals[ssh.Signal(p.Signal)]; ok {
					st.signal(sig)
				}
			}
			if r.WantReply {
				r.Reply(true, nil)
			}
		default:
			// pty-req, shell, x11-req, ...: not supported.
			if r.WantReply {
				r.Reply(r.Type == "keepalive@openssh.com", nil)
			}
		}
	}
	// The client closed the channel or the connection dropped.
	cancel()
	if done != nil {
		<-done
	}
	ch.Close()
}

// finish reports status the way OpenSSH does: EOF, exit-status, close.
func finish(ch ssh.Channel, status int) {
	ch.CloseWrite()
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
	ch.Close()
}

// runExec runs one exec request to completion and reports its status.
func (s *Server) runExec(ctx context.Context, st *sessionState, ch ssh.Channel, cmdline string) {
	s.record(&s.commands, cmdline)
	s.recordOp(Op{Kind: OpExec, Cmd: cmdline})
	if s.cfg.Exec != nil {
		if status, handled := s.cfg.Exec(ctx, cmdline, ch, ch, ch.Stderr()); handled {
			finish(ch, status)
			return
		}
	}
	if s.cfg.Sudo != SudoNone {
		rest, isSudo, nonInteractive, err := stripSudo(cmdline)
		switch {
		case !isSudo:
		case err != nil:
			fmt.Fprintf(ch.Stderr(), "sshtest: cannot simulate sudo: %v\n", err)
			finish(ch, 1)
			return
		case s.cfg.Sudo == SudoPasswordRequired:
			if !nonInteractive {
				fmt.Fprintln(ch.Stderr(), "sudo: a terminal is required to read the password; either use the -S option to read from standard input or configure an askpass helper")
			}
			fmt.Fprintln(ch.Stderr(), "sudo: a password is required")
			finish(ch, 1)
			return
		default:
			cmdline = rest
		}
	}

	cmd := exec.CommandContext(ctx, s.cfg.Shell, "-c", cmdline)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A safeguard against a background child holding stdout open forever.
	cmd.WaitDelay = 5 * time.Second
	cmd.Dir = s.cfg.Dir
	cmd.Env = append(os.Environ(), s.cfg.Env...)
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		fmt.Fprintf(ch.Stderr(), "sshtest: start %s: %v\n", s.cfg.Shell, err)
		finish(ch, 127)
		return
	}
	st.setPid(cmd.Process.Pid)
	go func() {
		// Not waited for: it ends when the client sends EOF or the channel closes.
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	err = cmd.Wait()
	st.setPid(0)
	stdin.Close()

	var ee *exec.ExitError
	switch {
	case err == nil:
		finish(ch, 0)
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			ch.CloseWrite()
			ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}{signalName(ws.Signal()), ws.CoreDump(), "", ""}))
			ch.Close()
			return
		}
		finish(ch, ee.ExitCode())
	default:
		fmt.Fprintf(ch.Stderr(), "sshtest: wait: %v\n", err)
		finish(ch, 255)
	}
}

// signalName returns the SSH name of sig ("KILL"), or "KILL" when unknown.
func signalName(sig syscall.Signal) string {
	for name, s := range signals {
		if s == sig {
			return string(name)
		}
	}
	return string(ssh.SIGKILL)
}

// stripSudo recognises `sudo [-n] [-u USER] [-H] [-E] [--] CMD` and returns
// CMD. isSudo is false when cmdline does not start with sudo.
func stripSudo(cmdline string) (rest string, isSudo, nonInteractive bool, err error) {
	s := strings.TrimLeft(cmdline, " \t")
	if !strings.HasPrefix(s, "sudo ") {
		return "", false, false, nil
	}
	s = s[len("sudo "):]
	next := func() string {
		s = strings.TrimLeft(s, " \t")
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			i = len(s)
		}
		tok := s[:i]
		s = s[i:]
		return tok
	}
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return "", true, nonInteractive, errors.New("no command after sudo")
		}
		if !strings.HasPrefix(s, "-") {
			return s, true, nonInteractive, nil
		}
		tok := next()
		switch {
		case tok == "--":
			rest = strings.TrimLeft(s, " \t")
			if rest == "" {
				return "", true, nonInteractive, errors.New("no command after sudo --")
			}
			return rest, true, nonInteractive, nil
		case tok == "-u":
			if next() == "" {
				return "", true, nonInteractive, errors.New("sudo -u without a user")
			}
		case strings.HasPrefix(tok, "-u"), strings.HasPrefix(tok, "--user="):
		case strings.Trim(tok[1:], "nHEk") == "":
			if strings.Contains(tok, "n") {
				nonInteractive = true
			}
		case tok == "--non-interactive":
			nonInteractive = true
		default:
			return "", true, nonInteractive, fmt.Errorf("unsupported sudo option %q", tok)
		}
	}
}
