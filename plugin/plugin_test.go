package plugin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
)

type echo struct{}

func (echo) Wrap(r string, fk []byte) (*envelope.Stanza, error) {
	if r == "bad://" {
		return nil, hint.Wrap(errors.New("no such key"), "check it")
	}
	return &envelope.Stanza{Type: "echo", KID: r, Key: fk}, nil
}
func (echo) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if s.Type != "echo" {
		return nil, fmt.Errorf("not echo: %w", envelope.ErrIncorrectIdentity)
	}
	return s.Key, nil
}
func (echo) OpenLegacy([]byte) ([]byte, error)    { return nil, envelope.ErrIncorrectIdentity }
func (echo) PublicKey(string) (*PublicKey, error) { return nil, errors.New("symmetric") }

func TestServe(t *testing.T) {
	in := strings.Join([]string{
		`{"v":1,"op":"wrap","recipient":"echo://k","file_key":"AQID"}`,
		`{"v":1,"op":"unwrap","stanza":{"type":"echo","key":"AQID"}}`,
		`{"v":1,"op":"unwrap","stanza":{"type":"p256","key":"AQID"}}`,
		`{"v":1,"op":"wrap","recipient":"bad://"}`,
		`{"v":2,"op":"wrap"}`,
		`not json`,
		`{"v":1,"op":"open-legacy","blob":"AA=="}`,
	}, "\n")
	got := converse(t, echo{}, strings.Split(in, "\n"))
	if len(got) != 7 {
		t.Fatalf("%d replies", len(got))
	}
	if got[0].Stanza == nil || got[0].Stanza.KID != "echo://k" || !bytes.Equal(got[1].FileKey, []byte{1, 2, 3}) {
		t.Fatalf("replies: %+v %+v", got[0], got[1])
	}
	if got[2].Error == nil || got[2].Error.Kind != KindNotMine || !errors.Is(got[2].Error, envelope.ErrIncorrectIdentity) {
		t.Fatalf("not mine: %+v", got[2].Error)
	}
	if e := got[3].Error; e == nil || e.Kind != KindFailed || e.Message != "no such key" || len(e.Hints) != 1 {
		t.Fatalf("failure: %+v", e)
	}
	for _, i := range []int{4, 5} {
		if got[i].Error == nil {
			t.Fatalf("reply %d accepted a bad request", i)
		}
	}
}

// converse sends each request as ocikp does, after the reply to the one
// before, and returns the replies; then it ends Serve's input.
func converse(t *testing.T, h Handler, requests []string) []Response {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(inR, outW, h); outW.Close() }()
	replies := bufio.NewReader(outR)
	var got []Response
	for _, req := range requests {
		io.WriteString(inW, req+"\n")
		l, err := replies.ReadBytes('\n')
		if err != nil {
			t.Fatalf("no reply to %s: %v", req, err)
		}
		var r Response
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return got
}

func FuzzServe(f *testing.F) {
	f.Add([]byte(`{"v":1,"op":"wrap","recipient":"echo://k","file_key":"AQID"}` + "\n"))
	f.Add([]byte(`{"v":1,"op":"unwrap","stanza":null}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		Serve(bytes.NewReader(b), &out, echo{})
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if l == "" {
				continue
			}
			var r Response
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("invalid reply line %q", l)
			}
		}
	})
}

// hang never answers an unwrap until released.
type hang struct {
	echo
	started chan struct{}
	release chan struct{}
}

func (h hang) Unwrap(*envelope.Stanza) ([]byte, error) {
	close(h.started)
	<-h.release
	return nil, errors.New("released")
}

// When its input ends in the middle of a request (ocikp, which holds the
// other end, is gone), Serve returns at once rather than when the
// request's KMS call gives up: nobody is left to read the reply.
func TestServeEndsWithItsInput(t *testing.T) {
	h := hang{started: make(chan struct{}), release: make(chan struct{})}
	defer close(h.release)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(pr, io.Discard, h) }()
	io.WriteString(pw, `{"v":1,"op":"unwrap","stanza":{"type":"echo","key":"AQID"}}`+"\n")
	<-h.started
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still waits on its request 5 s after its input ended")
	}
}
