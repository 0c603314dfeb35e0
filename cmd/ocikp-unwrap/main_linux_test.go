package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocikp/ocikp/protocol"
)

var (
	buildOnce sync.Once
	binDir    string // ocikp and ocikp-unwrap side by side
	alone     string // an ocikp-unwrap without an ocikp beside it
	buildErr  error
)

func binaries(t *testing.T) (dir, lone string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the fast path is Linux's; elsewhere ocikp-unwrap runs ocikp for everything")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "ocikp-unwrap-test-")
		if buildErr != nil {
			return
		}
		for _, p := range []string{"ocikp", "ocikp-unwrap"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, p), "github.com/ocikp/ocikp/cmd/"+p).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", p, err, out)
				return
			}
		}
		lone := filepath.Join(binDir, "alone")
		if buildErr = os.Mkdir(lone, 0o755); buildErr != nil {
			return
		}
		alone = filepath.Join(lone, "ocikp-unwrap")
		data, err := os.ReadFile(filepath.Join(binDir, "ocikp-unwrap"))
		if err != nil {
			buildErr = err
			return
		}
		buildErr = os.WriteFile(alone, data, 0o755)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir, alone
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func runBin(t *testing.T, bin string, env []string, stdin []byte, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// keystore makes a keystore of one key of typ with ocikp and returns it
// with the key's recipient.
func keystore(t *testing.T, ocikp, typ string) (string, string) {
	t.Helper()
	ks := filepath.Join(t.TempDir(), "ks")
	r := runBin(t, ocikp, nil, nil, "--keystore", ks, "keygen", "--type", typ, "k")
	if r.code != 0 {
		t.Fatalf("keygen: %s", r.stderr)
	}
	return ks, strings.TrimSpace(r.stdout)
}

// requests returns the wrap request for recipient and the unwrap request
// of the layer ocikp made from it.
func requests(t *testing.T, ocikp, ks, recipient string) (wrap, unwrap []byte) {
	t.Helper()
	wrap, _ = json.Marshal(&protocol.Request{Op: protocol.OpKeyWrap, KeyWrapParams: &protocol.KeyWrapParams{
		EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": {[]byte(recipient)}}}, Optsdata: []byte("optsdata")}})
	r := runBin(t, ocikp, nil, wrap, "keyprovider", "--name", "ocikp", "--keystore", ks)
	if r.code != 0 {
		t.Fatalf("wrap: %s", r.stderr)
	}
	var reply struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &reply); err != nil {
		t.Fatal(err)
	}
	unwrap, _ = json.Marshal(&protocol.Request{Op: protocol.OpKeyUnwrap, KeyUnwrapParams: &protocol.KeyUnwrapParams{
		DC: &protocol.DecryptConfig{Parameters: map[string][][]byte{"ocikp": {[]byte("Enabled")}}}, Annotation: reply.R.Annotation}})
	return wrap, unwrap
}

// What ocikp-unwrap answers itself: the same bytes as ocikp, on stdout
// only; and with no ocikp beside it, so no hand-over was possible.
func TestAnswersUnwrapsItself(t *testing.T) {
	dir, lone := binaries(t)
	ocikp, fast := filepath.Join(dir, "ocikp"), filepath.Join(dir, "ocikp-unwrap")
	for _, typ := range []string{"p256", "mlkem768x25519", "mlkem768p256"} {
		t.Run(typ, func(t *testing.T) {
			ks, rcpt := keystore(t, ocikp, typ)
			_, unwrap := requests(t, ocikp, ks, rcpt)
			for _, args := range [][]string{
				{"keyprovider", "--name", "ocikp", "--keystore", ks},
				{"--keystore=" + ks, "keyprovider", "-name=ocikp"},
				{"--keystore", "/elsewhere", "keyprovider", "--keystore", ks},
				{"keyprovider"},
				{},
			} {
				env := []string{"OCIKP_KEYSTORE=" + ks}
				want := runBin(t, ocikp, env, unwrap, args...)
				if want.code != 0 {
					t.Fatalf("ocikp %q: %s", args, want.stderr)
				}
				for _, bin := range []string{fast, lone} {
					if got := runBin(t, bin, env, unwrap, args...); got != want {
						t.Errorf("%s %q:\n got %+v\nwant %+v", bin, args, got, want)
					}
				}
			}
		})
	}
}

// What ocikp-unwrap hands to ocikp: the result is ocikp's (stdout, stderr,
// exit code), and without an ocikp beside it the hand-over fails, which
// shows that it was one. Errors in reading the request it prints itself,
// as ocikp does.
func TestHandsTheRestToOcikp(t *testing.T) {
	dir, lone := binaries(t)
	ocikp, fast := filepath.Join(dir, "ocikp"), filepath.Join(dir, "ocikp-unwrap")
	ks, rcpt := keystore(t, ocikp, "p256")
	otherKS, _ := keystore(t, ocikp, "p256")
	wrap, unwrap := requests(t, ocikp, ks, rcpt)
	named := bytes.Replace(unwrap, []byte(`"RW5hYmxlZA=="`), []byte(`"aw=="`), 1) // "Enabled" → "k"
	if bytes.Equal(named, unwrap) {
		t.Fatal("no Enabled value to replace")
	}
	huge := append([]byte(`{"op":"keyunwrap","x":"`), bytes.Repeat([]byte("a"), protocol.MaxRequestSize)...)
	big := append([]byte(`{"op":"keyunwrap","x":"`), bytes.Repeat([]byte("a"), 100<<10)...)
	kp := []string{"keyprovider", "--name", "ocikp", "--keystore", ks}
	for _, c := range []struct {
		what   string
		args   []string
		env    []string
		stdin  []byte
		itself bool // ocikp's error, which ocikp-unwrap prints as ocikp does
	}{
		{"a layer for another keystore's key", []string{"keyprovider", "--name", "ocikp", "--keystore", otherKS}, nil, unwrap, false},
		{"a key named in the request", kp, nil, named, false},
		{"malformed JSON", kp, nil, unwrap[:len(unwrap)/2], false},
		{"an empty request", kp, nil, []byte{}, false},
		{"a request over ocikp's bound", kp, nil, huge, true},
		{"a request over a pipe's size", kp, nil, big, false},
		{"a flag it does not read", append(kp, "--allow-classical"), nil, unwrap, false},
		{"an unknown flag", append(kp, "--bogus"), nil, unwrap, false},
		{"a positional argument", append(kp, "extra"), nil, unwrap, false},
		{"another command", []string{"help"}, nil, nil, false},
		{"version: its own build's, here ocikp's", []string{"version"}, nil, nil, true},
		{"version with a flag", []string{"version", "--help"}, nil, nil, false},
		{"help", []string{"keyprovider", "--help"}, nil, nil, false},
		{"a global flag it does not read", []string{"-v"}, nil, nil, false},
		{"--keystore without its value", []string{"keyprovider", "--keystore"}, nil, unwrap, false},
	} {
		t.Run(c.what, func(t *testing.T) {
			want := runBin(t, ocikp, c.env, c.stdin, c.args...)
			if got := runBin(t, fast, c.env, c.stdin, c.args...); got != want {
				t.Errorf("ocikp-unwrap:\n got %+v\nwant %+v", got, want)
			}
			got := runBin(t, lone, c.env, c.stdin, c.args...)
			if c.itself {
				if got != want {
					t.Errorf("alone:\n got %+v\nwant %+v", got, want)
				}
			} else if got.code != 1 || !strings.Contains(got.stderr, "could not hand the request to ocikp") {
				t.Errorf("alone, it answered itself: %+v", got)
			}
		})
	}
	t.Run("a read error", func(t *testing.T) {
		// A directory as stdin: read fails with EISDIR, which ocikp
		// reports; ocikp-unwrap reports it alike, with nothing to hand on.
		for _, bin := range []string{ocikp, fast, lone} {
			cmd := exec.Command(bin, kp...)
			d, err := os.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			cmd.Stdin = d
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || string(out) != "ocikp: error: reading request: read /dev/stdin: is a directory\n" {
				t.Errorf("%s: %v %q", bin, err, out)
			}
		}
	})
	t.Run("a terminal as stdin", func(t *testing.T) {
		// ocikp refuses to wait on a terminal; ocikp-unwrap must not read
		// it either, but hand over at once.
		pts := terminal(t)
		for _, bin := range []string{ocikp, fast} {
			cmd := exec.Command(bin, kp...)
			cmd.Stdin = pts
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "which is a terminal") {
				t.Errorf("%s: %v %q", bin, err, out)
			}
		}
		cmd := exec.Command(lone, kp...)
		cmd.Stdin = pts
		if out, _ := cmd.CombinedOutput(); !strings.Contains(string(out), "could not hand the request to ocikp") {
			t.Errorf("alone: %q", out)
		}
	})
	t.Run("a wrap", func(t *testing.T) {
		// Answered itself: random, so held to a reply that unwraps.
		for _, bin := range []string{fast, lone} {
			got := runBin(t, bin, nil, wrap, kp...)
			if got.code != 0 || !strings.HasPrefix(got.stdout, `{"keywrapresults":`) || got.stderr != "" {
				t.Fatalf("%s: %+v", bin, got)
			}
			var reply struct {
				R struct{ Annotation []byte } `json:"keywrapresults"`
			}
			json.Unmarshal([]byte(got.stdout), &reply)
			un, _ := json.Marshal(&protocol.Request{Op: protocol.OpKeyUnwrap, KeyUnwrapParams: &protocol.KeyUnwrapParams{
				DC: &protocol.DecryptConfig{Parameters: map[string][][]byte{}}, Annotation: reply.R.Annotation}})
			if r := runBin(t, ocikp, nil, un, kp...); r.code != 0 || !strings.Contains(r.stdout, "b3B0c2RhdGE=") {
				t.Errorf("%s's wrap does not unwrap with ocikp: %+v", bin, r)
			}
		}
		// Handed over: a key name (the keystore is ocikp's to read), and
		// no --name.
		named := bytes.Replace(wrap, []byte(base64.StdEncoding.EncodeToString([]byte(rcpt))), []byte(base64.StdEncoding.EncodeToString([]byte("k"))), 1)
		for _, c := range []struct {
			args  []string
			stdin []byte
		}{{kp, named}, {[]string{"keyprovider", "--keystore", ks}, wrap}} {
			if got := runBin(t, fast, nil, c.stdin, c.args...); got.code != 0 || got.stderr != "" {
				t.Errorf("%q: %+v", c.args, got)
			}
			if got := runBin(t, lone, nil, c.stdin, c.args...); got.code != 1 {
				t.Errorf("%q alone, it wrapped: %+v", c.args, got)
			}
		}
	})
	t.Run("OCIKP_LOG", func(t *testing.T) {
		env := []string{"OCIKP_LOG=debug"}
		got := runBin(t, fast, env, unwrap, kp...)
		if got.code != 0 || !strings.Contains(got.stderr, "unwrap") {
			t.Errorf("no log of ocikp's: %+v", got)
		}
		if got := runBin(t, lone, env, unwrap, kp...); got.code != 1 {
			t.Errorf("alone, it answered: %+v", got)
		}
	})
}

// Where memfd_create is refused, ocikp runs as a child fed through a pipe:
// a request far over a pipe's capacity arrives whole, and the child's
// exit code is the result.
func TestSpawnFeedsAPipe(t *testing.T) {
	dir, _ := binaries(t)
	ocikp := filepath.Join(dir, "ocikp")
	big := append([]byte(`{"op":"keyunwrap","x":"`), bytes.Repeat([]byte("a"), 900<<10)...)
	errFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	ws, err := spawn(ocikp, []string{ocikp, "keyprovider"}, big, errFile.Fd(), errFile.Fd())
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(errFile.Name())
	// Unterminated JSON, read to its end: the child saw all 900 KiB.
	if ws.ExitStatus() != 1 || !strings.Contains(string(out), "malformed key provider request") {
		t.Errorf("exit %d: %s", ws.ExitStatus(), out)
	}
	ks, rcpt := keystore(t, ocikp, "p256")
	_, unwrap := requests(t, ocikp, ks, rcpt)
	outFile, _ := os.Create(filepath.Join(t.TempDir(), "stdout"))
	defer outFile.Close()
	ws, err = spawn(ocikp, []string{ocikp, "keyprovider", "--keystore", ks}, unwrap, outFile.Fd(), errFile.Fd())
	if err != nil || ws.ExitStatus() != 0 {
		t.Fatalf("%v, exit %d", err, ws.ExitStatus())
	}
	if reply, _ := os.ReadFile(outFile.Name()); !strings.HasPrefix(string(reply), `{"keyunwrapresults":`) {
		t.Errorf("reply %.80q", reply)
	}
}

// terminal opens a pseudo-terminal and returns its terminal end.
func terminal(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return pts
}

// ocikp doctor passes a config that runs ocikp-unwrap beside the ocikp of
// its build, and fails one whose ocikp-unwrap comes from another build,
// since its answers would not be that ocikp's.
func TestDoctorComparesBuilds(t *testing.T) {
	dir, _ := binaries(t)
	ocikp := filepath.Join(dir, "ocikp")
	ks, _ := keystore(t, ocikp, "p256")
	mine := runBin(t, ocikp, nil, nil, "version").stdout
	if runBin(t, filepath.Join(dir, "ocikp-unwrap"), nil, nil, "version").stdout != mine {
		t.Fatal("ocikp-unwrap version differs from ocikp's, of the same build")
	}
	doctor := func(unwrap string) string {
		t.Helper()
		cfg := filepath.Join(t.TempDir(), "ocicrypt.json")
		data, _ := json.Marshal(map[string]any{"key-providers": map[string]any{"ocikp": map[string]any{
			"cmd": map[string]any{"path": unwrap, "args": []string{"keyprovider", "--name", "ocikp", "--keystore", ks}}}}})
		if err := os.WriteFile(cfg, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r := runBin(t, ocikp, []string{"OCICRYPT_KEYPROVIDER_CONFIG=" + cfg}, nil, "--keystore", ks, "doctor")
		if strings.Contains(r.stdout, "no provider of the config runs ocikp") {
			t.Errorf("doctor did not take %s for ocikp:\n%s", unwrap, r.stdout)
		}
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.Contains(l, "provider ocikp ") {
				return l
			}
		}
		t.Fatalf("doctor printed no line for the provider:\n%s%s", r.stdout, r.stderr)
		return ""
	}
	if l := doctor(filepath.Join(dir, "ocikp-unwrap")); !strings.HasPrefix(l, "ok ") {
		t.Errorf("the same build: %s", l)
	}

	// The other build: this ocikp-unwrap with its commit stamped (go
	// build -buildvcs=true, as a build from a checkout is), beside this
	// ocikp without (binaries builds with the environment's GOFLAGS), or
	// the other way round.
	vcs := "-buildvcs=true"
	if !strings.Contains(mine, "commit unknown") {
		vcs = "-buildvcs=false"
	}
	stale := t.TempDir()
	data, err := os.ReadFile(ocikp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "ocikp"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("go", "build", vcs, "-o", filepath.Join(stale, "ocikp-unwrap"), "github.com/ocikp/ocikp/cmd/ocikp-unwrap").CombinedOutput(); err != nil {
		if vcs == "-buildvcs=true" && bytes.Contains(out, []byte("buildvcs")) {
			t.Skipf("no checkout to stamp a commit from, so no other build to make: %s", out)
		}
		t.Fatalf("go build %s: %v\n%s", vcs, err, out)
	}
	other := runBin(t, filepath.Join(stale, "ocikp-unwrap"), nil, nil, "version").stdout
	if other == mine {
		t.Fatalf("go build %s made the same version: %s", vcs, other)
	}
	l := doctor(filepath.Join(stale, "ocikp-unwrap"))
	if !strings.HasPrefix(l, "fail ") || !strings.Contains(l, "another build") || !strings.Contains(l, strings.TrimSpace(other)) || !strings.Contains(l, strings.TrimSpace(mine)) {
		t.Errorf("an ocikp-unwrap of another build: %s", l)
	}
}
