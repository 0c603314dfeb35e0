// Package companion runs ocikp's companion executables (ocikp-pkcs11,
// ocikp-tpm): programs that link what the exec binary must not (cgo, a
// TPM stack) and answer one JSON request on stdin with one bounded JSON
// reply on stdout. Secrets (PINs) travel only on stdin, never in argv or
// the environment, which other users of the machine may read.
//
// A Client runs one process per request (exec mode); a Kept keeps one
// process and sends it one request per line (a long-lived service).
package companion

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/plugin"
)

// Client runs one companion.
type Client struct {
	Name     string        // executable, found as plugin.Client finds plugins
	Timeout  time.Duration // bounds one request (nothing may wait forever)
	MaxReply int           // bounds the reply
	// Coded maps a reply's error code to the sentinel error it stands
	// for (nil: none); Explain adds hints (what to do) to the error.
	Coded   func(code string) error
	Explain func(error) error
}

// Status is the part of every reply that says whether it failed: the
// message and a code for the failures ocikp decides on.
type Status struct {
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// Error is a companion's message with the sentinel it stands for.
type Error struct {
	Sentinel error
	Msg      string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Sentinel }

// Find returns the companion's path, or an error whose hints say how to
// install it (also when $OCIKP_PLUGIN_DIR names a directory without it).
func (c *Client) Find() (string, error) {
	p, err := (&plugin.Client{Name: c.Name}).Find()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		return "", hint.Wrap(fmt.Errorf("%s is not installed: %s: %w", c.Name, p, errors.Unwrap(err)),
			"install it beside ocikp (go install ./cmd/...)", "or set "+plugin.EnvDir+" to the directory that holds it")
	}
	return p, nil
}

// Call runs req in a fresh companion and decodes its reply into rep; a
// reply that reports a failure becomes the error.
func (c *Client) Call(req, rep any) error {
	path, err := c.Find()
	if err != nil {
		return err
	}
	in, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Env = Env()
	// A process the companion leaves behind (a module's helper daemon)
	// may hold its stdout: Wait would last as long as that process.
	cmd.WaitDelay = waitDelay
	var out, stderr limited
	out.max, stderr.max = c.MaxReply, 4096
	cmd.Stdout, cmd.Stderr = &out, &stderr
	runErr := cmd.Run()
	if err := c.decode(out.Bytes(), rep); err != nil {
		if errors.Is(err, errNoReply) {
			if ctx.Err() != nil {
				return fmt.Errorf("%s did not answer within %v", c.Name, c.Timeout)
			}
			if runErr == nil {
				runErr = errors.New("no reply")
			}
			msg := strings.TrimSpace(stderr.String())
			if msg == "" {
				msg = runErr.Error()
			}
			return fmt.Errorf("%s failed: %s", c.Name, msg)
		}
		return err
	}
	return nil
}

var errNoReply = errors.New("no reply")

// waitDelay bounds the wait for the companion's pipes to close once it
// has exited (or its time-out ended).
const waitDelay = time.Second

// decode reads one reply: errNoReply if it is not one, the reply's own
// failure if it reports one.
func (c *Client) decode(b []byte, rep any) error {
	var st Status
	if json.Unmarshal(b, &st) != nil || json.Unmarshal(b, rep) != nil {
		return errNoReply
	}
	if st.Error == "" {
		return nil
	}
	var err error = errors.New(st.Error)
	if c.Coded != nil {
		if s := c.Coded(st.Code); s != nil {
			err = &Error{s, st.Error}
		}
	}
	if c.Explain != nil {
		err = c.Explain(err)
	}
	return err
}

// Env is ocikp's environment for a companion (modules and devices read
// their own variables, SOFTHSM2_CONF, OCIKP_TPM, …) without ocikp's
// passphrases.
func Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCIKP_PASSPHRASE") {
			env = append(env, kv)
		}
	}
	return env
}

// limited keeps the first max bytes written to it; safe for a writer
// goroutine and a reader at once.
type limited struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (l *limited) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limited) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf.Bytes())
}

func (l *limited) String() string { return string(l.Bytes()) }
