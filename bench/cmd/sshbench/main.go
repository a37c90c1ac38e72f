// Command sshbench measures kmsctl's SSH transport (the remote package) against an sshd:
// upload throughput of one file over an open connection and with a fresh connection, for
// several SFTP in-flight settings, and the latency of sequential commands on one connection.
// It prints one line of key=value figures per measurement; bench/ssh.sh runs it next to
// OpenSSH's scp, sftp and ssh and formats the comparison.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kmsctl/kmsctl/remote"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sshbench:", err)
		os.Exit(1)
	}
}

type config struct {
	host, user, key, knownHosts, file, dir string
	pairCmd                                string
	port, runs, commands                   int
	concurrency, packets                   []int
}

func run() error {
	var c config
	var conc, packets string
	flag.StringVar(&c.host, "host", "127.0.0.1", "sshd address")
	flag.IntVar(&c.port, "port", 22, "sshd port")
	flag.StringVar(&c.user, "user", "root", "login user")
	flag.StringVar(&c.key, "key", "", "private key file")
	flag.StringVar(&c.knownHosts, "known-hosts", "", "known_hosts file pinning the sshd's key")
	flag.StringVar(&c.file, "file", "", "local file to upload")
	flag.StringVar(&c.dir, "dir", "/tmp", "remote directory to upload into (absolute)")
	flag.IntVar(&c.runs, "runs", 5, "timed runs per measurement (the median is printed)")
	flag.IntVar(&c.commands, "commands", 100, "sequential `true` commands per command run")
	flag.StringVar(&c.pairCmd, "pair", "", "shell command of another tool's upload (scp over a ControlMaster), timed alternately with kmsctl's default upload")
	flag.StringVar(&conc, "concurrency", "0", "comma-separated SFTP in-flight settings to measure (0 = remote's default)")
	flag.StringVar(&packets, "packets", "0", "comma-separated SFTP request sizes to measure (0 = remote's choice for the server)")
	flag.Parse()
	if c.key == "" || c.knownHosts == "" || c.file == "" {
		return fmt.Errorf("-key, -known-hosts and -file are required")
	}
	var err error
	if c.concurrency, err = ints(conc); err != nil {
		return fmt.Errorf("parse -concurrency: %w", err)
	}
	if c.packets, err = ints(packets); err != nil {
		return fmt.Errorf("parse -packets: %w", err)
	}
	st, err := os.Stat(c.file)
	if err != nil {
		return fmt.Errorf("stat upload file: %w", err)
	}
	ctx := context.Background()

	if c.pairCmd != "" {
		if err := benchPair(ctx, c, st.Size()); err != nil {
			return err
		}
	}
	for _, p := range c.packets {
		for _, n := range c.concurrency {
			if err := benchUpload(ctx, c, n, p, st.Size()); err != nil {
				return err
			}
		}
	}
	return benchCommands(ctx, c)
}

// ints parses a comma-separated list of integers.
func ints(list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q: %w", list, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func (c config) options(concurrency, packet int) remote.Options {
	return remote.Options{
		HostName:        c.host,
		Port:            c.port,
		User:            c.user,
		IdentityFiles:   []string{c.key},
		KnownHostsFiles: []string{c.knownHosts},
		SSHConfigFile:   "none",
		AgentSocket:     "none",
		SFTPConcurrency: concurrency,
		SFTPPacketSize:  packet,
	}
}

