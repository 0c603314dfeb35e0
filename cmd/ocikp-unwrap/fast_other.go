//go:build !linux

package main

import (
	"os"
	"syscall"
)

// run hands every request to ocikp: the fast path reads stdin before it
// knows whether it can answer, and it passes what it read on in a memfd,
// which only Linux has. stdin is untouched here: the process becomes
// ocikp.
func run(args []string) {
	bin, err := ocikpPath()
	if err != nil {
		fail(err)
	}
	fail(syscall.Exec(bin, append([]string{bin}, args...), os.Environ()))
}
