package plugin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
)

// maxLine bounds a line of the protocol, a request or a reply.
const maxLine = 1 << 20

// Client runs a plugin executable, started on first use. Each process
// answers one request at a time; a Client runs up to MaxProcs of them for
// concurrent calls (the service), reuses idle ones, replaces one that died,
// and after Restart starts new ones (new settings, new credentials).
type Client struct {
	// Name is the executable's name, e.g. "ocikp-plugin-gcpkms".
	Name string
	// Env is added to the plugin's environment.
	Env []string
	// EnvAllow names the variables of ocikp's environment the plugin
	// inherits, beside the common ones (PATH, HOME, locale, proxies, CA
	// files, OCIKP_KMS_*): exact names, or prefixes ending in '*'. Nothing
	// else passes, so a plugin never sees ocikp's own secrets
	// (OCIKP_PASSPHRASE*) or another cloud's credentials.
	EnvAllow []string
	// MaxProcs bounds the processes run at once (0 means 1).
	MaxProcs int

	mu      sync.Mutex
	changed chan struct{} // closed (and replaced) when a process becomes idle or ends
	idle    []*proc
	running int // processes started and not yet ended, idle or busy
	gen     int // bumped by Restart and Close: older processes end after their call
}

// notify wakes the callers waiting in acquire; c.mu is held.
func (c *Client) notify() {
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}

// proc is one running plugin process.
type proc struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *tailBuffer
	gen    int
	reused bool // it has answered before
}

// EnvDir names the environment variable of a directory searched for
// plugins before any other.
const EnvDir = "OCIKP_PLUGIN_DIR"

// Find returns the plugin's path: in $OCIKP_PLUGIN_DIR if set, else next to
// the running executable, else on PATH.
func (c *Client) Find() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return filepath.Join(d, c.Name), nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), c.Name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(c.Name); err == nil {
		return p, nil
	}
	return "", hint.Wrap(fmt.Errorf("%s is not installed: it is looked for next to ocikp and on PATH", c.Name),
		"install it beside ocikp (go install ./cmd/...)", "or set "+EnvDir+" to the directory that holds it")
}

func (c *Client) start(gen int) (*proc, error) {
	path, err := c.Find()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path)
	cmd.Env = append(FilterEnv(os.Environ(), c.EnvAllow), c.Env...)
	p := &proc{cmd: cmd, stderr: &tailBuffer{max: 4096}, gen: gen}
	cmd.Stderr = p.stderr
	if p.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	endWithParent(cmd)
	if err := startPinned(cmd); err != nil {
		return nil, fmt.Errorf("starting %s: %w", c.Name, err)
	}
	p.out = bufio.NewReaderSize(out, 64<<10)
	return p, nil
}

// spawner is a goroutine locked to its thread for the life of the process,
// which starts every plugin process: Linux's parent-death signal follows
// the thread that forked, and Go ends a thread when a goroutine locked to
// it returns, so a plugin started from any thread could be killed in the
// middle of its work because some other code ended that thread. One
// thread, started with the first plugin.
var spawner struct {
	once sync.Once
	reqs chan spawn
}

type spawn struct {
	cmd  *exec.Cmd
	done chan error
}

func startPinned(cmd *exec.Cmd) error {
	if !pinThread {
		return cmd.Start()
	}
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawn)
		go func() {
			runtime.LockOSThread() // never unlocked; the goroutine never returns
			for s := range spawner.reqs {
				s.done <- s.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawner.reqs <- spawn{cmd, done}
	return <-done
}

// acquire returns an idle process, or starts one if fewer than MaxProcs
// run, or waits for one to be freed until ctx ends.
func (c *Client) acquire(ctx context.Context) (*proc, error) {
	for {
		c.mu.Lock()
		if c.changed == nil {
			c.notify()
		}
		if n := len(c.idle); n > 0 {
			p := c.idle[n-1]
			c.idle = c.idle[:n-1]
			c.mu.Unlock()
			return p, nil
		}
		if c.running < max(c.MaxProcs, 1) {
			c.running++
			gen := c.gen
			c.mu.Unlock()
			p, err := c.start(gen)
			if err != nil {
				c.mu.Lock()
				c.running--
				c.notify()
				c.mu.Unlock()
			}
			return p, err
		}
		wait := c.changed
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: every process busy until the request's deadline: %w", c.Name, ctx.Err())
		}
	}
}

