package e2e

// The README and the pages of docs/ are tested as a newcomer uses them.
//
// Which blocks count: a fenced block whose info string is sh, bash, shell
// or console is a shell block. Every shell block must be either
//
//   - runnable: the line right above its fence is "<!-- runnable -->" (only
//     sh and bash blocks may be); the runnable blocks of one file run in
//     order, in one bash session (set -euo pipefail) started in the clone,
//     on a scratch home directory of their own; or
//   - marked: the line right above its fence is an italic line giving the
//     reason, "*Not run in CI: needs a Google Cloud project.*" (the words
//     between "*Not run in CI" and the colon are free, e.g. "as a README
//     block"). It is visible on the rendered page, unlike an HTML comment.
//
// Blocks with another info string (json, toml, yaml, none) are file
// contents or output, shown for reading, and are not checked.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"unicode"
)

const runnableMark = "<!-- runnable -->"

// notRunMark is the visible reason line above a shell block that CI does
// not run.
var notRunMark = regexp.MustCompile(`^\*Not run in CI[^:*]*: \S.*\*$`)

// shellFence reports whether a fence line opens a shell block, and whether
// that block may be runnable (sh and bash).
func shellFence(line string) (shell, runnable bool) {
	info := strings.Fields(strings.TrimPrefix(line, "```"))
	if len(info) == 0 {
		return false, false
	}
	switch info[0] {
	case "sh", "bash":
		return true, true
	case "shell", "console":
		return true, false
	}
	return false, false
}

// block is one fenced block of a markdown file.
type block struct {
	line     int    // 1-based line of the opening fence
	fence    string // the opening fence line
	above    string // the line right above the fence
	body     string
	runnable bool
}

// fencedBlocks returns the top-level fenced blocks of a markdown file, in
// order, and the file's lines outside them.
func fencedBlocks(md string) (blocks []block, prose []string) {
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "```") {
			prose = append(prose, lines[i])
			continue
		}
		b := block{line: i + 1, fence: lines[i]}
		if i > 0 {
			b.above = strings.TrimSpace(lines[i-1])
		}
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			body = append(body, lines[i])
		}
		b.body = strings.Join(body, "\n")
		_, canRun := shellFence(b.fence)
		b.runnable = canRun && b.above == runnableMark
		blocks = append(blocks, b)
	}
	return blocks, prose
}

// runnableBlocks returns a file's runnable shell blocks, in order.
func runnableBlocks(md string) []string {
	var out []string
	blocks, _ := fencedBlocks(md)
	for _, b := range blocks {
		if b.runnable {
			out = append(out, b.body)
		}
	}
	return out
}

// docFiles returns README.md and docs/*.md (paths relative to the clone).
func docFiles(t *testing.T, root string) []string {
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md"}
	for _, p := range pages {
		rel, err := filepath.Rel(root, p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, rel)
	}
	return files
}

