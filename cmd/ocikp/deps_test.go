package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
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

// TestStaticWithCgo: with a C compiler present, a plain 'go install'
// builds with cgo; ocikp must still come out static (no net, no os/user
// lookups through libc), or every start pays the dynamic loader: 1.80× a
// bare Go process instead of 1.4× (docs/tpm.md).
func TestStaticWithCgo(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no C compiler: go builds without cgo anyway")
	}
	bin := filepath.Join(t.TempDir(), "ocikp")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/ocikp/ocikp/cmd/ocikp")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("ocikp built with CGO_ENABLED=1 is dynamically linked (it has an ELF interpreter)")
		}
	}
}
