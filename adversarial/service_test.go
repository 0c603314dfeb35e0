//go:build linux

package adversarial

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocikp/ocikp/envelope"
)

// A gRPC client names files as decryption keys: a real key file outside
// the keystore, /etc/passwd, a FIFO, a directory, a link. The service
// refuses each without opening it (inotify sees no open), and 1,000 such
// calls leave its thread count where it was.
func TestServiceReadsNoFileAClientNames(t *testing.T) {
	ks := t.TempDir()
	e := env(t, ks)
	if _, stderr, code := exe(t, nil, e, "keygen", "alice"); code != 0 {
		t.Fatal(stderr)
	}
	outside := t.TempDir()
	keyFile := filepath.Join(outside, "bob.key")
	if _, stderr, code := exe(t, nil, env(t, outside), "keygen", "bob"); code != 0 {
		t.Fatal(stderr)
	}
	fifo := filepath.Join(outside, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(outside, "dir")
	os.Mkdir(dir, 0o700)
	link := filepath.Join(ks, "link.key")
	os.Symlink(keyFile, link)

	watch, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Skip("no inotify:", err)
	}
	defer unix.Close(watch)
	for _, p := range []string{keyFile, fifo, dir} {
		if _, err := unix.InotifyAddWatch(watch, p, unix.IN_OPEN|unix.IN_ACCESS); err != nil {
			t.Fatal(err)
		}
	}

	s := serve(t, ks, e)
	ann := layer(&envelope.Stanza{Type: "p256", Tag: random(4), Enc: random(65), Key: random(48)})
	paths := []string{keyFile, "/etc/passwd", fifo, dir, link, "../" + filepath.Base(outside) + "/bob.key"}
	for _, p := range paths {
		msg := s.mustFail(t, "unwrap", unwrapRequest(ann, p))
		mustContain(t, "refusal of "+p, msg, "the service takes keystore key names as decryption keys, not file paths")
		if strings.Contains(msg, ks) {
			t.Fatalf("the refusal names the keystore: %s", msg)
		}
	}
	threads := proc(t, s.pid, "Threads")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range 1000 {
		if _, _, err := s.call(ctx, "unwrap", unwrapRequest(ann, paths[i%len(paths)])); err == nil {
			t.Fatal("a path was accepted")
		}
	}
	after := proc(t, s.pid, "Threads")
	t.Logf("1000 calls naming files: %v; threads %d before, %d after", time.Since(start).Round(time.Millisecond), threads, after)
	if after > threads+4 {
		t.Fatalf("threads grew from %d to %d", threads, after)
	}
	buf := make([]byte, 4096)
	if n, _ := unix.Read(watch, buf); n > 0 {
		t.Fatalf("the service opened a file a client named (%d bytes of inotify events)", n)
	}
}

// A KMS that never answers, and 1,000 calls whose client gives up after
// 100 ms: the service's work ends with each call (the plugin process is
// killed and replaced), so goroutines, threads and memory stay bounded,
// and the in-flight gauge, which counts the work, returns to zero.
func TestHungBackendStaysBounded(t *testing.T) {
	// A Vault that accepts connections and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held.Add(1)
			go func() { defer held.Done(); <-stop; c.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close(); close(stop); held.Wait() })

	ks := t.TempDir()
	e := env(t, ks, "VAULT_ADDR=http://"+l.Addr().String(), "VAULT_TOKEN=s.tok", "OCIKP_KMS_TIMEOUT=60s")
	const procs, concurrent = 4, 16
	s := serve(t, ks, e, "--kms-procs", strconv.Itoa(procs), "--max-concurrent", strconv.Itoa(concurrent), "--metrics", "127.0.0.1:0")
	ann := layer(&envelope.Stanza{Type: "hashivault", KID: "hashivault://layers", Key: []byte("vault:v1:AAAA")})
	base := s.sample(t)
	t.Logf("before: %s", base)

	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := sample{}
	start := time.Now()
	calls := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				s.call(ctx, "unwrap", unwrapRequest(ann))
				cancel()
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				now := s.sample(t)
				mu.Lock()
				peak = peak.max(now)
				mu.Unlock()
			}
		}
	}()
	for i := range 1000 {
		calls <- i
	}
	close(calls)
	wg.Wait()
	close(done)
	elapsed := time.Since(start)
	// The work of the last calls ends within moments of their deadline.
	var end sample
	for i := 0; i < 50; i++ {
		if end = s.sample(t); end.inFlight == 0 && end.plugins <= procs {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("1000 calls with a 100 ms deadline against a KMS that never answers: %v", elapsed.Round(time.Millisecond))
	t.Logf("peak during: %s", peak)
	t.Logf("after:  %s", end)
	if peak.inFlight > concurrent {
		t.Errorf("in flight peaked at %d, above --max-concurrent %d", peak.inFlight, concurrent)
	}
	if peak.plugins > procs+1 { // +1: a killed process not yet reaped
		t.Errorf("%d plugin processes at once, above --kms-procs %d", peak.plugins, procs)
	}
	if end.inFlight != 0 || end.plugins > procs {
		t.Errorf("after the calls: %d in flight, %d plugin processes", end.inFlight, end.plugins)
	}
	if end.goroutines > base.goroutines+50 || end.threads > base.threads+8 || end.rssKB > base.rssKB+64<<10 {
		t.Errorf("not bounded: before %s, after %s", base, end)
	}
}

type sample struct {
	goroutines, threads, rssKB, inFlight, plugins int
}

func (s sample) String() string {
	return fmt.Sprintf("goroutines %d, threads %d, RSS %d KiB, in flight %d, plugin processes %d", s.goroutines, s.threads, s.rssKB, s.inFlight, s.plugins)
}

func (s sample) max(o sample) sample {
	return sample{max(s.goroutines, o.goroutines), max(s.threads, o.threads), max(s.rssKB, o.rssKB), max(s.inFlight, o.inFlight), max(s.plugins, o.plugins)}
}

// sample reads the service's metrics, /proc, and its children.
func (s *service) sample(t *testing.T) sample {
	t.Helper()
	out := sample{threads: proc(t, s.pid, "Threads"), rssKB: proc(t, s.pid, "VmRSS")}
	resp, err := http.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_goroutines":
			out.goroutines = int(v)
		case "ocikp_requests_in_flight":
			out.inFlight = int(v)
		}
	}
	out.plugins = children(s.pid)
	return out
}

