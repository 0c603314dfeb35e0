package server

import (
	"encoding/base64"

	"github.com/ocikp/ocikp/protocol"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func wrapParams(recipient string) *protocol.KeyWrapParams {
	return &protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": {[]byte(recipient)}}}, Optsdata: []byte(`{"symkey":"slow"}`)}
}
