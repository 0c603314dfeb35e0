package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// swtpm starts Debian's swtpm on a private socket and state directory and
// points OCIKP_TPM at it; it is stopped by PID when the script ends.
// Scripts skip with [!exec:swtpm] before (scripts/test.sh installs it).
// "swtpm restart" restarts it on the same state (a reboot); "swtpm other"
// starts a second one (another machine's TPM) and points OCIKP_TPM at it.
func cmdSwtpm(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! swtpm")
	}
	if _, err := exec.LookPath("swtpm"); err != nil {
		ts.Fatalf("swtpm is not installed: run scripts/install-tools.sh hardware")
	}
	sock := ts.Getenv("SWTPM_SOCKET")
	pidVar := "SWTPM_PID"
	switch {
	case len(args) == 1 && args[0] == "other":
		// A second TPM, another machine's: OCIKP_TPM points at it.
		dir, err := os.MkdirTemp("", "swtpm")
		ts.Check(err)
		ts.Defer(func() { os.RemoveAll(dir) })
		ts.Check(os.Mkdir(filepath.Join(dir, "state"), 0o700))
		sock, pidVar = filepath.Join(dir, "s"), "SWTPM_OTHER_PID"
		ts.Setenv("OCIKP_TPM", sock)
	case len(args) == 0 && sock == "":
		// Unix socket paths are limited to 108 bytes: a short directory.
		dir, err := os.MkdirTemp("", "swtpm")
		ts.Check(err)
		ts.Defer(func() { os.RemoveAll(dir) })
		ts.Check(os.Mkdir(filepath.Join(dir, "state"), 0o700))
		sock = filepath.Join(dir, "s")
		ts.Setenv("SWTPM_SOCKET", sock)
		ts.Setenv("OCIKP_TPM", sock)
	case len(args) == 1 && args[0] == "restart" && sock != "":
		pid := ts.Getenv("SWTPM_PID")
		if p, err := os.FindProcess(atoi(ts, pid)); err == nil {
			p.Signal(syscall.SIGTERM)
		}
		for i := 0; i < 100; i++ {
			if syscall.Kill(atoi(ts, pid), 0) != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		os.Remove(sock)
		os.Remove(sock + ".ctrl")
	default:
		ts.Fatalf("usage: swtpm [restart|other]")
	}
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+sock+".ctrl",
		"--tpmstate", "dir="+filepath.Join(filepath.Dir(sock), "state"),
		"--flags", "not-need-init,startup-clear")
	ts.Check(cmd.Start())
	go cmd.Wait() //nolint:errcheck // reaped; stopped by PID below
	ts.Setenv(pidVar, strconv.Itoa(cmd.Process.Pid))
	pid := cmd.Process.Pid
	ts.Defer(func() { syscall.Kill(pid, syscall.SIGTERM) })
	for i := 0; ; i++ {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
		if i == 200 {
			ts.Fatalf("swtpm did not create its socket within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func atoi(ts *testscript.TestScript, s string) int {
	n, err := strconv.Atoi(s)
	ts.Check(err)
	return n
}
