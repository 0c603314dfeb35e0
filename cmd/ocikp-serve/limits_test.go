package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// --max-pending-bytes reaches the service, from the command line and from
// a config file: a budget smaller than one request is refused with one
// error line that names the flag.
func TestMaxPendingBytesFlag(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "serve.json")
	os.WriteFile(cfg, []byte(`{"max-pending-bytes": 1000}`), 0o600)
	for name, args := range map[string][]string{
		"flag":        {"--max-pending-bytes", "1000"},
		"config file": {"--config", cfg},
	} {
		cmd := exec.Command(bin(t), append([]string{"--listen", "127.0.0.1:0", "--keystore", t.TempDir()}, args...)...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, "ocikp: error: --max-pending-bytes 1000 is less than one request") || strings.Count(got, "\n") != 0 {
			t.Errorf("%s: %s", name, out)
		}
	}
}
