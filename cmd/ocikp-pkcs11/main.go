// Command ocikp-pkcs11 drives PKCS#11 tokens for ocikp, which runs it
// with one request on stdin when a stanza matches a token key (package
// keys/pkcs11/token), or, with --serve, keeps running for ocikp serve and
// answers one request per line with sessions kept open. It links cgo, so
// that ocikp need not.
package main

import (
	"fmt"
	"os"

	"github.com/ocikp/ocikp/keys/pkcs11/token"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--serve" {
		// Kept by ocikp serve: one request per line, sessions kept.
		if err := token.ServeLoop(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "ocikp: error: ocikp-pkcs11:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "ocikp: error: ocikp-pkcs11 is run by ocikp, with a request on stdin; it takes no arguments")
		os.Exit(2)
	}
	if err := token.Serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ocikp: error: ocikp-pkcs11:", err)
		os.Exit(1)
	}
}
