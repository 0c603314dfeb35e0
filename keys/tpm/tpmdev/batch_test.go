package tpmdev

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
)

// TestZGenBatch: a zgen request with several points answers each as the
// key's ECDH would, in order, exec and kept alike; more than
// tpm.MaxPeers points, a bad point among them, or points beside peer are
// refused before the TPM runs any.
func TestZGenBatch(t *testing.T) {
	sw := tpmtest.Start(t)
	c, err := tpm.Create(sw.Socket, tpm.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := tpm.NewRecord("node", sw.Socket, c, tpm.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var peers [][]byte
	var want [][]byte
	for range tpm.MaxPeers {
		k, _ := ecdh.P256().GenerateKey(rand.Reader)
		peers = append(peers, k.PublicKey().Bytes())
		z, _ := k.ECDH(c.Public)
		want = append(want, z)
	}
	kept := NewKept()
	defer kept.Close()
	// exec first: a kept connection holds swtpm's socket, which serves
	// one client at a time.
	for _, m := range []struct {
		name string
		do   func(*tpm.Request) (*tpm.Reply, error)
	}{{"exec", Do}, {"kept", kept.Handle}} {
		name, do := m.name, m.do
		rep, err := do(&tpm.Request{Op: tpm.OpZGen, Device: sw.Socket, Record: data, Peers: peers})
		if err != nil || len(rep.Secrets) != len(want) {
			t.Fatalf("%s: %v", name, err)
		}
		for i := range want {
			if !bytes.Equal(rep.Secrets[i], want[i]) {
				t.Fatalf("%s: secret %d differs from software ECDH", name, i)
			}
		}
		bad := map[string]*tpm.Request{
			"too many":    {Peers: append(append([][]byte{}, peers...), peers[0])},
			"a bad point": {Peers: [][]byte{peers[0], append([]byte{4}, make([]byte, 64)...)}},
			"beside peer": {Peers: peers[:1], Peer: peers[0]},
		}
		for what, req := range bad {
			req.Op, req.Device, req.Record = tpm.OpZGen, sw.Socket, data
			if _, err := do(req); err == nil {
				t.Fatalf("%s, %s: accepted", name, what)
			} else if !strings.Contains(err.Error(), "peer") {
				t.Fatalf("%s, %s: %v", name, what, err)
			}
		}
	}
}
