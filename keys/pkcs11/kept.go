package pkcs11

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocikp/ocikp/plugin"
)

var keep atomic.Bool

// KeepCompanion makes ECDH use one long-lived companion that keeps the
// module loaded and the key's session open between unwraps, for a
// long-lived process (ocikp serve): an unwrap then costs about one
// C_DeriveKey instead of a process start, a module load and a login. A
// companion that dies or hangs is ended and started again on the next
// unwrap; a token that goes away is reported and found again when back.
func KeepCompanion() { keep.Store(true) }

// kept is the one long-lived companion; requests to it are serialised.
var kept struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *limited
	starts int // for tests
}

// callKept sends req to the kept companion, starting it if needed, and
// once more to a fresh one if the kept one is gone.
func callKept(req *Request) (*Reply, error) {
	line, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	kept.mu.Lock()
	defer kept.mu.Unlock()
	var rep *Reply
	for attempt := 0; attempt < 2; attempt++ {
		if kept.cmd == nil {
			if err = startKept(); err != nil {
				return nil, err
			}
		}
		if rep, err = roundTrip(line); err == nil {
			break
		}
		stopKept()
	}
	if err != nil {
		return nil, err
	}
	return replyErr(rep)
}

func startKept() error {
	path, err := (&plugin.Client{Name: Companion}).Find()
	if err != nil {
		return err
	}
	cmd := exec.Command(path, "--serve")
	cmd.Env = companionEnv()
	kept.stderr = &limited{max: 4096}
	cmd.Stderr = kept.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", Companion, err)
	}
	kept.cmd, kept.in, kept.out = cmd, in, bufio.NewReaderSize(out, maxReply)
	kept.starts++
	return nil
}

func stopKept() {
	if kept.cmd == nil {
		return
	}
	kept.in.Close()
	kept.cmd.Process.Kill()
	kept.cmd.Wait()
	kept.cmd = nil
}

// roundTrip writes one request line and reads one reply line, within
// timeout.
func roundTrip(line []byte) (*Reply, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	in, out := kept.in, kept.out
	go func() {
		if _, err := in.Write(append(line, '\n')); err != nil {
			ch <- result{nil, err}
			return
		}
		b, err := out.ReadSlice('\n')
		ch <- result{b, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var r result
	select {
	case r = <-ch:
	case <-t.C:
		stopKept() // ends the read too
		return nil, fmt.Errorf("%s did not answer within %v", Companion, timeout)
	}
	if r.err != nil {
		msg := strings.TrimSpace(kept.stderr.String())
		if msg == "" {
			msg = r.err.Error()
		}
		return nil, fmt.Errorf("%s failed: %s", Companion, msg)
	}
	var rep Reply
	if err := json.Unmarshal(r.b, &rep); err != nil {
		return nil, errors.New(Companion + " sent no reply")
	}
	return &rep, nil
}

// replyErr turns a reply's error into the error ocikp decides on.
func replyErr(rep *Reply) (*Reply, error) {
	if rep.Error != "" {
		if s := codeErr(rep.Code); s != nil {
			return nil, explain(&codedError{s, rep.Error})
		}
		return nil, errors.New(rep.Error)
	}
	return rep, nil
}

// StopCompanion ends the kept companion, if one runs (a service shutting
// down); the next ECDH, if still kept, starts another.
func StopCompanion() {
	kept.mu.Lock()
	defer kept.mu.Unlock()
	stopKept()
}
