package main

import (
	"os/exec"
	"strings"
	"testing"
)

// ocicrypt starts ocikp once per layer, so what it links is paid on every
// layer (DESIGN.md, "Binaries"). These packages cost about 1 ms of start-up
// each here, or belong to other binaries. regexp: a package-level
// MustCompile costs ~0.5 ms of every start. net: besides its own init, a
// cgo build links the C resolver and makes the binary dynamic.
var forbidden = []string{
	"net", "crypto/x509", "net/http", "net/url", "regexp",
	"google.golang.org/grpc", "github.com/google/go-containerregistry",
	// PKCS#11 modules run in the cgo companion ocikp-pkcs11 (docs/pkcs11.md).
	"github.com/miekg/pkcs11", "github.com/ocikp/ocikp/keys/pkcs11/token",
	// The TPM stack (go-tpm links net) runs in the companion ocikp-tpm
	// (docs/tpm.md).
	"github.com/google/go-tpm", "github.com/ocikp/ocikp/keys/tpm/tpmdev",
}

func TestExecBinaryStaysLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/ocikp/ocikp/cmd/ocikp").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	deps := map[string]bool{}
	for _, d := range strings.Fields(string(out)) {
		deps[d] = true
	}
	if !deps["github.com/ocikp/ocikp/keyprovider"] {
		t.Fatal("go list output does not look like ocikp's dependencies")
	}
	for _, f := range forbidden {
		for d := range deps {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("cmd/ocikp links %s", d)
			}
		}
	}
}