// benchUpload times Upload over one open connection (after a warm-up upload that also opens
// the SFTP session), then dial + upload + close, each c.runs times.
func benchUpload(ctx context.Context, c config, concurrency, packet int, size int64) error {
	target := path.Join(c.dir, "sshbench-upload.bin")
	cl, err := remote.Dial(ctx, c.options(concurrency, packet))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer cl.Close()
	if err := upload(ctx, cl, c.file, target); err != nil {
		return err
	}
	var open []time.Duration
	for range c.runs {
		// No dirty pages at the start (outside the timing), as bench/ssh.sh does for
		// OpenSSH's tools: the sshd runs on this machine.
		syscall.Sync()
		start := time.Now()
		if err := upload(ctx, cl, c.file, target); err != nil {
			return err
		}
		open = append(open, time.Since(start))
	}
	// The remote sha256 check is part of Upload; time it alone to show its share.
	var sums []time.Duration
	for range c.runs {
		start := time.Now()
		if _, err := cl.Checksum(ctx, target); err != nil {
			return fmt.Errorf("checksum: %w", err)
		}
		sums = append(sums, time.Since(start))
	}
	var fresh []time.Duration
	for range c.runs {
		syscall.Sync()
		start := time.Now()
		fc, err := remote.Dial(ctx, c.options(concurrency, packet))
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		err = upload(ctx, fc, c.file, target)
		fc.Close()
		if err != nil {
			return err
		}
		fresh = append(fresh, time.Since(start))
	}
	mo, mf := median(open), median(fresh)
	fmt.Printf("upload mode=open concurrency=%d packet=%d bytes=%d median_s=%.4f mb_per_s=%.1f remote_sha256_s=%.4f\n",
		concurrency, packet, size, mo.Seconds(), mbps(size, mo), median(sums).Seconds())
	fmt.Printf("upload mode=fresh concurrency=%d packet=%d bytes=%d median_s=%.4f mb_per_s=%.1f\n",
		concurrency, packet, size, mf.Seconds(), mbps(size, mf))
	return nil
}

// benchPair times kmsctl's default upload on an open connection and c.pairCmd alternately,
// in turn first and second, c.runs times each: both see the same machine state, so their
// ratio does not drift with the load between two separate series.
func benchPair(ctx context.Context, c config, size int64) error {
	target := path.Join(c.dir, "sshbench-upload.bin")
	cl, err := remote.Dial(ctx, c.options(0, 0))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer cl.Close()
	other := func() error {
		out, err := exec.CommandContext(ctx, "sh", "-c", c.pairCmd).CombinedOutput()
		if err != nil {
			return fmt.Errorf("run %q: %w: %s", c.pairCmd, err, out)
		}
		return nil
	}
	mine := func() error { return upload(ctx, cl, c.file, target) }
	if err := mine(); err != nil { // warm-up: opens the SFTP session
		return err
	}
	if err := other(); err != nil {
		return err
	}
	var ks, others []time.Duration
	for i := range c.runs {
		order := []func() error{mine, other}
		times := []*[]time.Duration{&ks, &others}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
			times[0], times[1] = times[1], times[0]
		}
		for j, f := range order {
			syscall.Sync() // no dirty pages at the start, outside the timing
			start := time.Now()
			if err := f(); err != nil {
				return err
			}
			*times[j] = append(*times[j], time.Since(start))
		}
	}
	mk, mo := median(ks), median(others)
	fmt.Printf("pair runs=%d bytes=%d kmsctl_median_s=%.4f other_median_s=%.4f kmsctl_mb_per_s=%.1f other_mb_per_s=%.1f ratio=%.2f\n",
		c.runs, size, mk.Seconds(), mo.Seconds(), mbps(size, mk), mbps(size, mo), mo.Seconds()/mk.Seconds())
	return nil
}

func upload(ctx context.Context, cl *remote.Client, file, target string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open upload file: %w", err)
	}
	defer f.Close()
	if _, err := cl.Upload(ctx, target, f, "", 0o600, ""); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	return nil
}

// benchCommands times c.commands sequential `true` commands on one open connection.
func benchCommands(ctx context.Context, c config) error {
	cl, err := remote.Dial(ctx, c.options(0, 0))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer cl.Close()
	if err := cl.Run(ctx, "true", nil, io.Discard, io.Discard); err != nil {
		return fmt.Errorf("run true: %w", err)
	}
	var per []time.Duration
	for range c.runs {
		start := time.Now()
		for range c.commands {
			if err := cl.Run(ctx, "true", nil, io.Discard, io.Discard); err != nil {
				return fmt.Errorf("run true: %w", err)
			}
		}
		per = append(per, time.Since(start)/time.Duration(c.commands))
	}
	fmt.Printf("commands mode=open count=%d median_ms_per_command=%.2f\n",
		c.commands, float64(median(per).Microseconds())/1000)
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// mbps is throughput in MB/s (10^6 bytes per second).
func mbps(size int64, d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
