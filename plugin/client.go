package plugin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
)

// maxLine bounds a plugin's reply.
const maxLine = 1 << 20

// Client runs one plugin executable, started on first use.
type Client struct {
	// Name is the executable's name, e.g. "ocikp-plugin-gcpkms".
	Name string
	// Env is added to the plugin's environment.
	Env []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *tailBuffer
	err    error // a start failure, kept
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

func (c *Client) start() error {
	if c.cmd != nil || c.err != nil {
		return c.err
	}
	path, err := c.Find()
	if err != nil {
		c.err = err
		return err
	}
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), c.Env...)
	c.stderr = &tailBuffer{max: 4096}
	cmd.Stderr = c.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		c.err = err
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.err = err
		return err
	}
	if err := cmd.Start(); err != nil {
		c.err = fmt.Errorf("starting %s: %w", c.Name, err)
		return c.err
	}
	c.cmd, c.in, c.out = cmd, in, bufio.NewReaderSize(out, 64<<10)
	return nil
}

// Call sends one request and reads its reply.
func (c *Client) Call(req *Request) (*Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.start(); err != nil {
		return nil, err
	}
	req.V = ProtocolVersion
	line, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.in.Write(append(line, '\n')); err != nil {
		return nil, c.died(err)
	}
	reply, err := c.out.ReadSlice('\n')
	if err != nil {
		return nil, c.died(err)
	}
	if len(reply) > maxLine {
		return nil, fmt.Errorf("%s: reply too large", c.Name)
	}
	var resp Response
	if err := json.Unmarshal(reply, &resp); err != nil {
		return nil, fmt.Errorf("%s: malformed reply", c.Name)
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	return &resp, nil
}

// died reports a plugin that stopped answering (err: what the pipe said),
// with its exit status and the end of its stderr.
func (c *Client) died(err error) error {
	c.in.Close()
	if werr := c.cmd.Wait(); werr != nil {
		err = werr
	}
	c.err = fmt.Errorf("%s stopped: %v", c.Name, err)
	if tail := strings.TrimSpace(c.stderr.String()); tail != "" {
		c.err = fmt.Errorf("%s stopped (%v): %s", c.Name, err, lastLine(tail))
	}
	return c.err
}

// Close tells the plugin to end (by closing its stdin) and, with wait,
// waits for it. The exec provider does not wait: its caller waits for the
// provider's exit, and a plugin's shutdown (closing KMS connections) adds
// nothing the caller needs; the plugin ends on its own at end of input.
func (c *Client) Close(wait bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil
	}
	c.in.Close()
	var err error
	if wait {
		err = c.cmd.Wait()
	}
	c.cmd = nil
	return err
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
}

// Wrap asks the plugin to wrap fileKey for the recipient.
func (r *Recipient) Wrap(fileKey []byte) (*envelope.Stanza, error) {
	resp, err := r.Client.Call(&Request{Op: OpWrap, Recipient: r.URL, FileKey: fileKey})
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
}

// Unwrap asks the plugin to unwrap a stanza of one of its types.
func (id *Identity) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if !contains(id.Types, s.Type) || (len(id.KIDs) > 0 && !contains(id.KIDs, s.KID)) {
		return nil, envelope.ErrIncorrectIdentity
	}
	resp, err := id.Client.Call(&Request{Op: OpUnwrap, Stanza: FromEnvelope(s)})
	if err != nil {
		return nil, hinted(err)
	}
	return resp.FileKey, nil
}

// PublicKey asks the plugin for the public key of an asymmetric KMS key.
func (c *Client) PublicKey(recipient string) (*PublicKey, error) {
	resp, err := c.Call(&Request{Op: OpPublicKey, Recipient: recipient})
	if err != nil {
		return nil, hinted(err)
	}
	if resp.PublicKey == nil {
		return nil, fmt.Errorf("%s: pubkey reply without a key", c.Name)
	}
	return resp.PublicKey, nil
}

// OpenLegacy asks the plugin to open a legacy blob.
func (c *Client) OpenLegacy(blob []byte) ([]byte, error) {
	resp, err := c.Call(&Request{Op: OpOpenLegacy, Blob: blob})
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
