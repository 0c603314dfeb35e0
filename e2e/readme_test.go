package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runnableBlocks returns the README's shell blocks marked runnable (an
// HTML comment "<!-- runnable -->" on the line before the fence), in order.
func runnableBlocks(readme string) []string {
	var blocks []string
	lines := strings.Split(readme, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "<!-- runnable -->" || i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```sh") {
			continue
		}
		var b []string
		for i += 2; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			b = append(b, lines[i])
		}
		blocks = append(blocks, strings.Join(b, "\n"))
	}
	return blocks
}

// The README's runnable blocks run as written, in order, in one bash
// session, on a scratch home directory: what a newcomer pastes works.
func TestReadmeRuns(t *testing.T) {
	need(t, "skopeo")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := runnableBlocks(string(readme))
	if len(blocks) < 5 {
		t.Fatalf("%d runnable blocks in README.md; the walkthrough is missing", len(blocks))
	}
	home := t.TempDir()
	gobin := filepath.Join(home, "go-bin")
	env := []string{"HOME=" + home, "GOBIN=" + gobin, "PATH=" + gobin + ":" + os.Getenv("PATH"), "TERM=dumb", "LANG=C.UTF-8"}
	// The Go caches and the tools stay where they are (a cold cache would
	// rebuild the KMS SDKs); everything the README writes goes to home.
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOPROXY", "GONOSUMDB", "GOTOOLCHAIN"} {
		if out, err := exec.Command("go", "env", v).Output(); err == nil {
			env = append(env, v+"="+strings.TrimSpace(string(out)))
		}
	}
	if tb := os.Getenv("OCIKP_TOOLS_BIN"); tb != "" {
		env = append(env, "OCIKP_TOOLS="+filepath.Dir(tb))
	} else if tools := os.Getenv("OCIKP_TOOLS"); tools != "" {
		env = append(env, "OCIKP_TOOLS="+tools)
	}
	gitStatus := func() string {
		st, _ := exec.Command("git", "-C", root, "status", "--porcelain").Output()
		return string(st)
	}
	before := gitStatus()
	script := "set -euo pipefail\n" + strings.Join(blocks, "\n")
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = root
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the README's runnable blocks failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{"ocikp1p2561", "ok    keystore", "no key can decrypt this layer", "refused, as it should be", "SERVING", "which serves"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the walkthrough did not print %q:\n%s", want, out.String())
		}
	}
	if fail := strings.Contains(out.String(), "\nfail  "); fail {
		t.Errorf("ocikp doctor found failures in the README's setup:\n%s", out.String())
	}
	if after := gitStatus(); after != before {
		t.Errorf("the walkthrough wrote into the clone:\n%s", after)
	}
}
