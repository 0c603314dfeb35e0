package kms

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/plugin"
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
	if aws := a.For("awskms").Env; !slices.Contains(c.Env, "OCIKP_KMS_CONFIG="+abs) || !slices.Contains(aws, "OCIKP_AWS_PROFILE=layers") {
		t.Fatalf("plugin environment %v, %v", c.Env, aws)
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

// Each plugin's environment holds only the common variables and its own
// cloud's, even when every cloud's settings are given at once: --adc
// reaches only the GCP plugin, --aws-profile only the AWS one.
func TestSettingsReachOnlyTheirCloud(t *testing.T) {
	for _, kv := range []string{"GOOGLE_APPLICATION_CREDENTIALS=/g", "AWS_PROFILE=a", "AZURE_TENANT_ID=z", "VAULT_TOKEN=v", "OCIKP_PASSPHRASE=p"} {
		name, value, _ := strings.Cut(kv, "=")
		t.Setenv(name, value)
	}
	p, err := New(Settings{ConfigFile: "kms.json", GCPADC: "adc.json", AWSProfile: "layers"})
	if err != nil {
		t.Fatal(err)
	}
	for kind, c := range plugins {
		cl := p.For(kind)
		env := append(plugin.FilterEnv(os.Environ(), cl.EnvAllow), cl.Env...)
		for _, kv := range env {
			if len(plugin.FilterEnv([]string{kv}, nil)) == 0 && len(plugin.FilterEnv([]string{kv}, c.EnvAllow)) == 0 {
				name, _, _ := strings.Cut(kv, "=")
				t.Errorf("%s's environment holds %s, which is not its cloud's", c.Name, name)
			}
		}
		if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "OCIKP_KMS_CONFIG=") }) {
			t.Errorf("%s does not get the KMS settings file", c.Name)
		}
	}
	want := map[string]string{"gcpkms": "OCIKP_GCPKMS_CREDENTIALS=", "awskms": "OCIKP_AWS_PROFILE=layers"}
	for kind, setting := range want {
		if !slices.ContainsFunc(p.For(kind).Env, func(kv string) bool { return strings.HasPrefix(kv, setting) }) {
			t.Errorf("%s does not get %s", kind, setting)
		}
	}
}