// release returns a process after a call: to the idle list if it is alive
// and current, else it ends.
func (c *Client) release(p *proc, alive bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if alive && p.gen == c.gen {
		p.reused = true
		c.idle = append(c.idle, p)
	} else {
		c.running--
		if alive {
			p.end(false)
		}
	}
	c.notify()
}

// Call sends one request to a process of the plugin and reads its reply. A
// process that stops answering fails this call only: the next call starts
// a new one. If a process that had been idle turns out dead (killed while
// waiting), the request goes once to a new process: every request is
// idempotent for the caller. When ctx ends first, the process is killed
// (it may be stuck on a KMS that never answers) and replaced by the next
// call.
func (c *Client) Call(ctx context.Context, req *Request) (*Response, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	req.V = ProtocolVersion
	line, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	line = append(line, '\n')
	var reply []byte
	for attempt := 0; ; attempt++ {
		p, err := c.acquire(ctx)
		if err != nil {
			return nil, err
		}
		reply, err = p.roundTrip(ctx, line)
		if err == nil {
			c.release(p, true)
			break
		}
		err = c.died(p, err)
		c.release(p, false)
		if !p.reused || attempt > 0 || ctx.Err() != nil {
			return nil, err
		}
	}
	var resp Response
	if err := json.Unmarshal(reply, &resp); err != nil {
		return nil, fmt.Errorf("%s: malformed reply", c.Name)
	}
	if resp.Error != nil {
		// Its text may quote a layer's kid: every place that prints an
		// error escapes it (safetext), so it is passed on as is.
		return nil, resp.Error
	}
	return &resp, nil
}

// errDeadline is a call whose context ended before the plugin answered.
type errDeadline struct{ err error }

func (e *errDeadline) Error() string { return e.err.Error() }
func (e *errDeadline) Unwrap() error { return e.err }

func (p *proc) roundTrip(ctx context.Context, line []byte) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { p.cmd.Process.Kill() })
	reply, err := p.exchange(line)
	if !stop() {
		// The deadline passed: the process was killed, whatever it said.
		return nil, &errDeadline{ctx.Err()}
	}
	return reply, err
}

func (p *proc) exchange(line []byte) ([]byte, error) {
	if _, err := p.in.Write(line); err != nil {
		return nil, err
	}
	reply, err := readLine(p.out)
	switch {
	case err == errLineTooLong:
		// It is still writing a reply nobody will read, so it would never
		// exit on its own: it is not waited for politely.
		p.cmd.Process.Kill()
	case err == nil && !bytes.HasSuffix(reply, []byte("\n")):
		err = io.ErrUnexpectedEOF // it ended in the middle of its reply
	}
	return reply, err
}

// died reports a process that stopped answering (err: what the pipe said),
// with its exit status and the end of its stderr.
func (c *Client) died(p *proc, err error) error {
	werr := p.end(true)
	var de *errDeadline
	if errors.As(err, &de) {
		return fmt.Errorf("%s: no answer within the request's deadline; that process was ended: %w", c.Name, de.err)
	}
	if err == errLineTooLong {
		return fmt.Errorf("%s: reply %w; that process was ended", c.Name, err)
	}
	if werr != nil {
		err = werr
	}
	if tail := strings.TrimSpace(p.stderr.String()); tail != "" {
		return fmt.Errorf("%s stopped (%v): %s", c.Name, err, lastLine(tail))
	}
	return fmt.Errorf("%s stopped: %v", c.Name, err)
}

// end closes the process's input, which tells a plugin to exit, and with
// wait waits for it; without, it is reaped in the background.
func (p *proc) end(wait bool) error {
	p.in.Close()
	if wait {
		return p.cmd.Wait()
	}
	go p.cmd.Wait()
	return nil
}

// Restart ends the idle processes now and busy ones after their call; the
// next call starts a process that reads its settings and credentials anew.
func (c *Client) Restart() { c.Close(false) }

