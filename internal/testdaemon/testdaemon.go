// Package testdaemon runs a long-lived program (ocikp serve, a registry,
// containerd) for the rest of a test and learns its address from its own log.
//
// Services are started on port 0 and report the port they bound: picking a
// "free" port first and handing it over races with every other socket on the
// machine (a CI run once failed with "address already in use" that way).
package testdaemon

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"
)

// Log is a program's combined output, safe to read while it is written.
type Log struct {
	mu     sync.Mutex
	b      bytes.Buffer
	exited chan struct{} // closed when the program has exited (Start)
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Exited reports whether the program has exited.
func (l *Log) Exited() bool {
	select {
	case <-l.exited:
		return true
	default:
		return false
	}
}

// Start starts cmd with its output in the returned Log. When the test ends
// it is interrupted, then killed if it has not exited within 10 s; if the
// test failed, the end of its log is shown.
func Start(t testing.TB, cmd *exec.Cmd) *Log {
	t.Helper()
	logs := &Log{exited: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = logs
	}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := logs.exited
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			l := logs.String()
			if len(l) > 3000 {
				l = "…" + l[len(l)-3000:]
			}
			t.Logf("%s log (end):\n%s", filepath.Base(cmd.Path), l)
		}
	})
	return logs
}

// Log lines that name the address a program bound.
var (
	// ocikp serve's JSON log: {"level":"INFO","msg":"serving","listen":"127.0.0.1:40123",…}
	Serving = regexp.MustCompile(`"msg":"serving","listen":"([^"]+)"`)
	// Debian's docker-registry at log level info.
	RegistryListening = regexp.MustCompile(`msg="listening on ([^"]+)"`)
)

// Wait returns the first submatch of re in the log once it appears. It
// fails the test if the program exits first or that takes longer than 20 s.
func (l *Log) Wait(t testing.TB, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(l.String()); m != nil {
			return m[1]
		}
		select {
		case <-l.exited: // all its output is in by now
			if m := re.FindStringSubmatch(l.String()); m != nil {
				return m[1]
			}
			t.Fatalf("exited before logging a line matching %s; log:\n%s", re, l.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line matching %s within 20 s; log:\n%s", re, l.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Serve starts `ocikp serve` (or ocikp-serve) as cmd, which must listen on
// port 0 of a loopback address, and returns the host:port it bound.
func Serve(t testing.TB, cmd *exec.Cmd) (string, *Log) {
	t.Helper()
	logs := Start(t, cmd)
	return logs.Wait(t, Serving), logs
}
