// Command ocikp-image reads and rewrites the key annotations of encrypted
// images (ocikp inspect, ocikp rewrap). It links a registry client, which
// the exec provider must not.
package main

import (
	"os"

	"github.com/ocikp/ocikp/internal/imagecli"
)

func main() { os.Exit(imagecli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
