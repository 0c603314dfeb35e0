//go:build !linux

package main

import (
	"errors"
	"os"
	"os/exec"
)

// run hands every request to ocikp: the fast path reads stdin before it
// knows whether it can answer, and only Linux gives it a file (memfd) to
// pass what it read on. ocikp runs as a child with this process's stdin,
// stdout and stderr, and its exit code is this process's.
func run(args []string) {
	bin, err := ocikpPath()
	if err != nil {
		fail(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.ExitCode())
	}
	if err != nil {
		fail(err)
	}
}
