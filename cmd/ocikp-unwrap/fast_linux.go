package main

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ocikp/ocikp/internal/fastpath"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/protocol"
)

func run(args []string) {
	dir, name, ok := fastArgs(args)
	// OCIKP_LOG asks ocikp for a log; a terminal gets ocikp's hint, not a
	// read that waits for input.
	if !ok || os.Getenv("OCIKP_LOG") != "" || isTerminal(0) {
		handOver(args, nil, false)
	}
	// For the command lines fastArgs accepts, reading the request is the
	// first step of ocikp's that can fail: the same function reads it
	// here, and its error is printed as ocikp prints it.
	data, err := protocol.ReadRequestBytes(os.Stdin)
	if err != nil {
		hint.Print(os.Stderr, err)
		os.Exit(1)
	}
	if reply, ok := fastpath.Reply(dir, name, data); ok {
		if _, err := os.Stdout.Write(reply); err != nil {
			hint.Print(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
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
	argv := append([]string{bin}, args...)
	if read {
		fd, err := memfd(data)
		if err != nil {
			// memfd_create refused (a seccomp profile, an old kernel):
			// ocikp runs as a child that reads data from a pipe.
			ws, err := spawn(bin, argv, data, 1, 2)
			if err != nil {
				fail(err)
			}
			exitAs(ws)
		}
		if err := toStdin(fd); err != nil {
			fail(err)
		}
	}
	fail(syscall.Exec(bin, argv, os.Environ()))
}

// memfd returns a memfd holding data, read from its start, closed on exec.
func memfd(data []byte) (int, error) {
	fd, err := unix.MemfdCreate("ocikp-request", unix.MFD_CLOEXEC)
	if err != nil {
		return -1, err
	}
	if err := writeAll(fd, data); err != nil {
		return -1, err
	}
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return -1, err
	}
	return fd, nil
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

// toStdin moves fd to 0, open across exec. (fd is never 0 itself: the Go
// runtime opens /dev/null on a closed fd 0 before main.)
func toStdin(fd int) error {
	return unix.Dup3(fd, 0, 0)
}

// spawn runs bin as a child whose stdin is a pipe fed with data, and stdout
// and stderr the descriptors given, and waits for it.
func spawn(bin string, argv []string, data []byte, stdout, stderr uintptr) (syscall.WaitStatus, error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return 0, err
	}
	pid, err := syscall.ForkExec(bin, argv, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{uintptr(p[0]), stdout, stderr}})
	syscall.Close(p[0])
	if err != nil {
		syscall.Close(p[1])
		return 0, err
	}
	// A write error is the child's having exited without reading it all:
	// its exit status says what happened.
	writeAll(p[1], data)
	syscall.Close(p[1])
	var ws syscall.WaitStatus
	for {
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			return ws, err
		}
	}
}

// exitAs ends this process with the child's exit code, or 128 plus the
// signal that ended it, as a shell reports it.
func exitAs(ws syscall.WaitStatus) {
	if ws.Signaled() {
		os.Exit(128 + int(ws.Signal()))
	}
	os.Exit(ws.ExitStatus())
}
