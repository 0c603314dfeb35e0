// Command softfloor is the exec floor of ocikp's own format: it answers one
// unwrap request from a keystore's software keys with ocikp's packages
// (protocol, envelope, keys/soft) and nothing else: no CLI, no KMS
// plugins, no companions, no Keychain, no legacy formats, no budgets or
// hints. execbench -softfloor times it beside ocikp and kemfloor, which
// says what an exec binary limited to software keys would cost
// (docs/performance.md, "Targets and floors").
//
//	softfloor KEYSTORE < request.json
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/soft"
	_ "github.com/ocikp/ocikp/p256" // the stanza types of software keys
	_ "github.com/ocikp/ocikp/pq"
	"github.com/ocikp/ocikp/protocol"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: softfloor KEYSTORE < request.json")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "softfloor:", err)
		os.Exit(1)
	}
}

func run(keystore string, in io.Reader, out io.Writer) error {
	req, err := protocol.ReadRequest(in)
	if err != nil {
		return err
	}
	if req.Op != protocol.OpKeyUnwrap {
		return errors.New("only unwrap requests")
	}
	env, err := envelope.Parse(req.KeyUnwrapParams.Annotation)
	if err != nil {
		return err
	}
	entries, err := (&soft.Store{Dir: keystore}).List()
	if err != nil {
		return err
	}
	var ids []envelope.Identity
	for _, e := range entries {
		if e.Err == nil {
			ids = append(ids, e.Key.Identity(nil))
		}
	}
	opts, err := env.Open(ids...)
	if err != nil {
		return err
	}
	reply, err := protocol.EncodeUnwrapResponse(opts)
	if err != nil {
		return err
	}
	_, err = out.Write(reply)
	return err
}
