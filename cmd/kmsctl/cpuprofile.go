//go:build !benchprofile

package main

// startCPUProfile is a no-op in a normal build; a build with -tags
// benchprofile (bench/recovery/run.sh PROFILE=FILE, BENCHMARKS.md) writes a
// CPU profile to $KMSCTL_CPUPROFILE (see cpuprofile_bench.go).
func startCPUProfile(func(string) string) (stop func()) { return func() {} }
