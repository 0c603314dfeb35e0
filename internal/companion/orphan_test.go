package companion

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestChildKeepsStdout: a companion whose module leaves a process behind
// that holds its stdout (a PKCS#11 module that starts a helper daemon)
// answers and exits; Call returns its reply at once, and even a silent one
// returns within its time-out, not when that process ends (here a minute;
// a daemon's, never).
func TestChildKeepsStdout(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, reply string }{
		{"answers", `echo '{"echo":"hi"}'`},
		{"silent", `:`},
	} {
		pidFile := filepath.Join(dir, c.name+".pid")
		script := filepath.Join(dir, c.name)
		body := "#!/bin/sh\nsleep 60 &\necho $! > '" + pidFile + "'\n" + c.reply + "\n"
		if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if b, err := os.ReadFile(pidFile); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		})
		cl := &Client{Name: script, Timeout: 2 * time.Second, MaxReply: 4096}
		t.Setenv("OCIKP_PLUGIN_DIR", "")
		start := time.Now()
		var rep reply
		err := cl.Call(nil, &rep)
		took := time.Since(start)
		t.Logf("%s: %v after %v", c.name, err, took.Round(time.Millisecond))
		if took > 20*time.Second {
			t.Fatalf("%s: Call waited %v for a process that holds the companion's stdout (time-out 2 s)", c.name, took.Round(time.Second))
		}
		if c.name == "answers" && (err != nil || rep.Echo != "hi") {
			t.Fatalf("answers: %+v, %v", rep, err)
		}
		if c.name == "silent" && err == nil {
			t.Fatal("silent: no error")
		}
	}
}
