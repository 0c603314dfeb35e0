// Package token is the body of ocikp-pkcs11, the companion that drives a
// PKCS#11 module for ocikp: it reads one Request on stdin, performs it
// with github.com/miekg/pkcs11 (cgo) and writes one Reply on stdout. The
// module path it receives was checked by ocikp (pkcs11.CheckModule) and
// is checked again here. Built without cgo it answers every request with
// pkcs11.CodeNoCgo.
package token

import (
	"encoding/json"
	"io"

	"github.com/ocikp/ocikp/keys/pkcs11"
)

// maxRequest bounds a request (a URI, a PIN and a point).
const maxRequest = 16 << 10

// Serve answers the one request on in.
func Serve(in io.Reader, out io.Writer) error {
	var req pkcs11.Request
	data, err := io.ReadAll(io.LimitReader(in, maxRequest+1))
	var rep *pkcs11.Reply
	switch {
	case err != nil:
		rep = &pkcs11.Reply{Error: "reading the request: " + err.Error()}
	case len(data) > maxRequest:
		rep = &pkcs11.Reply{Error: "request too large"}
	case json.Unmarshal(data, &req) != nil:
		rep = &pkcs11.Reply{Error: "request is not JSON"}
	default:
		rep = do(&req)
	}
	return json.NewEncoder(out).Encode(rep)
}