func cloneRoot(t *testing.T) string {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Every shell block is either run or says why not, and the README stays a
// short entry point (issue 21: at most 300 lines). Needs no tools.
func TestDocsShellBlocksMarked(t *testing.T) {
	root := cloneRoot(t)
	for _, f := range docFiles(t, root) {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		blocks, _ := fencedBlocks(string(data))
		for _, b := range blocks {
			shell, canRun := shellFence(b.fence)
			switch {
			case b.above == runnableMark && !canRun:
				t.Errorf("%s:%d: %q is marked runnable, but only sh and bash blocks run", f, b.line, b.fence)
			case !shell || b.runnable:
			case notRunMark.MatchString(b.above):
			default:
				t.Errorf("%s:%d: a %s block that is neither runnable (%q on the line above) nor marked with a visible reason (a line like %q right above it)",
					f, b.line, strings.TrimPrefix(b.fence, "```"), runnableMark, "*Not run in CI: needs a Google Cloud project.*")
			}
		}
		if f == "README.md" {
			if n := strings.Count(strings.TrimRight(string(data), "\n"), "\n") + 1; n > 300 {
				t.Errorf("README.md has %d lines; keep it at most 300 and move detail to docs/", n)
			}
		}
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

// anchors returns the GitHub anchors of a markdown file's headings.
func anchors(md string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	_, prose := fencedBlocks(md)
	for _, l := range prose {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// Every relative link of the README and docs/ names a file of the clone,
// and an anchor into a markdown file names one of its headings.
func TestDocsLinks(t *testing.T) {
	root := cloneRoot(t)
	for _, f := range docFiles(t, root) {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		_, prose := fencedBlocks(string(data))
		for _, m := range mdLink.FindAllStringSubmatch(strings.Join(prose, "\n"), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			file := filepath.Join(root, f)
			if path != "" {
				file = filepath.Join(filepath.Dir(file), path)
			}
			st, err := os.Stat(file)
			if err != nil {
				t.Errorf("%s: link %q: %v", f, target, err)
				continue
			}
			if anchor == "" || st.IsDir() || !strings.HasSuffix(file, ".md") {
				continue
			}
			md, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors(string(md))[anchor] {
				t.Errorf("%s: link %q: no heading with anchor #%s in %s", f, target, anchor, path)
			}
		}
	}
}

// runBlocks runs one file's runnable blocks in one bash session on home,
// from the clone, and returns what they printed. Processes they leave
// behind (a registry, a service) are killed with their process group.
func runBlocks(t *testing.T, root, file string, env []string) string {
	data, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	blocks := runnableBlocks(string(data))
	gitStatus := func() string {
		st, _ := exec.Command("git", "-C", root, "status", "--porcelain").Output()
		return string(st)
	}
	before := gitStatus()
	script := "set -euo pipefail\n" + strings.Join(blocks, "\n")
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = root
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Start()
	if err == nil {
		defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = cmd.Wait()
	}
	if err != nil {
		t.Fatalf("the runnable blocks of %s failed: %v\n%s", file, err, out.String())
	}
	if strings.Contains(out.String(), "\nfail  ") {
		t.Errorf("ocikp doctor found failures in the set-up of %s:\n%s", file, out.String())
	}
	if after := gitStatus(); after != before {
		t.Errorf("the runnable blocks of %s wrote into the clone:\n%s", file, after)
	}
	return out.String()
}

// baseEnv is a newcomer's environment on a scratch home: the Go caches and
// the tools stay where they are (a cold cache would rebuild the KMS SDKs);
// everything the blocks write goes to home.
func baseEnv(home, path string) []string {
	gobin := filepath.Join(home, "go-bin")
	env := []string{"HOME=" + home, "GOBIN=" + gobin, "PATH=" + gobin + ":" + path, "TERM=dumb", "LANG=C.UTF-8"}
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
	return env
}

// The README's runnable blocks run as written, in order, on a scratch home
// directory: from a fresh clone to an image in a local registry that two
// keystores decrypt and a third cannot. The README installs ocikp and skopeo
// itself.
func TestReadmeRuns(t *testing.T) {
	need(t, "skopeo")
	need(t, "docker-registry")
	root := cloneRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(runnableBlocks(string(readme))); n < 5 {
		t.Fatalf("%d runnable blocks in README.md; the walkthrough is missing", n)
	}
	home := t.TempDir()
	out := runBlocks(t, root, "README.md", baseEnv(home, os.Getenv("PATH")))
	for _, want := range []string{"ocikp1p2561", "ok    keystore", "no key can decrypt this layer", "refused, as it should be"} {
		if !strings.Contains(out, want) {
			t.Errorf("the walkthrough did not print %q:\n%s", want, out)
		}
	}
	// Both people decrypted: each copy wrote an image.
	for _, dir := range []string{"alice", "bob"} {
		if _, err := os.Stat(filepath.Join(home, "ocikp-try", dir, "index.json")); err != nil {
			t.Errorf("%s's decrypted image is missing: %v", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "ocikp-try", "mallory", "index.json")); err == nil {
		t.Errorf("mallory's copy wrote an image")
	}
}

// docsWants are lines a page's walkthrough must print, beyond running.
var docsWants = map[string][]string{
	"docs/service.md":      {"SERVING", "which serves", "refused, as it should be"},
	"docs/post-quantum.md": {"mix post-quantum and classical-only", "refused, as it should be"},
	"docs/callers.md":      {"use_local_image_pull"},
	"docs/rewrap.md":       {"refused, as it should be"},
	"docs/tpm.md":          {"refused, as it should be", "the same layers: none moved"},
}

// Each docs/ page's runnable blocks run as written, in order, each page on
// a scratch home of its own: a page is self-contained, given ocikp (with
// its sibling binaries) and skopeo on PATH.
func TestDocsRun(t *testing.T) {
	need(t, "skopeo")
	root := cloneRoot(t)
	bin := filepath.Dir(ocikpBinary(t))
	path := bin + ":" + os.Getenv("PATH")
	if tb := os.Getenv("OCIKP_TOOLS_BIN"); tb != "" {
		path = bin + ":" + tb + ":" + os.Getenv("PATH")
	}
	ran := map[string]bool{}
	for _, f := range docFiles(t, root)[1:] {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if len(runnableBlocks(string(data))) == 0 {
			continue
		}
		ran[f] = true
		t.Run(filepath.Base(f), func(t *testing.T) {
			out := runBlocks(t, root, f, baseEnv(t.TempDir(), path))
			for _, want := range docsWants[f] {
				if !strings.Contains(out, want) {
					t.Errorf("%s did not print %q:\n%s", f, want, out)
				}
			}
		})
	}
	for f := range docsWants {
		if !ran[f] {
			t.Errorf("%s has no runnable blocks", f)
		}
	}
}