// Close tells the idle processes to end (by closing their stdin) and, with
// wait, waits for them; busy ones end after their call. The exec provider
// does not wait: its caller waits for the provider's exit, and a plugin's
// shutdown (closing KMS connections) adds nothing the caller needs; the
// plugin ends on its own at end of input.
func (c *Client) Close(wait bool) error {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.gen++
	c.running -= len(idle)
	c.notify()
	c.mu.Unlock()
	var first error
	for _, p := range idle {
		if err := p.end(wait); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Running reports how many processes of the plugin run now.
func (c *Client) Running() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

func (e *Error) Error() string { return e.Message }

// Unwrap makes a "not_mine" error match envelope.ErrIncorrectIdentity.
func (e *Error) Unwrap() error {
	if e.Kind == KindNotMine {
		return envelope.ErrIncorrectIdentity
	}
	return nil
}

// Hinted returns the error with its hints attached for the CLI.
func (e *Error) hinted() error {
	if len(e.Hints) == 0 {
		return e
	}
	return hint.Wrap(e, e.Hints...)
}

// Recipient wraps file keys through a plugin.
type Recipient struct {
	Client *Client
	URL    string
	Ctx    context.Context // bounds the call (nil: none)
	// PostQuantumSafe says the KMS wraps with a symmetric key.
	PostQuantumSafe bool
}

// PostQuantum reports whether the KMS wraps with a symmetric key, which a
// quantum computer does not break.
func (r *Recipient) PostQuantum() bool { return r.PostQuantumSafe }

// Type names the recipient's kind: its key URL's scheme.
func (r *Recipient) Type() string {
	scheme, _, _ := strings.Cut(r.URL, "://")
	return scheme
}

// Wrap asks the plugin to wrap fileKey for the recipient.
func (r *Recipient) Wrap(fileKey []byte) (*envelope.Stanza, error) {
	resp, err := r.Client.Call(r.Ctx, &Request{Op: OpWrap, Recipient: r.URL, FileKey: fileKey})
	if err != nil {
		return nil, hinted(err)
	}
	if resp.Stanza == nil {
		return nil, fmt.Errorf("%s: wrap reply without a stanza", r.Client.Name)
	}
	return resp.Stanza.Envelope(), nil
}

// Identity unwraps the stanzas of the given types through a plugin. If
// KIDs is not empty, only stanzas with one of those key ids are tried.
type Identity struct {
	Client *Client
	Types  []string
	KIDs   []string
	Ctx    context.Context // bounds each call (nil: none)
}

// Matches reports whether the identity would send s to its plugin.
func (id *Identity) Matches(s *envelope.Stanza) bool {
	return contains(id.Types, s.Type) && (len(id.KIDs) == 0 || contains(id.KIDs, s.KID))
}

// Unwrap asks the plugin to unwrap a stanza of one of its types.
func (id *Identity) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if !id.Matches(s) {
		return nil, envelope.ErrIncorrectIdentity
	}
	resp, err := id.Client.Call(id.Ctx, &Request{Op: OpUnwrap, Stanza: FromEnvelope(s)})
	if err != nil {
		return nil, hinted(err)
	}
	return resp.FileKey, nil
}

// PublicKey asks the plugin for the public key of an asymmetric KMS key.
func (c *Client) PublicKey(ctx context.Context, recipient string) (*PublicKey, error) {
	resp, err := c.Call(ctx, &Request{Op: OpPublicKey, Recipient: recipient})
	if err != nil {
		return nil, hinted(err)
	}
	if resp.PublicKey == nil {
		return nil, fmt.Errorf("%s: pubkey reply without a key", c.Name)
	}
	return resp.PublicKey, nil
}

// OpenLegacy asks the plugin to open a legacy blob.
func (c *Client) OpenLegacy(ctx context.Context, blob []byte) ([]byte, error) {
	resp, err := c.Call(ctx, &Request{Op: OpOpenLegacy, Blob: blob})
	if err != nil {
		return nil, hinted(err)
	}
	return resp.Secret, nil
}

func hinted(err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.hinted()
	}
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// commonEnv passes to every plugin: what any program needs to run, reach
// a network through a proxy and verify TLS, and the KMS settings.
var commonEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TZ", "LANG", "LC_*", "XDG_*",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"GODEBUG", "GOCOVERDIR", "OCIKP_KMS_CONFIG", "OCIKP_KMS_TIMEOUT"}

// FilterEnv keeps the variables of env that commonEnv or allow name.
func FilterEnv(env, allow []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if envAllowed(name, commonEnv) || envAllowed(name, allow) {
			out = append(out, kv)
		}
	}
	return out
}

func envAllowed(name string, patterns []string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(name, prefix) || name == p {
			return true
		}
	}
	return false
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
