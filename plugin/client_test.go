package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocikp/ocikp/envelope"
)

// The main goroutine keeps the main thread, which Go never ends: so a
// goroutine that locks its thread and returns really ends that thread
// (TestClientProcessOutlivesTheCallersThread).
func init() { runtime.LockOSThread() }

// The test binary is also a plugin: with OCIKP_TEST_PLUGIN set it serves
// probe on stdin/stdout, so the client is tested against real processes.
func TestMain(m *testing.M) {
	if os.Getenv("OCIKP_TEST_PLUGIN") == "1" {
		settings, _ := os.ReadFile(os.Getenv("OCIKP_TEST_SETTINGS")) // read once, at start, as the KMS plugins do
		if err := Serve(os.Stdin, os.Stdout, probe{settings: string(settings)}); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// probe answers unwraps by stanza type: "pid" its process id, "settings"
// what its settings file held when it started, "crash" by dying, "meet" by
// waiting (bounded) until Key-many processes have arrived in directory KID.
type probe struct{ settings string }

func (p probe) Unwrap(s *envelope.Stanza) ([]byte, error) {
	switch s.Type {
	case "pid":
		return []byte(strconv.Itoa(os.Getpid())), nil
	case "settings":
		return []byte(p.settings), nil
	case "huge":
		return make([]byte, maxLine), nil // over maxLine once in base64
	case "env":
		return []byte(strings.Join(os.Environ(), "\n")), nil
	case "hang":
		time.Sleep(time.Hour)
	case "crash":
		fmt.Fprintln(os.Stderr, "probe: crashing as asked")
		os.Exit(3)
	case "meet":
		os.WriteFile(filepath.Join(s.KID, strconv.Itoa(os.Getpid())), nil, 0o600)
		want, _ := strconv.Atoi(string(s.Key))
		for range 500 {
			if ents, _ := os.ReadDir(s.KID); len(ents) >= want {
				return []byte(strconv.Itoa(os.Getpid())), nil
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil, errors.New("the others did not arrive")
	}
	return nil, envelope.ErrIncorrectIdentity
}
func (probe) Wrap(string, []byte) (*envelope.Stanza, error) { return nil, errors.New("no") }
func (probe) OpenLegacy([]byte) ([]byte, error)             { return nil, envelope.ErrIncorrectIdentity }
func (probe) PublicKey(string) (*PublicKey, error)          { return nil, errors.New("no") }

func probeClient(t *testing.T) *Client {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, "ocikp-plugin-probe")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvDir, dir)
	c := &Client{Name: "ocikp-plugin-probe", Env: []string{"OCIKP_TEST_PLUGIN=1"}, EnvAllow: []string{"OCIKP_TEST_*", "PROBE_CLOUD_*"}}
	t.Cleanup(func() { c.Close(true) })
	return c
}

func call(t *testing.T, c *Client, typ, kid, key string) string {
	t.Helper()
	resp, err := c.Call(context.Background(), &Request{Op: OpUnwrap, Stanza: &Stanza{Type: typ, KID: kid, Key: []byte(key)}})
	if err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
	return string(resp.FileKey)
}

func TestClientKeepsOneProcessWarm(t *testing.T) {
	c := probeClient(t)
	first := call(t, c, "pid", "", "")
	for range 3 {
		if pid := call(t, c, "pid", "", ""); pid != first {
			t.Fatalf("a second process (%s, then %s) for sequential calls", first, pid)
		}
	}
	if n := c.Running(); n != 1 {
		t.Fatalf("%d processes running", n)
	}
}

// Concurrent calls run on up to MaxProcs processes at once: three calls that
// each wait for all three to arrive can only succeed side by side.
func TestClientRunsProcessesSideBySide(t *testing.T) {
	c := probeClient(t)
	c.MaxProcs = 3
	meet := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Call(context.Background(), &Request{Op: OpUnwrap, Stanza: &Stanza{Type: "meet", KID: meet, Key: []byte("3")}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Running(); n != 3 {
		t.Fatalf("%d processes running, want 3", n)
	}
	// More calls than processes wait for one to be free; none starts a fourth.
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); call(t, c, "pid", "", "") }()
	}
	wg.Wait()
	if n := c.Running(); n != 3 {
		t.Fatalf("%d processes running after 10 more calls, want 3", n)
	}
}

func TestClientReplacesAProcessThatDied(t *testing.T) {
	c := probeClient(t)
	before := call(t, c, "pid", "", "")
	_, err := c.Call(context.Background(), &Request{Op: OpUnwrap, Stanza: &Stanza{Type: "crash"}})
	if err == nil || !strings.Contains(err.Error(), "ocikp-plugin-probe stopped") || !strings.Contains(err.Error(), "probe: crashing as asked") {
		t.Fatalf("crash reported as %v", err)
	}
	after := call(t, c, "pid", "", "")
	if after == before {
		t.Fatal("the dead process was used again")
	}
	if n := c.Running(); n != 1 {
		t.Fatalf("%d processes running", n)
	}
}

// Restart makes the next call start a process that reads its settings anew;
// the old process ends.
func TestClientRestartRereadsSettings(t *testing.T) {
	c := probeClient(t)
	settings := filepath.Join(t.TempDir(), "settings")
	os.WriteFile(settings, []byte("v1"), 0o600)
	c.Env = append(c.Env, "OCIKP_TEST_SETTINGS="+settings)
	oldPID, _ := strconv.Atoi(call(t, c, "pid", "", ""))
	os.WriteFile(settings, []byte("v2"), 0o600)
	if got := call(t, c, "settings", "", ""); got != "v1" {
		t.Fatalf("a warm process read %q", got)
	}
	c.Restart()
	if got := call(t, c, "settings", "", ""); got != "v2" {
		t.Fatalf("after Restart: %q", got)
	}
	if n := c.Running(); n != 1 {
		t.Fatalf("%d processes running after Restart", n)
	}
	for i := 0; syscall.Kill(oldPID, 0) == nil; i++ {
		if i > 200 {
			t.Fatal("the old process did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientNotInstalled(t *testing.T) {
	t.Setenv(EnvDir, t.TempDir())
	c := &Client{Name: "ocikp-plugin-none"}
	for range 2 {
		if _, err := c.Call(context.Background(), &Request{Op: OpUnwrap, Stanza: &Stanza{Type: "pid"}}); err == nil {
			t.Fatal("a missing plugin answered")
		}
	}
	if n := c.Running(); n != 0 {
		t.Fatalf("%d processes counted for a plugin that never started", n)
	}
}

// A process killed while idle costs no call: the request goes to a new one.
func TestClientSurvivesAnIdleProcessKilled(t *testing.T) {
	c := probeClient(t)
	pid, _ := strconv.Atoi(call(t, c, "pid", "", ""))
	syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; syscall.Kill(pid, 0) == nil && i < 200; i++ {
		time.Sleep(10 * time.Millisecond) // until the kernel has it dead (a zombie still answers kill 0)
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
			break
		}
	}
	if got := call(t, c, "pid", "", ""); got == strconv.Itoa(pid) {
		t.Fatal("answered by the killed process")
	}
	if n := c.Running(); n != 1 {
		t.Fatalf("%d processes running", n)
	}
}

// A reply over the protocol's line limit fails its call; the process, which
// would block writing the rest, is ended and the next call gets a new one.
func TestClientRefusesAnOversizedReply(t *testing.T) {
	c := probeClient(t)
	before := call(t, c, "pid", "", "")
	_, err := c.Call(context.Background(), &Request{Op: OpUnwrap, Stanza: &Stanza{Type: "huge"}})
	if err == nil || !strings.Contains(err.Error(), "line longer than") {
		t.Fatalf("oversized reply: %v", err)
	}
	if after := call(t, c, "pid", "", ""); after == before {
		t.Fatal("the process that sent the oversized reply was used again")
	}
	if n := c.Running(); n != 1 {
		t.Fatalf("%d processes running", n)
	}
}

// A call whose deadline passes ends quickly; its process, perhaps stuck on
// a KMS that never answers, is killed, and the next call gets a new one.
func TestClientDeadlineKillsTheProcess(t *testing.T) {
	c := probeClient(t)
	before := call(t, c, "pid", "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Call(ctx, &Request{Op: OpUnwrap, Stanza: &Stanza{Type: "hang"}})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "that process was ended") {
		t.Fatalf("hung call: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the hung call returned after %v", d)
	}
	old, _ := strconv.Atoi(before)
	if syscall.Kill(old, 0) == nil {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", old)); err != nil || !strings.Contains(string(b), ") Z ") {
			t.Fatal("the hung process still runs")
		}
	}
	if after := call(t, c, "pid", "", ""); after == before {
		t.Fatal("the killed process answered")
	}
	if n := c.Running(); n != 1 {
		t.Fatalf("%d processes running", n)
	}
}

// With every process busy, a caller waits no longer than its deadline.
func TestClientWaitEndsWithTheDeadline(t *testing.T) {
	c := probeClient(t)
	c.MaxProcs = 1
	long, cancelLong := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancelLong()
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(long, &Request{Op: OpUnwrap, Stanza: &Stanza{Type: "hang"}})
		done <- err
	}()
	for c.Running() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Call(short, &Request{Op: OpUnwrap, Stanza: &Stanza{Type: "pid"}}); err == nil || !strings.Contains(err.Error(), "every process busy") {
		t.Fatalf("waiting call: %v", err)
	}
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung call: %v", err)
	}
}

