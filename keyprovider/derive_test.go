package keyprovider

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/protocol"
)

// Many concurrent unwraps through the service's core, each needing a
// passphrase-protected key opened (a call that names a key reads it anew;
// several protected keys in the keystore), run no more than
// soft.MaxDerivations scrypt derivations at once: at the ceiling a key file
// may ask for, each holds 1 GiB.
func TestPassphraseDerivationsAreBounded(t *testing.T) {
	st := &soft.Store{Dir: t.TempDir()}
	const keys, calls = 3, 8
	var recipients [][]byte
	for _, name := range []string{"k1", "k2", "k3"}[:keys] {
		priv, _ := ecdh.P256().GenerateKey(rand.Reader)
		k, err := st.Create(name, priv, []byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		recipients = append(recipients, []byte(k.Recipient))
	}
	p := &Provider{Name: "ocikp", Store: st, CacheKeys: true, Remote: true,
		Passphrase: func(string) ([]byte, error) { return []byte("pw"), nil }}
	anns := map[string][]byte{}
	for i, name := range []string{"k1", "k2", "k3"}[:keys] {
		ann, err := p.Wrap(&protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": {recipients[i]}}}, Optsdata: opts})
		if err != nil {
			t.Fatal(err)
		}
		anns[name] = ann
	}
	var wg sync.WaitGroup
	errs := make(chan error, calls+keys)
	unwrapCtx := func(ctx context.Context, ann []byte, params map[string][][]byte) error {
		out, _, err := p.HandleContext(ctx, &protocol.Request{Op: protocol.OpKeyUnwrap,
			KeyUnwrapParams: &protocol.KeyUnwrapParams{DC: &protocol.DecryptConfig{Parameters: params}, Annotation: ann}})
		if err == nil && !bytes.Contains(out, []byte("keyunwrapresults")) {
			err = errors.New("no unwrap result")
		}
		return err
	}
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := []string{"k1", "k2", "k3"}[i%keys]
			errs <- unwrapCtx(context.Background(), anns[name], map[string][][]byte{"ocikp": vals(name)})
		}()
	}
	for _, name := range []string{"k1", "k2", "k3"}[:keys] { // the cached keystore keys, one per key
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- unwrapCtx(context.Background(), anns[name], nil)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("unwrap: %v", err)
		}
	}
	running, peak := soft.Derivations()
	t.Logf("%d concurrent unwraps needing a passphrase-derived key: at most %d derivations at once (limit %d)", calls+keys, peak, soft.MaxDerivations)
	if peak > soft.MaxDerivations || running != 0 {
		t.Fatalf("%d scrypt derivations ran at once (limit %d); %d still running", peak, soft.MaxDerivations, running)
	}

	// A call whose caller has gone opens no key (a local caller's error
	// says why; a remote one's is redacted).
	p.Remote = false
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := unwrapCtx(ctx, anns["k1"], map[string][][]byte{"ocikp": vals("k1")}); err == nil || !strings.Contains(err.Error(), "not opening a passphrase-protected key: context canceled") {
		t.Fatalf("unwrap after the caller has gone: %v", err)
	}
}
