package token

import (
	"bufio"
	"encoding/json"
	"io"

	"github.com/ocikp/ocikp/keys/pkcs11"
)

// ServeLoop answers requests one per line until in ends, keeping each
// module loaded and each key's session open between them (ocikp serve:
// pkcs11.KeepCompanion). Only "ecdh" is served this way.
func ServeLoop(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 4096), maxRequest)
	enc := json.NewEncoder(out)
	k := newKept()
	defer k.close()
	for sc.Scan() {
		var req pkcs11.Request
		var rep *pkcs11.Reply
		switch {
		case json.Unmarshal(sc.Bytes(), &req) != nil:
			rep = &pkcs11.Reply{Error: "request is not JSON"}
		case req.Op != "ecdh":
			rep = &pkcs11.Reply{Error: "only ecdh is served by a kept companion"}
		default:
			rep = k.ecdh(&req)
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	return sc.Err()
}