// A plugin inherits only the variables it is allowed: never ocikp's
// passphrases or another cloud's credentials.
func TestClientFiltersEnvironment(t *testing.T) {
	c := probeClient(t)
	t.Setenv("OCIKP_PASSPHRASE", "hunter2")
	t.Setenv("OCIKP_PASSPHRASE_FILE", "/secret")
	t.Setenv("VAULT_TOKEN", "s.secret")
	t.Setenv("PROBE_CLOUD_TOKEN", "mine")
	t.Setenv("SSL_CERT_FILE", "/ca.pem")
	env := call(t, c, "env", "", "")
	for _, bad := range []string{"hunter2", "OCIKP_PASSPHRASE", "s.secret"} {
		if strings.Contains(env, bad) {
			t.Errorf("the plugin saw %q", bad)
		}
	}
	for _, good := range []string{"PROBE_CLOUD_TOKEN=mine", "SSL_CERT_FILE=/ca.pem", "OCIKP_TEST_PLUGIN=1", "PATH="} {
		if !strings.Contains(env, good) {
			t.Errorf("the plugin did not get %q", good)
		}
	}
}

// A process started from a goroutine whose thread then ends (a goroutine
// locked to its thread that returns ends the thread) keeps running: on
// Linux the parent-death signal follows the thread that forked, so the
// client starts processes from a thread of its own.
func TestClientProcessOutlivesTheCallersThread(t *testing.T) {
	c := probeClient(t)
	first := make(chan string, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		resp, err := c.Call(context.Background(), &Request{Op: OpUnwrap, Stanza: &Stanza{Type: "pid"}})
		if err != nil {
			first <- err.Error()
			return
		}
		first <- string(resp.FileKey)
	}()
	pid := <-first
	time.Sleep(200 * time.Millisecond) // for the thread to end, and a signal to land
	if again := call(t, c, "pid", "", ""); again != pid {
		t.Fatalf("the process (%s) did not survive its caller's thread; a new one (%s) answered", pid, again)
	}
}
