package plugin

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
)

// Handler is what a plugin implements.
type Handler interface {
	Wrap(recipient string, fileKey []byte) (*envelope.Stanza, error)
	// Unwrap returns an error wrapping envelope.ErrIncorrectIdentity for a
	// stanza that is not for the plugin's keys.
	Unwrap(s *envelope.Stanza) ([]byte, error)
	// OpenLegacy returns an error wrapping envelope.ErrIncorrectIdentity for
	// a blob it does not know.
	OpenLegacy(blob []byte) ([]byte, error)
	// PublicKey returns the RSA public key of an asymmetric KMS key, or an
	// error if the key is not one ocikp can wrap for offline.
	PublicKey(recipient string) (*PublicKey, error)
}

// Serve answers requests from in on out until in ends. It is the whole
// main loop of a plugin written in Go.
//
// in is read while a request is being handled, so that Serve returns as
// soon as in ends, even in the middle of a request: ocikp closes the
// plugin's stdin only between requests, so an end of input during one means
// ocikp is gone (killed, say) and nobody will read the reply. A plugin
// whose Serve returned should exit without waiting for that request (its
// KMS call may not end for a long time); Main does.
func Serve(in io.Reader, out io.Writer, h Handler) error {
	lines := make(chan input)
	quit := make(chan struct{})
	defer close(quit)
	go read(bufio.NewReaderSize(in, 64<<10), lines, quit)
	w := bufio.NewWriter(out)
	var next *input // a request that came before the reply to the last
	for {
		m := next
		next = nil
		if m == nil {
			v := <-lines
			m = &v
		}
		if m.err == io.EOF {
			return nil
		}
		if m.err != nil {
			return m.err
		}
		done := make(chan *Response, 1)
		go func(line []byte) { done <- handle(line, h) }(m.line)
		var resp *Response
		select {
		case resp = <-done:
		case v := <-lines:
			if v.err != nil {
				// Input ended (or failed) mid-request: the request is abandoned.
				next = &v
				continue
			}
			// Requests are answered in order, one at a time.
			next = &v
			resp = <-done
		}
		b, err := json.Marshal(resp)
		if err != nil {
			return err
		}
		w.Write(append(b, '\n'))
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// input is one line read, or the error that ended the input.
type input struct {
	line []byte
	err  error
}

// read sends the lines of r, then the error that ended them, to lines,
// until quit is closed.
func read(r *bufio.Reader, lines chan<- input, quit <-chan struct{}) {
	for {
		line, err := readLine(r)
		select {
		case lines <- input{line, err}:
		case <-quit:
			return
		}
		if err != nil {
			return
		}
	}
}

// errLineTooLong is a request or reply line over maxLine bytes.
var errLineTooLong = fmt.Errorf("line longer than %d bytes", maxLine)

// readLine reads one line, of at most maxLine bytes, as a copy.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, errLineTooLong
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(line) > 0 {
			return line, nil
		}
		return line, err
	}
}

func handle(line []byte, h Handler) *Response {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return failure(errors.New("malformed plugin request"))
	}
	if req.V != ProtocolVersion {
		return failure(fmt.Errorf("plugin protocol version %d is not supported (want %d)", req.V, ProtocolVersion))
	}
	switch req.Op {
	case OpWrap:
		s, err := h.Wrap(req.Recipient, req.FileKey)
		if err != nil {
			return failure(err)
		}
		return &Response{Stanza: FromEnvelope(s)}
	case OpUnwrap:
		if req.Stanza == nil {
			return failure(errors.New("unwrap request without a stanza"))
		}
		fk, err := h.Unwrap(req.Stanza.Envelope())
		if err != nil {
			return failure(err)
		}
		return &Response{FileKey: fk}
	case OpPublicKey:
		pk, err := h.PublicKey(req.Recipient)
		if err != nil {
			return failure(err)
		}
		return &Response{PublicKey: pk}
	case OpOpenLegacy:
		secret, err := h.OpenLegacy(req.Blob)
		if err != nil {
			return failure(err)
		}
		return &Response{Secret: secret}
	}
	return failure(fmt.Errorf("unknown plugin operation %.20q", req.Op))
}

func failure(err error) *Response {
	kind := KindFailed
	if errors.Is(err, envelope.ErrIncorrectIdentity) {
		kind = KindNotMine
	}
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	return &Response{Error: &Error{Kind: kind, Message: msg, Hints: hint.Of(err)}}
}
