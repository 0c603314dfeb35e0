// Command ocikp is an OCIcrypt key provider: run by skopeo, buildah, podman,
// containerd's ctd-decoder, nerdctl and CRI-O to wrap and unwrap the keys of
// encrypted container image layers. See the README.
package main

import (
	"os"

	"github.com/ocikp/ocikp/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
