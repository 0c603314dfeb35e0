package main

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/pq"
	"github.com/ocikp/ocikp/protocol"
)

// newStore makes a keystore with one key of typ.
func newStore(t *testing.T, typ string) (*soft.Store, *soft.KeyFile) {
	t.Helper()
	st := &soft.Store{Dir: filepath.Join(t.TempDir(), "ks")}
	if err := os.Mkdir(st.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if typ == soft.TypeP256 {
		priv, _ := ecdh.P256().GenerateKey(rand.Reader)
		k, err := st.Create("k", priv, nil)
		if err != nil {
			t.Fatal(err)
		}
		return st, k
	}
	seed := make([]byte, 32)
	rand.Read(seed)
	k, err := soft.NewHybridKeyFile("k", pq.KindOf(typ), seed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put("k", k); err != nil {
		t.Fatal(err)
	}
	return st, k
}

// The floor answers what ocikp answers, for each software key type, and
// refuses a layer that is not for its keys: a floor that skipped the
// work would be no floor.
func TestAnswersAsOcikp(t *testing.T) {
	for _, typ := range soft.Types() {
		t.Run(typ, func(t *testing.T) {
			st, k := newStore(t, typ)
			p := &keyprovider.Provider{Name: "ocikp", Store: st}
			opts := []byte("optsdata of " + typ)
			ann, err := p.Wrap(&protocol.KeyWrapParams{EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": {[]byte(k.RecipientString())}}}, Optsdata: opts})
			if err != nil {
				t.Fatal(err)
			}
			req := &protocol.Request{Op: protocol.OpKeyUnwrap, KeyUnwrapParams: &protocol.KeyUnwrapParams{DC: &protocol.DecryptConfig{Parameters: map[string][][]byte{}}, Annotation: ann}}
			want, err := p.Handle(req)
			if err != nil {
				t.Fatal(err)
			}
			in, err := json.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := run(st.Dir, bytes.NewReader(in), &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("softfloor replied %s, ocikp %s", out.Bytes(), want)
			}
			other, _ := newStore(t, typ)
			out.Reset()
			if err := run(other.Dir, bytes.NewReader(in), &out); err == nil || out.Len() != 0 {
				t.Fatalf("another keystore's key opened the layer (err %v, reply %q)", err, out.Bytes())
			}
		})
	}
}

func TestRefusesWrap(t *testing.T) {
	err := run(t.TempDir(), strings.NewReader(`{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{}},"optsdata":""}}`), new(bytes.Buffer))
	if err == nil {
		t.Fatal("a wrap request was answered")
	}
}
