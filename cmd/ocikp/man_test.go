package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ocikp/ocikp/internal/cli"
)

var updateMan = flag.Bool("update-man", false, "rewrite docs/man/ocikp.1 from the commands' help")

// The manual page is generated from the help texts ("ocikp help --man"):
// this fails when a command's help changed and docs/man/ocikp.1 did not.
// Regenerate with: go test ./cmd/ocikp -run TestManPage -update-man
func TestManPage(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", dir, "github.com/ocikp/ocikp/cmd/ocikp-serve", "github.com/ocikp/ocikp/cmd/ocikp-image").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Setenv("OCIKP_PLUGIN_DIR", dir)
	t.Setenv("OCIKP_KEYSTORE", "")
	var stdout, stderr bytes.Buffer
	if code := cli.Main([]string{"help", "--man"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("ocikp help --man: exit %d\n%s", code, stderr.String())
	}
	path := filepath.Join("..", "..", "docs", "man", "ocikp.1")
	if *updateMan {
		if err := os.WriteFile(path, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout.Bytes(), want) {
		t.Fatalf("%s is not what \"ocikp help --man\" prints now; regenerate it with\n\tgo test ./cmd/ocikp -run TestManPage -update-man", path)
	}
	// Every command has its section.
	for _, c := range []string{"keyprovider", "keygen", "list", "serve", "inspect", "rewrap", "health", "doctor", "version", "help", "completion"} {
		if !bytes.Contains(want, []byte(`.SS "ocikp `+c+`"`)) {
			t.Errorf("no section for ocikp %s", c)
		}
	}
}
