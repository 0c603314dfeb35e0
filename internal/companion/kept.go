package companion

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Kept is one long-lived companion for a long-lived process (ocikp
// serve): it keeps its module or device open between requests, so a
// request costs about the operation itself instead of a process start. A
// companion that dies or hangs is ended and started again on the next
// request (not with the request it hung on). Requests are serialised.
type Kept struct {
	*Client
	Args []string // what makes the companion serve one request per line

	mu     sync.Mutex
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *limited
	starts int
}

// Call sends req to the kept companion, starting it if needed, and once
// more to a fresh one if the kept one is gone.
func (k *Kept) Call(req, rep any) error {
	line, err := json.Marshal(req)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var b []byte
	for attempt := 0; attempt < 2; attempt++ {
		if k.cmd == nil {
			if err = k.start(); err != nil {
				return err
			}
		}
		if b, err = k.roundTrip(line); err == nil {
			break
		}
		k.stop()
		if te := (*timeoutError)(nil); errors.As(err, &te) {
			break // a companion that hangs is ended, not asked again
		}
	}
	if err != nil {
		return err
	}
	if err := k.decode(b, rep); err != nil {
		if err == errNoReply {
			return fmt.Errorf("%s sent no reply", k.Name)
		}
		return err
	}
	return nil
}

func (k *Kept) start() error {
	path, err := k.Find()
	if err != nil {
		return err
	}
	cmd := exec.Command(path, k.Args...)
	cmd.Env = Env()
	k.stderr = &limited{max: 4096}
	cmd.Stderr = k.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", k.Name, err)
	}
	k.cmd, k.in, k.out = cmd, in, bufio.NewReaderSize(out, k.MaxReply)
	k.starts++
	return nil
}

func (k *Kept) stop() {
	if k.cmd == nil {
		return
	}
	k.in.Close()
	k.cmd.Process.Kill()
	k.cmd.Wait()
	k.cmd = nil
}

// roundTrip writes one request line and reads one reply line, within the
// time-out.
func (k *Kept) roundTrip(line []byte) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	in, out := k.in, k.out
	go func() {
		if _, err := in.Write(append(line, '\n')); err != nil {
			ch <- result{nil, err}
			return
		}
		b, err := out.ReadSlice('\n')
		ch <- result{b, err}
	}()
	t := time.NewTimer(k.Timeout)
	defer t.Stop()
	var r result
	select {
	case r = <-ch:
	case <-t.C:
		k.stop() // ends the read too
		return nil, &timeoutError{k.Name, k.Timeout}
	}
	if r.err != nil {
		msg := strings.TrimSpace(k.stderr.String())
		if msg == "" {
			msg = r.err.Error()
		}
		return nil, fmt.Errorf("%s failed: %s", k.Name, msg)
	}
	if !json.Valid(r.b) {
		return nil, fmt.Errorf("%s sent no reply", k.Name)
	}
	return r.b, nil
}

// timeoutError is a kept companion that did not answer in time: the
// request is not sent again (the requests behind it would wait twice as
// long).
type timeoutError struct {
	name string
	d    time.Duration
}

func (e *timeoutError) Error() string { return fmt.Sprintf("%s did not answer within %v", e.name, e.d) }

// Stop ends the kept companion, if one runs; the next Call starts another.
func (k *Kept) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stop()
}

// Starts counts the companion's starts (tests).
func (k *Kept) Starts() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.starts
}

// PID is the running companion's process id, 0 if none (tests).
func (k *Kept) PID() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cmd == nil {
		return 0
	}
	return k.cmd.Process.Pid
}
