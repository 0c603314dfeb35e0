package envelope_test

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/p256"
	"github.com/ocikp/ocikp/pq"
)

// testdata/vectors-pq-v1.json: envelopes with post-quantum stanzas
// (mlkem768x25519, mlkem768p256), for other implementations. Identities
// are "TYPE:HEX": a KEM's 32-byte seed, or "p256:" and a P-256 scalar.
// Regenerate with: go test ./envelope -run PQVectors -update
const pqVectorsFile = "testdata/vectors-pq-v1.json"

func identityOf(t *testing.T, spec string) (envelope.Identity, string) {
	typ, h, _ := strings.Cut(spec, ":")
	raw, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	if typ == p256.StanzaType {
		priv, err := ecdh.P256().NewPrivateKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		return p256.NewIdentityFromKey("vector", priv), p256.Format(priv.PublicKey())
	}
	kind := pq.KindOf(typ)
	priv, err := kind.PrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	id, err := pq.NewIdentityFromKey("vector", pq.Private{Key: priv})
	if err != nil {
		t.Fatal(err)
	}
	return id, kind.Format(priv.PublicKey().Bytes())
}

func TestPQVectors(t *testing.T) {
	if *update {
		writePQVectors(t)
	}
	checkVectors(t, pqVectorsFile, identityOf)
}

func writePQVectors(t *testing.T) {
	specs := []string{
		"mlkem768x25519:" + strings.Repeat("11", 32),
		"mlkem768p256:" + strings.Repeat("22", 32),
		"mlkem768x25519:" + strings.Repeat("33", 32),
		"p256:" + strings.Repeat("44", 32),
	}
	rec := func(i int) envelope.Recipient {
		_, s := identityOf(t, specs[i])
		var r envelope.Recipient
		var err error
		if strings.HasPrefix(specs[i], "p256:") {
			r, err = p256.Parse(s)
		} else {
			r, err = pq.Parse(s)
		}
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	seal := func(rs ...envelope.Recipient) []byte {
		b, err := envelope.Seal(secret, rs...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	opts := base64.StdEncoding.EncodeToString(secret)
	xw, mp := seal(rec(0)), seal(rec(1))
	both := seal(rec(0), rec(1))
	mixed := seal(rec(1), rec(3))
	var vs []vector
	add := func(name string, ids []int, blob []byte, errClass string) {
		v := vector{Name: name, Annotation: string(blob), Error: errClass}
		for _, i := range ids {
			_, r := identityOf(t, specs[i])
			v.Identities = append(v.Identities, specs[i])
			v.Recipients = append(v.Recipients, r)
		}
		if errClass == "" {
			v.Optsdata = opts
		}
		vs = append(vs, v)
	}
	add("mlkem768x25519", []int{0}, xw, "")
	add("mlkem768p256", []int{1}, mp, "")
	add("both kinds, first key", []int{0}, both, "")
	add("both kinds, second key", []int{1}, both, "")
	add("mlkem768p256 beside p256, p256 key", []int{3}, mixed, "")
	add("wrong mlkem768x25519 key", []int{2}, xw, "no_identity")
	add("mlkem768x25519 key for an mlkem768p256 stanza", []int{0}, mp, "no_identity")
	// An untagged stanza still opens.
	e, _ := envelope.Parse(xw)
	id0, _ := identityOf(t, specs[0])
	fk, _ := e.UnwrapFileKey(id0)
	s := *e.Recipients[0]
	s.Tag = nil
	untagged := &envelope.Envelope{Payload: e.Payload}
	if err := untagged.Reseal(fk, stanzaRecipient{&s}); err != nil {
		t.Fatal(err)
	}
	ub, _ := untagged.Marshal()
	add("untagged mlkem768x25519 stanza", []int{0}, ub, "")
	// A stanza relabelled as the other KEM, MAC recomputed, opens for neither.
	r := *e.Recipients[0]
	r.Type = pq.MLKEMP256
	relabelled := &envelope.Envelope{Payload: e.Payload}
	if err := relabelled.Reseal(fk, stanzaRecipient{&r}); err != nil {
		t.Fatal(err)
	}
	rb, _ := relabelled.Marshal()
	add("relabelled stanza", []int{0, 1}, rb, "no_identity")
	// The encapsulated key altered under a matching tag: tampered.
	bad := *e.Recipients[0]
	bad.Key = bytes.Clone(bad.Key)
	bad.Key[0] ^= 1
	tampered := &envelope.Envelope{Payload: e.Payload}
	if err := tampered.Reseal(fk, stanzaRecipient{&bad}); err != nil {
		t.Fatal(err)
	}
	tb, _ := tampered.Marshal()
	add("tampered wrapped key", []int{0}, tb, "tampered")
	out, _ := json.MarshalIndent(vectorFile{
		Comment: "ocikp envelope v1 test vectors with post-quantum stanzas: see docs/format.md. identities are TYPE:HEX (a hybrid KEM's 32-byte seed as crypto/hpke's NewPrivateKey takes it, or p256: and a P-256 scalar); recipients are their recipient strings; annotation is the blob exactly as stored; optsdata is base64 of the expected plaintext; error is the class a reader must report.",
		Vectors: vs,
	}, "", "  ")
	if err := os.WriteFile(pqVectorsFile, append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
