// Command ocikp-tpm drives the TPM for ocikp, which runs it with one
// request on stdin when a TPM key or an EK-targeted recipient is used
// (package keys/tpm/tpmdev). It links go-tpm, which links net, so that
// ocikp, started once per layer, need not.
package main

import (
	"fmt"
	"os"

	"github.com/ocikp/ocikp/keys/tpm/tpmdev"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "ocikp: error: ocikp-tpm is run by ocikp, with a request on stdin; it takes no arguments")
		os.Exit(2)
	}
	if err := tpmdev.Serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ocikp: error: ocikp-tpm:", err)
		os.Exit(1)
	}
}