// children counts the processes whose parent is pid, from /proc.
func children(pid int) int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	n := 0
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		if f := strings.Fields(rest); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n++
		}
	}
	return n
}

// A plaintext service must really listen on loopback: with "localhost"
// mapped elsewhere in /etc/hosts (a private mount namespace), it refuses
// to start. Metrics on a non-loopback address need an explicit flag.
func TestListenAddressesAreChecked(t *testing.T) {
	ks := t.TempDir()
	e := env(t, ks)
	t.Run("localhost mapped elsewhere", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("a private mount namespace needs root")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("no unshare")
		}
		hosts := filepath.Join(t.TempDir(), "hosts")
		os.WriteFile(hosts, []byte("0.0.0.0 localhost\n"), 0o644)
		script := fmt.Sprintf("mount --bind %s /etc/hosts && exec %s serve --listen localhost:0", hosts, filepath.Join(bin, "ocikp"))
		cmd := exec.Command(unshare, "-m", "--propagation", "private", "sh", "-c", script)
		cmd.Env = e
		out, err := runFor(cmd, 10*time.Second)
		if err == nil {
			t.Fatalf("served plaintext with localhost mapped to 0.0.0.0:\n%s", out)
		}
		mustContain(t, "output", out, "ocikp: error: refusing plaintext: --listen localhost:0 bound ", "which is not a loopback address")
		// The control: with the machine's own /etc/hosts it starts.
		cmd = exec.Command(filepath.Join(bin, "ocikp"), "serve", "--listen", "localhost:0")
		cmd.Env = e
		if out, err := runFor(cmd, 2*time.Second); err != errStillRunning {
			t.Fatalf("with the real /etc/hosts: %v\n%s", err, out)
		}
	})
	t.Run("metrics on every interface", func(t *testing.T) {
		_, stderr, code := exe(t, nil, e, "serve", "--listen", "127.0.0.1:0", "--metrics", ":0")
		if code != 1 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		mustContain(t, "stderr", stderr, "refusing --metrics on :0", "--metrics-insecure")
		cmd := exec.Command(filepath.Join(bin, "ocikp"), "serve", "--listen", "127.0.0.1:0", "--metrics", ":0", "--metrics-insecure")
		cmd.Env = e
		if out, err := runFor(cmd, 2*time.Second); err != errStillRunning {
			t.Fatalf("with --metrics-insecure: %v\n%s", err, out)
		}
	})
}

var errStillRunning = fmt.Errorf("still running")

// runFor runs cmd for at most d: its output and exit error, or
// errStillRunning (and it is stopped) if it was still running.
func runFor(cmd *exec.Cmd, d time.Duration) (string, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(d):
		cmd.Process.Signal(os.Interrupt)
		<-done
		return out.String(), errStillRunning
	}
}
