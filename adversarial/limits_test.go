//go:build linux

package adversarial

import (
	"crypto/ecdh"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/testkms"
)

// Stanza types and key ids are written by whoever pushed the image: they
// reach the user's terminal and the service's clients escaped, never as
// terminal control sequences.
func TestLayerStringsCannotWriteTerminalEscapes(t *testing.T) {
	ks, _, _ := newKeystore(t)
	e := env(t, ks)
	hostile := []*envelope.Stanza{
		{Type: "p256\x1b]0;owned\x07", Tag: random(4), Enc: random(65), Key: random(48)},
		{Type: "x\u009b2J", KID: "kid\x1b[31mred\u202eesrever", Key: random(32)},
		{Type: "hashivault", KID: "hashivault://lay\x1b[2Jers", Key: []byte("vault:v1:AA")},
		{Type: "gcpkms", KID: "gcpkms://projects/\x1b[5m/locations/l/keyRings/r/cryptoKeys/\a", Key: random(32)},
	}
	ann := layer(hostile...)
	_, stderr, code := exe(t, unwrapRequest(ann), e, "keyprovider", "--name", "ocikp")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	s := serve(t, ks, e)
	msg := s.mustFail(t, "unwrap", unwrapRequest(ann))
	for what, text := range map[string]string{"exec stderr": stderr, "gRPC status": msg} {
		if strings.ContainsAny(text, "\x1b\x07\u009b\u202e") {
			t.Fatalf("%s carries a control character: %q", what, text)
		}
		mustContain(t, what, text, `"p256\x1b]0;owned\a"`, `\x1b[31m`)
	}
	t.Logf("escaped: %s", strings.SplitN(stderr, "\n", 2)[0])
}

// A layer of 128 untagged stanzas against a keystore of 10 keys would
// cost 1,280 private-key operations; ocikp stops at MaxKeyAttempts.
func TestUntaggedStanzasAreBounded(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	e := env(t, ks)
	for _, n := range []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"} {
		if _, stderr, code := exe(t, nil, e, "keygen", n); code != 0 {
			t.Fatal(stderr)
		}
	}
	var stanzas []*envelope.Stanza
	for range envelope.MaxRecipients {
		eph, _ := ecdh.P256().GenerateKey(rand.Reader)
		stanzas = append(stanzas, &envelope.Stanza{Type: "p256", Enc: eph.PublicKey().Bytes(), Key: random(48)})
	}
	ann := layer(stanzas...)
	start := time.Now()
	_, stderr, code := exe(t, unwrapRequest(ann), e, "keyprovider", "--name", "ocikp")
	took := time.Since(start)
	if code != 1 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	mustContain(t, "stderr", stderr, "stopped after 64 private-key attempts", "128 recipients")
	s := serve(t, ks, e)
	start = time.Now()
	msg := s.mustFail(t, "unwrap", unwrapRequest(ann))
	mustContain(t, "status", msg, "stopped after 64 private-key attempts")
	t.Logf("128 untagged stanzas x 10 keys: exec %v, service %v (at most 64 attempts)", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if len(stderr) > 4000 {
		t.Fatalf("the error is %d bytes long", len(stderr))
	}
}

// A key file asking scrypt for 16 GiB is refused before any work.
func TestHostileScryptHeaderRefused(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	pass := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pass, []byte("pw\n"), 0o600)
	e := env(t, ks, "OCIKP_PASSPHRASE_FILE="+pass)
	out, stderr, code := exe(t, nil, e, "keygen", "--passphrase-file", pass, "sealed")
	if code != 0 {
		t.Fatal(stderr)
	}
	ann := wrap(t, e, strings.TrimSpace(out))
	key := filepath.Join(ks, "sealed.key")
	data, _ := os.ReadFile(key)
	hostile := strings.NewReplacer(`"logN": 15`, `"logN": 22`, `"r": 8`, `"r": 32`).Replace(string(data))
	if hostile == string(data) {
		t.Fatal("the key file's layout changed; update this test")
	}
	os.WriteFile(key, []byte(hostile), 0o600)
	start := time.Now()
	_, stderr, code = exe(t, unwrapRequest(ann), e, "keyprovider", "--name", "ocikp")
	t.Logf("logN 22, r 32 (16 GiB): refused in %v", time.Since(start).Round(time.Millisecond))
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "stderr", stderr, "16384 MiB", "over the limits of 1024 MiB")
}

// A 7,000-byte optsdata is more than an envelope holds: the wrap is
// refused cleanly rather than writing a layer nobody could read.
func TestOversizedOptsdataRefused(t *testing.T) {
	ks, recipient, _ := newKeystore(t)
	e := env(t, ks)
	req := wrapRequest(make([]byte, 7000), recipient)
	start := time.Now()
	out, stderr, code := exe(t, req, e, "keyprovider", "--name", "ocikp")
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	mustContain(t, "stderr", stderr, "the secret to wrap is 7000 bytes; an ocikp envelope holds at most 6116")
	s := serve(t, ks, e)
	msg := s.mustFail(t, "wrap", req)
	mustContain(t, "status", msg, "holds at most 6116")
	t.Logf("7000-byte optsdata: refused in %v", time.Since(start).Round(time.Millisecond))
}

// A layer of many KMS stanzas, each for a key the (allowed, real) KMS
// holds but each with a ciphertext it refuses: ocikp makes at most
// MaxKMSAttempts calls.
func TestKMSCallsAreBounded(t *testing.T) {
	v := testkms.StartVault(t, "s.tok", "transit/layers")
	ks := t.TempDir()
	e := env(t, ks, "VAULT_ADDR="+v.URL, "VAULT_TOKEN=s.tok")
	var stanzas []*envelope.Stanza
	for range 40 {
		stanzas = append(stanzas, &envelope.Stanza{Type: "hashivault", KID: "hashivault://layers", Key: []byte("vault:v1:" + b64(random(48)))})
	}
	ann := layer(stanzas...)
	start := time.Now()
	_, stderr, code := exe(t, unwrapRequest(ann), e, "keyprovider", "--name", "ocikp")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "stderr", stderr, "stopped after 8 KMS calls")
	if n := v.Calls("decrypt"); n != 8 {
		t.Fatalf("%d Vault decrypt calls for 40 stanzas, want 8", n)
	}
	t.Logf("40 KMS stanzas: %d Vault calls, %v", v.Calls("decrypt"), time.Since(start).Round(time.Millisecond))
}
