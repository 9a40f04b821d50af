package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// addProfileFlag adds the hidden --cpuprofile flag of serve and mount: a
// developer's tool to see where a daemon spends its CPU under a workload.
// Off unless given.
func addProfileFlag(fl *pflag.FlagSet) *string {
	p := fl.String("cpuprofile", "", "write a CPU profile to `FILE` until the process exits")
	fl.MarkHidden("cpuprofile")
	return p
}

// startCPUProfile starts profiling into path (nothing when path is empty)
// and returns the function that stops it and closes the file. "%p" in
// path becomes the process ID, so that every remount of a benchmark keeps
// its own profile.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	path = strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
