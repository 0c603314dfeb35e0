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
// starts a second one (another machine's TPM) and points OCIKP_TPM at it;
// "swtpm ekcert" starts the first as swtpm_setup manufactures it, with
// an RSA EK certificate from a local CA whose PEM bundle is $EK_CA.
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
	case len(args) == 0 && sock == "", len(args) == 1 && args[0] == "ekcert" && sock == "":
		// Unix socket paths are limited to 108 bytes: a short directory.
		dir, err := os.MkdirTemp("", "swtpm")
		ts.Check(err)
		ts.Defer(func() { os.RemoveAll(dir) })
		ts.Check(os.Mkdir(filepath.Join(dir, "state"), 0o700))
		sock = filepath.Join(dir, "s")
		ts.Setenv("SWTPM_SOCKET", sock)
		ts.Setenv("OCIKP_TPM", sock)
		if len(args) == 1 {
			manufacture(ts, dir)
		}
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
		ts.Fatalf("usage: swtpm [restart|other|ekcert]")
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

// manufacture has swtpm_setup make dir/state a TPM with EK certificates
// issued by a local CA (swtpm_localca) in dir/ca; $EK_CA is its bundle.
func manufacture(ts *testscript.TestScript, dir string) {
	localca, err := exec.LookPath("swtpm_localca")
	ts.Check(err)
	ca := filepath.Join(dir, "ca")
	ts.Check(os.Mkdir(ca, 0o700))
	ts.Check(os.WriteFile(filepath.Join(dir, "localca.conf"), []byte("statedir = "+ca+"\nsigningkey = "+ca+"/signkey.pem\nissuercert = "+ca+
		"/issuercert.pem\ncertserial = "+ca+"/certserial\n"), 0o600))
	ts.Check(os.WriteFile(filepath.Join(dir, "setup.conf"), []byte("create_certs_tool = "+localca+"\ncreate_certs_tool_config = "+
		filepath.Join(dir, "localca.conf")+"\ncreate_certs_tool_options = /dev/null\n"), 0o600))
	out, err := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", filepath.Join(dir, "state"), "--create-ek-cert",
		"--config", filepath.Join(dir, "setup.conf"), "--overwrite").CombinedOutput()
	if err != nil {
		ts.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	var bundle []byte
	for _, f := range []string{"swtpm-localca-rootca-cert.pem", "issuercert.pem"} {
		b, err := os.ReadFile(filepath.Join(ca, f))
		ts.Check(err)
		bundle = append(bundle, b...)
	}
	ts.Check(os.WriteFile(filepath.Join(dir, "ek-ca.pem"), bundle, 0o600))
	ts.Setenv("EK_CA", filepath.Join(dir, "ek-ca.pem"))
}
