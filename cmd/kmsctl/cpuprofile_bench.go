//go:build benchprofile

package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startCPUProfile starts a CPU profile of the whole process into the file
// named by KMSCTL_CPUPROFILE (nothing when it is unset) and returns what
// stops it. Only in builds with -tags benchprofile, for the benchmarks
// (BENCHMARKS.md): `go tool pprof -top BINARY FILE`.
func startCPUProfile(getenv func(string) string) (stop func()) {
	p := getenv("KMSCTL_CPUPROFILE")
	if p == "" {
		return func() {}
	}
	f, err := os.Create(p)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kmsctl: CPU profile %s: %v\n", p, err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "kmsctl: CPU profile %s: %v\n", p, err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "kmsctl: CPU profile %s: %v\n", p, err)
		}
	}
}
