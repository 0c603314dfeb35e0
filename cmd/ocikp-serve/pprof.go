//go:build pprof

package main

import (
	"os"
	"runtime/pprof"
)

// A build with -tags pprof (scripts/load-serve.sh with PROFILE=FILE) writes
// a CPU profile of the whole run to $OCIKP_CPUPROFILE, for measuring only:
// release builds have no such switch.
func init() {
	path := os.Getenv("OCIKP_CPUPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	stopProfile = func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
