package keyprovider

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/pq"
	"github.com/ocikp/ocikp/protocol"
)

// FuzzHandle drives whole requests through decoding and the provider, with a
// real keystore: no input may panic, and no error may quote optsdata.
func FuzzHandle(f *testing.F) {
	st := &soft.Store{Dir: f.TempDir()}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	k, err := st.Create("alice", priv, nil)
	if err != nil {
		f.Fatal(err)
	}
	p := &Provider{Name: "ocikp", Store: st}
	b64 := base64.StdEncoding.EncodeToString
	wrap := `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"ocikp":["` + b64([]byte(k.Recipient)) + `"]}},"optsdata":"` + b64([]byte("SECRETOPTS")) + `"}}`
	f.Add([]byte(wrap))
	req, _ := protocol.DecodeRequest([]byte(wrap))
	reply, err := p.Handle(req)
	if err != nil {
		f.Fatal(err)
	}
	ann := strings.TrimSuffix(strings.TrimPrefix(string(reply), `{"keywrapresults":{"annotation":"`), `"}}`)
	f.Add([]byte(`{"op":"keyunwrap","keyunwrapparams":{"dc":{"Parameters":{"ocikp":["` + b64([]byte("alice")) + `"]}},"annotation":"` + ann + `"}}`))
	f.Add([]byte(`{"op":"keyunwrap","keyunwrapparams":{"dc":null,"annotation":"` + ann + `"}}`))
	f.Add([]byte(`{"op":"keywrap","keywrapparams":{"ec":{},"optsdata":"eA=="}}`))
	// A post-quantum key beside it: wraps for it (and the mix), its layers.
	fx := &fixture{t: f, st: st, recip: map[string]string{}}
	xw := fx.addPQ("xw", pq.XWing, nil)
	for _, vals := range [][]string{{xw}, {xw, k.Recipient}} {
		var enc []string
		for _, v := range vals {
			enc = append(enc, `"`+b64([]byte(v))+`"`)
		}
		w := `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"ocikp":[` + strings.Join(enc, ",") + `]}},"optsdata":"` + b64([]byte("SECRETOPTS")) + `"}}`
		f.Add([]byte(w))
		req, _ := protocol.DecodeRequest([]byte(w))
		if reply, err := p.Handle(req); err == nil {
			a := strings.TrimSuffix(strings.TrimPrefix(string(reply), `{"keywrapresults":{"annotation":"`), `"}}`)
			f.Add([]byte(`{"op":"keyunwrap","keyunwrapparams":{"dc":null,"annotation":"` + a + `"}}`))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := protocol.DecodeRequest(b)
		if err != nil {
			return
		}
		if _, err := p.Handle(req); err != nil {
			if strings.Contains(err.Error(), "SECRETOPTS") {
				t.Fatalf("error quotes the secret: %v", err)
			}
		}
	})
}
