package main

import (
	"os/exec"
	"strings"
	"testing"
)

// ocicrypt starts ocikp once per layer, so what it links is paid on every
// layer (DESIGN.md, "Binaries"). These packages cost about 1 ms of start-up
// each here, or belong to other binaries. regexp: a package-level
// MustCompile costs ~0.5 ms of every start.
var forbidden = []string{
	"net", "crypto/x509", "net/http", "net/url", "regexp",
	"google.golang.org/grpc", "github.com/google/go-containerregistry",
	// PKCS#11 modules run in the cgo companion ocikp-pkcs11 (docs/pkcs11.md).
	"github.com/miekg/pkcs11", "github.com/ocikp/ocikp/keys/pkcs11/token",
}

// allowedNet may import net (and with it net/netip): go-tpm's transport
// (tpmutil) imports it, and the TPM backend dials swtpm's unix socket.
// Measured: +0.3-0.4 ms of package init per start (docs/tpm.md).
var allowedNet = map[string]bool{
	"github.com/google/go-tpm/tpmutil": true,
	"github.com/ocikp/ocikp/keys/tpm":  true,
}

func TestExecBinaryStaysLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "github.com/ocikp/ocikp/cmd/ocikp").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	deps := map[string]bool{}
	importers := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		deps[f[0]] = true
		for _, imp := range f[1:] {
			importers[imp] = append(importers[imp], f[0])
		}
	}
	if !deps["github.com/ocikp/ocikp/keyprovider"] {
		t.Fatal("go list output does not look like ocikp's dependencies")
	}
	for _, f := range forbidden {
		for d := range deps {
			if d != f && !strings.HasPrefix(d, f+"/") {
				continue
			}
			if d == "net" || d == "net/netip" {
				for _, imp := range importers[d] {
					if !allowedNet[imp] && imp != "net" && !strings.HasPrefix(imp, "net/") {
						t.Errorf("cmd/ocikp links %s through %s", d, imp)
					}
				}
				continue
			}
			t.Errorf("cmd/ocikp links %s", d)
		}
	}
}
