// Package tpmtest starts Debian's swtpm for tests: a private socket and
// state directory in t.TempDir(), stopped by PID in t.Cleanup; and the
// companion ocikp-tpm, built and found through OCIKP_PLUGIN_DIR.
package tpmtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SWTPM is one running swtpm.
type SWTPM struct {
	Socket string // raw TPM commands (what --tpm takes)
	state  string
	t      testing.TB
	cmd    *exec.Cmd
}

// Start starts swtpm, or skips the test when swtpm is not installed and
// OCIKP_E2E is unset (scripts/test.sh sets it and installs swtpm).
func Start(t testing.TB) *SWTPM {
	t.Helper()
	s := newSWTPM(t)
	s.start()
	Companion(t)
	return s
}

// StartWithEKCert starts a swtpm manufactured as TPM makers do: an RSA
// 2048 EK (and swtpm's ECC one) with its certificate in the TCG NV index,
// issued by a local CA that swtpm_setup has swtpm_localca create, all in
// a temporary directory. ca is the CA's PEM bundle (root and issuer).
func StartWithEKCert(t testing.TB) (s *SWTPM, ca []byte) {
	t.Helper()
	if _, err := exec.LookPath("swtpm_setup"); err != nil {
		if os.Getenv("OCIKP_E2E") == "" {
			t.Skip("swtpm_setup is not installed (swtpm-tools)")
		}
		t.Fatal("swtpm_setup is not installed: run scripts/install-tools.sh hardware")
	}
	localca, err := exec.LookPath("swtpm_localca")
	if err != nil {
		t.Fatal("swtpm_localca is not installed (swtpm-tools)")
	}
	s = newSWTPM(t)
	dir := filepath.Dir(s.state)
	cadir := filepath.Join(dir, "ca")
	files := map[string]string{
		"localca.conf": "statedir = " + cadir + "\nsigningkey = " + cadir + "/signkey.pem\nissuercert = " + cadir +
			"/issuercert.pem\ncertserial = " + cadir + "/certserial\n",
		"swtpm_setup.conf": "create_certs_tool = " + localca + "\ncreate_certs_tool_config = " + filepath.Join(dir, "localca.conf") +
			"\ncreate_certs_tool_options = /dev/null\n",
	}
	if err := os.Mkdir(cadir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", s.state, "--create-ek-cert",
		"--config", filepath.Join(dir, "swtpm_setup.conf"), "--overwrite")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	for _, f := range []string{"swtpm-localca-rootca-cert.pem", "issuercert.pem"} {
		b, err := os.ReadFile(filepath.Join(cadir, f))
		if err != nil {
			t.Fatal(err)
		}
		ca = append(ca, b...)
	}
	s.start()
	Companion(t)
	return s, ca
}

func newSWTPM(t testing.TB) *SWTPM {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("OCIKP_E2E") == "" {
			t.Skip("swtpm is not installed (scripts/install-tools.sh hardware installs it); set OCIKP_E2E=1 to fail instead")
		}
		t.Fatal("swtpm is not installed: run scripts/install-tools.sh hardware")
	}
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &SWTPM{Socket: filepath.Join(dir, "s"), state: filepath.Join(dir, "state"), t: t}
	if err := os.Mkdir(s.state, 0o700); err != nil {
		t.Fatal(err)
	}
	return s
}

// Companion builds ocikp-tpm into $OCIKP_PLUGIN_DIR when a test set one
// (softhsmtest does, for ocikp-pkcs11), else into a directory of the
// test's own that it sets there. Go's build cache makes every build after
// the first a link.
func Companion(t testing.TB) {
	t.Helper()
	d := os.Getenv("OCIKP_PLUGIN_DIR")
	if d == "" {
		d = t.TempDir()
		t.Setenv("OCIKP_PLUGIN_DIR", d)
	}
	if _, err := os.Stat(filepath.Join(d, "ocikp-tpm")); err == nil {
		return
	}
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", filepath.Join(d, "ocikp-tpm"), "./cmd/ocikp-tpm")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ocikp-tpm: %v\n%s", err, out)
	}
}

func (s *SWTPM) start() {
	t := s.t
	t.Helper()
	s.cmd = exec.Command("swtpm", "socket", "--tpm2",
		"--server", "type=unixio,path="+s.Socket,
		"--ctrl", "type=unixio,path="+s.Socket+".ctrl",
		"--tpmstate", "dir="+s.state,
		"--flags", "not-need-init,startup-clear")
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting swtpm: %v", err)
	}
	cmd := s.cmd
	t.Cleanup(func() { stop(cmd) })
	for i := 0; ; i++ {
		if fi, err := os.Stat(s.Socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
		if i == 200 {
			t.Fatal("swtpm did not create its socket within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func stop(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Stop stops swtpm (its socket goes away); Restart starts it again.
func (s *SWTPM) Stop() {
	stop(s.cmd)
	os.Remove(s.Socket)
	os.Remove(s.Socket + ".ctrl")
}

// Restart stops swtpm and starts it again on the same state: a reboot
// (PCRs reset, keys kept).
func (s *SWTPM) Restart() {
	s.t.Helper()
	stop(s.cmd)
	os.Remove(s.Socket)
	os.Remove(s.Socket + ".ctrl")
	s.start()
}

// Tool runs a tpm2-tools command against this swtpm, or skips the test
// when tpm2-tools is missing and OCIKP_E2E is unset.
func (s *SWTPM) Tool(name string, args ...string) string {
	s.t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("OCIKP_E2E") == "" {
			s.t.Skipf("%s is not installed (tpm2-tools)", name)
		}
		s.t.Fatalf("%s is not installed: run scripts/install-tools.sh hardware", name)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI=swtpm:path="+s.Socket)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			s.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		s.t.Fatal(err)
	}
	return string(out)
}

// ExtendPCR extends a sha256 PCR with a digest, changing its value.
func (s *SWTPM) ExtendPCR(pcr int) {
	s.t.Helper()
	s.Tool("tpm2_pcrextend", strconv.Itoa(pcr)+":sha256="+strings.Repeat("ab", 32))
}
