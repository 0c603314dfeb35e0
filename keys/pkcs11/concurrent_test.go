package pkcs11_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ocikp/ocikp/keys/pkcs11"
	"github.com/ocikp/ocikp/keys/pkcs11/softhsmtest"
)

// TestCompanionsAtOnce: skopeo and containerd unwrap an image's layers in
// parallel, so several ocikp processes each start a companion that logs in
// to the same token at once. SoftHSM rewrites its token file on every
// login, and a companion that initialised the module mid-write failed its
// login with CKR_GENERAL_ERROR (seen in the e2e suite). The companions
// take turns on a module, so every one of these answers.
func TestCompanionsAtOnce(t *testing.T) {
	tk := softhsmtest.Start(t, "node", testPIN)
	r, _ := newKey(t, tk, "ocikp-node")
	k, err := r.NewKey([]byte(testPIN))
	if err != nil {
		t.Fatal(err)
	}
	module, err := pkcs11.CheckModule(mustParse(t, tk.URI("ocikp-node")))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(softhsmtest.Companion(t), pkcs11.Companion)
	const procs, rounds = 6, 4
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan string, procs)
		for range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				eph, _ := ecdh.P256().GenerateKey(rand.Reader)
				req, _ := json.Marshal(&pkcs11.Request{Op: "ecdh", Module: module, URI: r.URI, PIN: testPIN, Peer: eph.PublicKey().Bytes()})
				cmd := exec.Command(bin)
				cmd.Stdin = bytes.NewReader(req)
				out, err := cmd.Output()
				var rep pkcs11.Reply
				if err != nil || json.Unmarshal(out, &rep) != nil || rep.Error != "" {
					errs <- string(out) + rep.Error
					return
				}
				want, _ := eph.ECDH(k.PublicKey())
				if !bytes.Equal(rep.Secret, want) {
					errs <- "wrong secret"
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Errorf("round %d: a companion failed: %s", round, e)
		}
	}
}
