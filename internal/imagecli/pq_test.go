package imagecli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/pq"
)

func newPQKey(t *testing.T, st *soft.Store, name string) *pq.Recipient {
	kind := pq.KindOf(pq.XWing)
	seed, _, err := kind.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := soft.NewHybridKeyFile(name, kind, seed, nil)
	if err == nil {
		err = st.Put(name, k)
	}
	if err != nil {
		t.Fatal(err)
	}
	r, err := pq.Parse(k.RecipientString())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rewrap applies the mixing rule to a layer's new recipient set: adding
// a P-256 key to a post-quantum layer is refused (nothing written) unless
// --allow-classical; another post-quantum key is fine. inspect marks each
// stanza's strength.
func TestRewrapMixingRule(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	xw := newPQKey(t, st, "xw")
	newPQKey(t, st, "xw2")
	newKey(t, st, "alice")
	dir := layout(t, nil, xw)
	img := "oci:" + dir + ":img"
	index0, _ := os.ReadFile(filepath.Join(dir, "index.json"))

	_, stderr, code := runMain("rewrap", "--keystore", ks, "--add", "alice", img)
	checkError(t, stderr, code, "mix post-quantum and classical-only recipients (post-quantum: mlkem768x25519; classical-only: p256)")
	if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) {
		t.Fatal("a refused rewrap wrote index.json")
	}
	if out, stderr, code := runMain("rewrap", "--keystore", ks, "--add", "xw2", img); code != 0 {
		t.Fatalf("adding a post-quantum key: %d\n%s%s", code, out, stderr)
	}
	out, _, _ := runMain("inspect", "--keystore", ks, img)
	if strings.Count(out, "(post-quantum)") != 2 || strings.Contains(out, "(classical)") {
		t.Fatalf("inspect:\n%s", out)
	}
	if out, stderr, code := runMain("rewrap", "--keystore", ks, "--allow-classical", "--add", "alice", img); code != 0 {
		t.Fatalf("--allow-classical: %d\n%s%s", code, out, stderr)
	}
	out, _, _ = runMain("inspect", "--keystore", ks, img)
	if strings.Count(out, "(post-quantum)") != 2 || strings.Count(out, "(classical)") != 1 || !strings.Contains(out, "encrypted, classical") {
		t.Fatalf("inspect after --allow-classical:\n%s", out)
	}
}
