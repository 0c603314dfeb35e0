package main

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ocikp/ocikp/internal/fastunwrap"
	"github.com/ocikp/ocikp/protocol"
)

func run(args []string) {
	dir, name, ok := fastArgs(args)
	// OCIKP_LOG asks ocikp for a log; a terminal gets ocikp's hint, not a
	// read that waits for input.
	if !ok || os.Getenv("OCIKP_LOG") != "" || isTerminal(0) {
		handOver(args, nil, false)
	}
	// Read as ocikp would (up to one byte over its bound), so that ocikp,
	// given the same bytes, says what it would have said.
	data, err := io.ReadAll(io.LimitReader(os.Stdin, protocol.MaxRequestSize+1))
	if err != nil && len(data) == 0 {
		handOver(args, nil, false) // nothing read: ocikp meets the same error
	}
	if err == nil && len(data) <= protocol.MaxRequestSize {
		if reply, ok := fastunwrap.Reply(dir, name, data); ok {
			if _, err := os.Stdout.Write(reply); err != nil {
				os.Stderr.WriteString("ocikp: error: " + err.Error() + "\n")
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	handOver(args, data, true)
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// handOver execs the ocikp beside this binary with args; with read, its
// stdin holds data (what this process read of its own stdin) instead.
func handOver(args []string, data []byte, read bool) {
	bin, err := ocikpPath()
	if err != nil {
		fail(err)
	}
	if read {
		if err := stdinFrom(data); err != nil {
			fail(err)
		}
	}
	fail(syscall.Exec(bin, append([]string{bin}, args...), os.Environ()))
}

// stdinFrom makes fd 0 a file that holds data, read from its start: a
// memfd, or where memfd_create is refused (old kernels, seccomp) a pipe
// when data fits in one.
func stdinFrom(data []byte) error {
	fd, err := unix.MemfdCreate("ocikp-request", unix.MFD_CLOEXEC)
	if err == nil {
		if err := writeAll(fd, data); err != nil {
			return err
		}
		if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
			return err
		}
		return toStdin(fd)
	}
	if len(data) > 64<<10 {
		return err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	if err := writeAll(p[1], data); err != nil {
		return err
	}
	unix.Close(p[1])
	return toStdin(p[0])
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// toStdin moves fd to 0, open across exec.
func toStdin(fd int) error {
	if fd == 0 {
		_, err := unix.FcntlInt(0, unix.F_SETFD, 0)
		return err
	}
	return unix.Dup3(fd, 0, 0)
}
