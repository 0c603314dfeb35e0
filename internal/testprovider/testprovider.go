// Package testprovider runs key provider requests through the provider
// core as ocicrypt sends them, for the key backends' tests.
package testprovider

import (
	"encoding/json"
	"testing"

	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/protocol"
)

// Wrap wraps secret for the recipients and returns the annotation.
func Wrap(t testing.TB, p *keyprovider.Provider, secret []byte, recipients ...string) []byte {
	t.Helper()
	ann, err := WrapErr(p, secret, recipients...)
	if err != nil {
		t.Fatalf("wrap: %v", err)
	}
	return ann
}

// WrapErr is Wrap for a test that expects the wrap to fail.
func WrapErr(p *keyprovider.Provider, secret []byte, recipients ...string) ([]byte, error) {
	var vs [][]byte
	for _, r := range recipients {
		vs = append(vs, []byte(r))
	}
	reply, err := p.Handle(&protocol.Request{Op: protocol.OpKeyWrap, KeyWrapParams: &protocol.KeyWrapParams{
		EC: &protocol.EncryptConfig{Parameters: map[string][][]byte{"ocikp": vs}}, Optsdata: secret}})
	if err != nil {
		return nil, err
	}
	var out struct {
		Results struct{ Annotation []byte } `json:"keywrapresults"`
	}
	err = json.Unmarshal(reply, &out)
	return out.Results.Annotation, err
}

// Unwrap unwraps as containerd does (no parameters for the provider), or
// with the named decryption keys, and returns the secret.
func Unwrap(p *keyprovider.Provider, ann []byte, names ...string) ([]byte, error) {
	params := map[string][][]byte{}
	for _, n := range names {
		params["ocikp"] = append(params["ocikp"], []byte(n))
	}
	reply, err := p.Handle(&protocol.Request{Op: protocol.OpKeyUnwrap, KeyUnwrapParams: &protocol.KeyUnwrapParams{
		DC: &protocol.DecryptConfig{Parameters: params}, Annotation: ann}})
	if err != nil {
		return nil, err
	}
	var out struct {
		Results struct{ Optsdata []byte } `json:"keyunwrapresults"`
	}
	err = json.Unmarshal(reply, &out)
	return out.Results.Optsdata, err
}
