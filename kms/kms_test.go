package kms

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/ocikp/ocikp/backend"
)

// Each provider owns its plugins: two values share no process pool, carry
// their own settings (as absolute paths, into the plugins' environment),
// and serve every scheme and stanza type.
func TestPluginsAreValues(t *testing.T) {
	a, err := New(Settings{ConfigFile: "rel/kms.json", AWSProfile: "layers", Procs: 4})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New(Settings{})
	for _, k := range append(slices.Clone(Schemes), StanzaTypes...) {
		if a.For(k) == nil || b.For(k) == nil || a.For(k) == b.For(k) {
			t.Fatalf("%s: plugins shared or missing", k)
		}
	}
	if a.For("p256") != nil {
		t.Fatal("a plugin for p256")
	}
	c := a.For("gcpkms")
	if c.MaxProcs != 4 || b.For("gcpkms").MaxProcs != 0 {
		t.Fatalf("procs %d", c.MaxProcs)
	}
	abs, _ := filepath.Abs("rel/kms.json")
	if !slices.Contains(c.Env, "OCIKP_KMS_CONFIG="+abs) || !slices.Contains(c.Env, "OCIKP_AWS_PROFILE=layers") {
		t.Fatalf("plugin environment %v", c.Env)
	}
	if a.Getenv("OCIKP_KMS_CONFIG") != abs {
		t.Fatal("Getenv does not see the settings")
	}
	if len(b.For("gcpkms").Env) != 0 {
		t.Fatalf("settings leaked into another provider's plugins: %v", b.For("gcpkms").Env)
	}
	if a.Running() != 0 {
		t.Fatal("plugins started before any call")
	}
	a.Close(true)
	a.Restart()
}

func TestDecryptionKeyForm(t *testing.T) {
	sel, ok, err := backend.Decrypt(backend.Background{}, "awskms:///alias/layers?region=eu-west-1")
	if !ok || err != nil || len(sel.KMS) != 1 || len(sel.Keys) != 0 {
		t.Fatalf("%+v %v %v", sel, ok, err)
	}
	for _, bad := range []string{"gcpkms://", "awskms://a b"} {
		if _, _, err := backend.Decrypt(backend.Background{}, bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
