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
func Serve(in io.Reader, out io.Writer, h Handler) error {
	r := bufio.NewReaderSize(in, 64<<10)
	w := bufio.NewWriter(out)
	for {
		line, err := readLine(r)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		resp := handle(line, h)
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
