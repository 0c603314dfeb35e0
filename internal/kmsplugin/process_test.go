package kmsplugin

import (
	"time"

	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	ocicfg "github.com/containers/ocicrypt/config"
	kpconfig "github.com/containers/ocicrypt/config/keyprovider-config"
	ockp "github.com/containers/ocicrypt/keywrap/keyprovider"

	"google.golang.org/grpc/codes"

	"github.com/ocikp/ocikp/internal/testdaemon"
	"github.com/ocikp/ocikp/internal/testkms"
)

const (
	keyName    = "projects/p/locations/global/keyRings/r/cryptoKeys/k"
	keyURL     = "gcpkms://" + keyName
	rsaVersion = "projects/p/locations/global/keyRings/r/cryptoKeys/rsa/cryptoKeyVersions/1"
	rsaURL     = "gcpkms://" + rsaVersion
)

// rig is ocikp and the KMS plugins, built side by side, a fake Cloud KMS,
// and wrappers (in OCIKP_PLUGIN_DIR) that record every plugin start.
type rig struct {
	t          *testing.T
	dir, ocikp string
	fake       *testkms.GCP
	env        []string
	starts     string
}

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	for _, p := range append([]string{"ocikp", "ocikp-serve"}, plugins...) {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, p), "github.com/ocikp/ocikp/cmd/"+p).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", p, err, out)
		}
	}
	r := &rig{t: t, dir: dir, ocikp: filepath.Join(dir, "ocikp"), fake: testkms.StartGCP(t, keyName, rsaVersion), starts: filepath.Join(dir, "starts")}
	wrappers := filepath.Join(dir, "wrappers")
	os.Mkdir(wrappers, 0o755)
	for _, p := range plugins {
		os.WriteFile(filepath.Join(wrappers, p), []byte(fmt.Sprintf("#!/bin/sh\necho start %s >> %q\nexec %q \"$@\"\n", p, r.starts, filepath.Join(dir, p))), 0o755)
	}
	// ocikp serve finds ocikp-serve where it finds plugins.
	os.Symlink(filepath.Join(dir, "ocikp-serve"), filepath.Join(wrappers, "ocikp-serve"))
	r.env = []string{
		"OCIKP_GCPKMS_ENDPOINT=" + r.fake.Addr, "OCIKP_GCPKMS_INSECURE=1",
		"OCIKP_PLUGIN_DIR=" + wrappers, "OCIKP_KEYSTORE=" + filepath.Join(dir, "keys"),
	}
	return r
}

var plugins = []string{"ocikp-plugin-gcpkms", "ocikp-plugin-awskms", "ocikp-plugin-azurekms", "ocikp-plugin-hashivault"}

func (r *rig) pluginStarts() int {
	b, _ := os.ReadFile(r.starts)
	os.Remove(r.starts)
	return strings.Count(string(b), "start")
}

func (r *rig) run(stdin []byte, env []string, args ...string) (string, string, error) {
	cmd := exec.Command(r.ocikp, args...)
	cmd.Env = append(append(os.Environ(), r.env...), env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func (r *rig) wrap(opts string, recipients ...string) []byte {
	var vs []string
	for _, rc := range recipients {
		vs = append(vs, b64(rc))
	}
	req, _ := json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec": map[string]any{"Parameters": map[string]any{"ocikp": vs}}, "optsdata": b64(opts)}})
	out, stderr, err := r.run(req, nil, "keyprovider", "--name", "ocikp")
	if err != nil {
		r.t.Fatalf("wrap: %v\n%s", err, stderr)
	}
	var reply struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	json.Unmarshal([]byte(out), &reply)
	return reply.R.Annotation
}

func (r *rig) unwrap(ann []byte, env []string, keys ...string) (string, string, error) {
	var vs []string
	for _, k := range keys {
		vs = append(vs, b64(k))
	}
	req, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string]any{"ocikp": vs}}, "annotation": ann}})
	out, stderr, err := r.run(req, env, "keyprovider", "--name", "ocikp")
	if err != nil {
		return "", stderr, err
	}
	var reply struct {
		R struct{ Optsdata []byte } `json:"keyunwrapresults"`
	}
	json.Unmarshal([]byte(out), &reply)
	return string(reply.R.Optsdata), stderr, nil
}

func TestKMSThroughOcikp(t *testing.T) {
	r := newRig(t)
	rec, stderr, err := r.run(nil, nil, "keygen", "--type", "mlkem768x25519", "alice")
	if err != nil {
		t.Fatalf("keygen: %v %s", err, stderr)
	}
	alice := strings.TrimSpace(rec)
	const opts = `{"symkey":"kms and p256"}`

	ann := r.wrap(opts, keyURL, alice)
	if n := r.fake.Calls("Encrypt"); n != 1 {
		t.Fatalf("wrap: %d KMS Encrypt calls, want 1", n)
	}
	if n := r.pluginStarts(); n != 1 {
		t.Fatalf("wrap: plugin started %d times, want 1", n)
	}
	var env struct {
		Recipients []struct{ Type, Kid string }
	}
	json.Unmarshal(ann, &env)
	if len(env.Recipients) != 2 || env.Recipients[0].Type != "gcpkms" || env.Recipients[0].Kid != keyURL || env.Recipients[1].Type != "mlkem768x25519" {
		t.Fatalf("stanzas: %+v", env.Recipients)
	}

	t.Run("software key alone: no plugin, no KMS call", func(t *testing.T) {
		r.fake.ResetCalls()
		got, stderr, err := r.unwrap(ann, []string{"OCIKP_GCPKMS_ENDPOINT=127.0.0.1:1"})
		if err != nil || got != opts {
			t.Fatalf("%v %s", err, stderr)
		}
		if n := r.pluginStarts(); n != 0 {
			t.Fatalf("plugin started %d times", n)
		}
	})

	t.Run("KMS alone: one Decrypt", func(t *testing.T) {
		r.fake.ResetCalls()
		empty := "OCIKP_KEYSTORE=" + t.TempDir()
		got, stderr, err := r.unwrap(ann, []string{empty})
		if err != nil || got != opts {
			t.Fatalf("%v %s", err, stderr)
		}
		if n := r.fake.Calls("Decrypt"); n != 1 {
			t.Fatalf("%d Decrypt calls, want 1", n)
		}
		// The seed's style: the key URL named as the decryption key.
		got, stderr, err = r.unwrap(ann, []string{empty}, keyURL)
		if err != nil || got != opts {
			t.Fatalf("named URL: %v %s", err, stderr)
		}
		r.pluginStarts()
	})

	t.Run("KMS refuses: clear error", func(t *testing.T) {
		r.fake.SetFault(codes.PermissionDenied)
		defer r.fake.SetFault(codes.OK)
		_, stderr, err := r.unwrap(ann, []string{"OCIKP_KEYSTORE=" + t.TempDir()})
		if err == nil {
			t.Fatal("decrypted")
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if !strings.HasPrefix(lines[0], "ocikp: error: no key can decrypt this layer; it was encrypted for 2 recipients: gcpkms "+keyURL) ||
			!strings.Contains(lines[0], "permission denied: the caller needs cloudkms.cryptoKeyVersions.useToDecrypt") ||
			len(lines) > 3 || !strings.Contains(stderr, "ocikp: hint: grant roles/cloudkms.cryptoKeyDecrypter") {
			t.Fatalf("stderr:\n%s", stderr)
		}
		r.pluginStarts()
	})

	t.Run("no plugin installed", func(t *testing.T) {
		_, stderr, err := r.unwrap(ann, []string{"OCIKP_KEYSTORE=" + t.TempDir(), "OCIKP_PLUGIN_DIR=" + t.TempDir()})
		if err == nil || !strings.Contains(stderr, "starting ocikp-plugin-gcpkms") {
			t.Fatalf("%v\n%s", err, stderr)
		}
	})

	t.Run("seed blob", func(t *testing.T) {
		seedOpts := []byte(`{"symkey":"from kmscrypt"}`)
		ct, _ := r.fake.Seal(keyName, seedOpts, nil)
		blob, _ := json.Marshal(map[string]any{"key_url": keyURL, "wrapped_key": ct, "wrap_type": "AES"})
		for _, keys := range [][]string{nil, {keyURL}} {
			got, stderr, err := r.unwrap(blob, []string{"OCIKP_KEYSTORE=" + t.TempDir()}, keys...)
			if err != nil || got != string(seedOpts) {
				t.Fatalf("keys %v: %v %s", keys, err, stderr)
			}
		}
		r.pluginStarts()
	})
}

func TestVaultThroughOcikp(t *testing.T) {
	r := newRig(t)
	v := testkms.StartVault(t, "s.tok", "transit/layers")
	r.env = append(r.env, "VAULT_ADDR="+v.URL, "VAULT_TOKEN=s.tok", "OCIKP_VAULT_TOKEN_FILE="+filepath.Join(t.TempDir(), "none"))
	const opts = `{"symkey":"vault"}`
	ann := r.wrap(opts, "hashivault://layers")
	got, stderr, err := r.unwrap(ann, nil)
	if err != nil || got != opts {
		t.Fatalf("%v %s", err, stderr)
	}
	if v.Calls("encrypt") != 1 || v.Calls("decrypt") != 1 {
		t.Fatalf("calls %d/%d", v.Calls("encrypt"), v.Calls("decrypt"))
	}
	// The address from the KMS settings file alone.
	cfg := filepath.Join(t.TempDir(), "kms.json")
	os.WriteFile(cfg, []byte(`{"vault":{"addr":"`+v.URL+`"}}`), 0o600)
	got, stderr, err = r.unwrap(ann, []string{"VAULT_ADDR=", "OCIKP_KMS_CONFIG=" + cfg})
	if err != nil || got != opts {
		t.Fatalf("address from the settings file: %v %s", err, stderr)
	}
	_, stderr, err = r.unwrap(ann, []string{"VAULT_TOKEN=wrong"})
	if err == nil || !strings.Contains(stderr, "permission denied: the token needs the update capability on transit/decrypt/layers") {
		t.Fatalf("wrong token: %v\n%s", err, stderr)
	}
}

func TestAzureThroughOcikp(t *testing.T) {
	r := newRig(t)
	az := testkms.StartAzure(t, "tok", "layers")
	r.env = append(r.env, "SSL_CERT_FILE="+az.CAFile, "OCIKP_AZURE_ACCESS_TOKEN=tok", az.AllowEnv())
	host := strings.TrimPrefix(az.URL, "https://")
	const opts = `{"symkey":"azure"}`
	// gocloud.dev's spelling for wrap; the stanza pins the key version.
	ann := r.wrap(opts, "azurekeyvault://"+host+"/layers")
	got, stderr, err := r.unwrap(ann, nil)
	if err != nil || got != opts {
		t.Fatalf("%v %s", err, stderr)
	}
	if az.Calls("wrapkey") != 1 || az.Calls("unwrapkey") != 1 {
		t.Fatalf("calls %d/%d", az.Calls("wrapkey"), az.Calls("unwrapkey"))
	}
	az.SetFault(403)
	_, stderr, err = r.unwrap(ann, nil)
	if err == nil || !strings.Contains(stderr, "permission denied: the caller needs the unwrapKey key permission") {
		t.Fatalf("denied: %v\n%s", err, stderr)
	}
}

// An asymmetric key version: the public key is fetched once and cached, and
// from then on encrypting needs no plugin and no KMS request.
func TestGCPAsymmetricOffline(t *testing.T) {
	r := newRig(t)
	const opts = `{"symkey":"rsa"}`
	ann := r.wrap(opts, rsaURL)
	if n, m := r.fake.Calls("GetPublicKey"), r.fake.Calls("Encrypt"); n != 1 || m != 0 {
		t.Fatalf("first wrap: %d GetPublicKey, %d Encrypt", n, m)
	}
	r.pluginStarts()
	r.fake.ResetCalls()
	for range 3 {
		ann = r.wrap(opts, rsaURL)
	}
	if n := r.fake.Calls("GetPublicKey") + r.fake.Calls("Encrypt"); n != 0 {
		t.Fatalf("cached wraps made %d KMS requests", n)
	}
	if n := r.pluginStarts(); n != 0 {
		t.Fatalf("cached wraps started the plugin %d times", n)
	}
	var env struct{ Recipients []struct{ Type, Kid string } }
	json.Unmarshal(ann, &env)
	if len(env.Recipients) != 1 || env.Recipients[0].Type != "gcpkms-rsa" || env.Recipients[0].Kid != rsaURL {
		t.Fatalf("stanzas %+v", env.Recipients)
	}
	got, stderr, err := r.unwrap(ann, []string{"OCIKP_KEYSTORE=" + t.TempDir()})
	if err != nil || got != opts {
		t.Fatalf("unwrap: %v %s", err, stderr)
	}
	if n := r.fake.Calls("AsymmetricDecrypt"); n != 1 {
		t.Fatalf("%d AsymmetricDecrypt calls", n)
	}
	// The cache shows in ocikp list; kms pubkey refuses symmetric keys.
	out, _, err := r.run(nil, nil, "list")
	if err != nil || !strings.Contains(out, rsaURL) || !strings.Contains(out, "gcpkms-rsa (cached public key)") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	_, stderr, err = r.run(nil, nil, "kms", "pubkey", keyURL)
	if err == nil || !strings.Contains(stderr, "symmetric keys are wrapped by the KMS") {
		t.Fatalf("kms pubkey symmetric: %v %s", err, stderr)
	}
	out, stderr, err = r.run(nil, []string{"OCIKP_KEYSTORE=" + t.TempDir()}, "kms", "pubkey", rsaURL)
	if err != nil || strings.TrimSpace(out) != rsaURL || !strings.Contains(stderr, "cached the RSA-2048 public key") {
		t.Fatalf("kms pubkey: %v %q %s", err, out, stderr)
	}
}

// AWS RSA and Azure keys, cached with ocikp kms pubkey: wrapping makes no
// KMS request and starts no plugin; unwrapping makes one.
func TestCachedPublicKeysAWSAndAzure(t *testing.T) {
	r := newRig(t)
	const rsaID = "2222abcd-12ab-34cd-56ef-1234567890ab"
	aws := testkms.StartAWS(t, nil, map[string]string{"alias/rsa": rsaID})
	aws.AddRSAKey(t, rsaID)
	az := testkms.StartAzure(t, "tok", "layers")
	dir := t.TempDir()
	r.env = append(r.env, "AWS_ENDPOINT_URL_KMS="+aws.URL, "AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=secret",
		"AWS_REGION=eu-west-1", "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+dir+"/c", "AWS_SHARED_CREDENTIALS_FILE="+dir+"/s",
		"SSL_CERT_FILE="+az.CAFile, "OCIKP_AZURE_ACCESS_TOKEN=tok", az.AllowEnv())
	awsURL := "awskms:///alias/rsa"
	azURL := "azurekms://" + strings.TrimPrefix(az.URL, "https://") + "/layers"
	for _, u := range []string{awsURL, azURL} {
		if out, stderr, err := r.run(nil, nil, "kms", "pubkey", u); err != nil || strings.TrimSpace(out) != u {
			t.Fatalf("kms pubkey %s: %v %s", u, err, stderr)
		}
	}
	r.pluginStarts()
	aws.ResetCalls()
	az.ResetCalls()
	const opts = `{"symkey":"offline"}`
	ann := r.wrap(opts, awsURL, azURL)
	if n := r.pluginStarts(); n != 0 {
		t.Fatalf("wrap started the plugin %d times", n)
	}
	if n := aws.Calls("Encrypt") + aws.Calls("GetPublicKey") + az.Calls("wrapkey") + az.Calls("getkey"); n != 0 {
		t.Fatalf("wrap made %d KMS requests", n)
	}
	var env struct{ Recipients []struct{ Type, Kid string } }
	json.Unmarshal(ann, &env)
	if len(env.Recipients) != 2 || env.Recipients[0].Type != "awskms-rsa" || env.Recipients[1].Type != "azurekms" ||
		!strings.HasSuffix(env.Recipients[1].Kid, "/layers/0123456789abcdef0123456789abcdef") {
		t.Fatalf("stanzas %+v", env.Recipients)
	}
	empty := "OCIKP_KEYSTORE=" + t.TempDir()
	got, stderr, err := r.unwrap(ann, []string{empty}, awsURL)
	if err != nil || got != opts || aws.Calls("Decrypt") != 1 {
		t.Fatalf("AWS unwrap: %v %s (%d Decrypt)", err, stderr, aws.Calls("Decrypt"))
	}
	got, stderr, err = r.unwrap(ann, []string{empty}, env.Recipients[1].Kid)
	if err != nil || got != opts || az.Calls("unwrapkey") != 1 {
		t.Fatalf("Azure unwrap: %v %s (%d unwrapkey)", err, stderr, az.Calls("unwrapkey"))
	}
}

// A Transit rsa-2048 key: public key cached with ocikp kms pubkey, wraps
// offline in Transit's own ciphertext form, transit/decrypt opens them; an
// AES key is refused for caching.
func TestVaultRSAOffline(t *testing.T) {
	r := newRig(t)
	v := testkms.StartVault(t, "s.tok", "transit/aes")
	v.AddRSAKey(t, "transit/rsa")
	r.env = append(r.env, "VAULT_ADDR="+v.URL, "VAULT_TOKEN=s.tok", "OCIKP_VAULT_TOKEN_FILE="+filepath.Join(t.TempDir(), "none"))
	if out, stderr, err := r.run(nil, nil, "kms", "pubkey", "hashivault://rsa"); err != nil || strings.TrimSpace(out) != "hashivault://rsa" {
		t.Fatalf("kms pubkey: %v %s", err, stderr)
	}
	if _, stderr, err := r.run(nil, nil, "kms", "pubkey", "hashivault://aes"); err == nil || !strings.Contains(stderr, "needs an rsa-* key") {
		t.Fatalf("aes pubkey: %v %s", err, stderr)
	}
	r.pluginStarts()
	v.ResetCalls()
	const opts = `{"symkey":"vault rsa"}`
	ann := r.wrap(opts, "hashivault://rsa")
	if n := r.pluginStarts(); n != 0 || v.Calls("encrypt")+v.Calls("keys") != 0 {
		t.Fatalf("offline wrap: %d plugin starts, %d Vault requests", n, v.Calls("encrypt")+v.Calls("keys"))
	}
	var env struct{ Recipients []struct{ Type, Key string } }
	json.Unmarshal(ann, &env)
	if k, _ := base64.StdEncoding.DecodeString(env.Recipients[0].Key); env.Recipients[0].Type != "hashivault" || !strings.HasPrefix(string(k), "vault:v1:") {
		t.Fatalf("stanza %+v", env.Recipients)
	}
	got, stderr, err := r.unwrap(ann, []string{"OCIKP_KEYSTORE=" + t.TempDir()})
	if err != nil || got != opts || v.Calls("decrypt") != 1 {
		t.Fatalf("unwrap: %v %s (%d decrypt)", err, stderr, v.Calls("decrypt"))
	}
}

// A Workload Identity Federation credentials file (external_account, subject
// token from a file) given with --adc: the real auth library exchanges the
// token at a fake STS, and the real client calls a TLS fake KMS with the
// access token it got. All offline, on loopback.
func TestWorkloadIdentityFederation(t *testing.T) {
	r := newRig(t)
	const access = "ya29.from-sts"
	fake := testkms.StartGCPTLS(t, access, keyName)
	var exchanged int
	sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		req.ParseForm()
		if req.Form.Get("subject_token") != "oidc-subject-token" || req.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" {
			http.Error(w, `{"error":"invalid_grant"}`, 400)
			return
		}
		exchanged++
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}`, access)
	}))
	defer sts.Close()
	dir := t.TempDir()
	subject := filepath.Join(dir, "subject")
	os.WriteFile(subject, []byte("oidc-subject-token"), 0o600)
	creds := filepath.Join(dir, "wif.json")
	os.WriteFile(creds, []byte(fmt.Sprintf(`{"type":"external_account",
	  "audience":"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
	  "subject_token_type":"urn:ietf:params:oauth:token-type:jwt",
	  "token_url":%q, "credential_source":{"file":%q}}`, sts.URL, subject)), 0o600)
	r.env = []string{"OCIKP_GCPKMS_ENDPOINT=" + fake.Addr, "SSL_CERT_FILE=" + fake.CAFile,
		"OCIKP_KEYSTORE=" + filepath.Join(dir, "keys"), "GOOGLE_APPLICATION_CREDENTIALS=" + filepath.Join(dir, "none.json")}

	req, _ := json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec": map[string]any{"Parameters": map[string]any{"ocikp": []string{b64(keyURL)}}}, "optsdata": b64("wif")}})
	out, stderr, err := r.run(req, nil, "keyprovider", "--name", "ocikp", "--adc", creds)
	if err != nil {
		t.Fatalf("wrap with an external_account file: %v\n%s", err, stderr)
	}
	if exchanged == 0 || fake.Calls("Encrypt") != 1 {
		t.Fatalf("%d token exchanges, %d Encrypt calls", exchanged, fake.Calls("Encrypt"))
	}
	var reply struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	json.Unmarshal([]byte(out), &reply)
	ureq, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string]any{}}, "annotation": reply.R.Annotation}})
	out, stderr, err = r.run(ureq, nil, "keyprovider", "--name", "ocikp", "--adc", creds)
	if err != nil || !strings.Contains(out, b64("wif")) {
		t.Fatalf("unwrap: %v\n%s", err, stderr)
	}
	// The same file through Application Default Credentials.
	before := exchanged
	out, stderr, err = r.run(ureq, []string{"GOOGLE_APPLICATION_CREDENTIALS=" + creds}, "keyprovider", "--name", "ocikp")
	if err != nil || !strings.Contains(out, b64("wif")) || exchanged == before {
		t.Fatalf("unwrap with GOOGLE_APPLICATION_CREDENTIALS: %v\n%s", err, stderr)
	}
	// Without credentials the TLS KMS refuses, and says what to check.
	_, stderr, err = r.run(ureq, nil, "keyprovider", "--name", "ocikp")
	if err == nil || !strings.Contains(stderr, "credentials") {
		t.Fatalf("no credentials: %v\n%s", err, stderr)
	}
	// A credentials file of an unknown type is refused before any request.
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"type":"api_key"}`), 0o600)
	_, stderr, err = r.run(ureq, nil, "keyprovider", "--name", "ocikp", "--adc", bad)
	if err == nil || !strings.Contains(stderr, `unsupported type "api_key"`) {
		t.Fatalf("bad type: %v\n%s", err, stderr)
	}
}

// KMS recipients through ocikp serve: the GCP plugin starts once and stays
// warm across calls (no process start per call).
func TestKMSThroughServe(t *testing.T) {
	r := newRig(t)
	rec, _, err := r.run(nil, nil, "keygen", "--type", "mlkem768x25519", "alice")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := r.serve(r.env)
	kw := ockp.NewKeyWrapper("ocikp", kpconfig.KeyProviderAttrs{Grpc: addr})
	opts := []byte(`{"symkey":"kms over grpc"}`)
	ann, err := kw.WrapKeys(&ocicfg.EncryptConfig{Parameters: map[string][][]byte{"ocikp": {[]byte(keyURL), []byte(strings.TrimSpace(rec))}}}, opts)
	if err != nil {
		t.Fatalf("wrap over gRPC: %v", err)
	}
	for range 3 {
		got, err := kw.UnwrapKey(&ocicfg.DecryptConfig{Parameters: map[string][][]byte{}}, ann)
		if err != nil || string(got) != string(opts) {
			t.Fatalf("unwrap over gRPC with an empty keystore: %v", err)
		}
	}
	if n := r.fake.Calls("Decrypt"); n != 3 {
		t.Errorf("%d KMS Decrypt calls for 3 unwraps", n)
	}
	if n := r.pluginStarts(); n != 1 {
		t.Errorf("the plugin started %d times for 4 calls; want 1 (kept warm)", n)
	}
}

// serve runs ocikp serve on a loopback port with an empty keystore (so
// unwraps need the KMS) and the given environment, until the test ends.
func (r *rig) serve(env []string, args ...string) (string, *exec.Cmd) {
	t := r.t
	cmd := exec.Command(r.ocikp, append([]string{"--keystore", t.TempDir(), "serve", "--listen", "127.0.0.1:0", "--name", "ocikp"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	logs := &testdaemon.Log{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	addr := logs.Wait(t, testdaemon.Serving)
	return addr, cmd
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces, so read after ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// The service's KMS plugins read the KMS settings again when the settings
// file changes (polled) or on SIGHUP, and a plugin killed behind the
// service's back is replaced without a failed call.
func TestServeReloadsKMSSettings(t *testing.T) {
	r := newRig(t)
	opts := []byte(`{"symkey":"reloaded"}`)
	ann := r.wrap(string(opts), keyURL)
	r.pluginStarts() // the wrap's
	settings := filepath.Join(t.TempDir(), "kms.json")
	write := func(endpoint string) {
		// Write-then-rename, as configuration management does.
		tmp := settings + ".new"
		os.WriteFile(tmp, []byte(`{"timeout":"2s","gcp":{"endpoint":"`+endpoint+`"}}`), 0o600)
		os.Rename(tmp, settings)
	}
	write("127.0.0.1:1") // nothing listens there
	var env []string
	for _, e := range r.env {
		if !strings.HasPrefix(e, "OCIKP_GCPKMS_ENDPOINT=") {
			env = append(env, e)
		}
	}
	addr, serve := r.serve(env, "--kms-config", settings, "--reload-interval", "100ms")
	kw := ockp.NewKeyWrapper("ocikp", kpconfig.KeyProviderAttrs{Grpc: addr})
	unwrap := func() error {
		got, err := kw.UnwrapKey(&ocicfg.DecryptConfig{Parameters: map[string][][]byte{}}, ann)
		if err == nil && string(got) != string(opts) {
			t.Fatalf("unwrapped %q", got)
		}
		return err
	}
	if err := unwrap(); err == nil || !strings.Contains(err.Error(), "gcpkms") {
		t.Fatalf("unwrap through a KMS endpoint where nothing listens: %v", err)
	}
	if n := r.pluginStarts(); n != 1 {
		t.Fatalf("%d plugin starts", n)
	}
	write(r.fake.Addr)
	var err error
	for range 50 {
		if err = unwrap(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the changed settings file was not picked up: %v", err)
	}
	if n := r.pluginStarts(); n != 1 {
		t.Fatalf("%d plugin starts after the settings changed, want 1", n)
	}
	// SIGHUP restarts the plugins too.
	serve.Process.Signal(syscall.SIGHUP)
	for i := 0; ; i++ {
		if err := unwrap(); err != nil {
			t.Fatal(err)
		}
		if n := r.pluginStarts(); n == 1 {
			break
		} else if i > 50 {
			t.Fatalf("no plugin restart after SIGHUP (%d starts)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A plugin killed while idle: the next call succeeds on a new process.
	kids := children(serve.Process.Pid)
	if len(kids) != 1 {
		t.Fatalf("%d child processes, want the one plugin", len(kids))
	}
	syscall.Kill(kids[0], syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	if err := unwrap(); err != nil {
		t.Fatalf("after the plugin was killed: %v", err)
	}
	if n := r.pluginStarts(); n != 1 {
		t.Fatalf("%d plugin starts after the kill, want 1", n)
	}
}

// A plugin ends with the exec provider that started it: ocikp keyprovider
// killed (SIGTERM, SIGKILL) while its plugin waits on a KMS that never
// answers leaves no plugin running until its own KMS timeout.
func TestPluginEndsWithProvider(t *testing.T) {
	r := newRig(t)
	ann := r.wrap(`{"symkey":"orphan"}`, keyURL)
	req, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string]any{}}, "annotation": ann}})
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			l, accepted := hangingKMS(t)
			cmd := exec.Command(r.ocikp, "keyprovider", "--name", "ocikp")
			cmd.Env = append(append(os.Environ(), r.env...), "OCIKP_GCPKMS_ENDPOINT="+l.Addr().String(), "OCIKP_KMS_TIMEOUT=60s")
			cmd.Stdin = bytes.NewReader(req)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			select {
			case <-accepted: // the plugin is in its KMS call
			case <-time.After(20 * time.Second):
				t.Fatal("the plugin never called the KMS")
			}
			kids := children(cmd.Process.Pid)
			if len(kids) != 1 {
				t.Fatalf("%d child processes of ocikp, want its plugin", len(kids))
			}
			plugin := kids[0]
			t.Cleanup(func() { syscall.Kill(plugin, syscall.SIGKILL) })
			cmd.Process.Signal(sig)
			cmd.Wait()
			start := time.Now()
			for alive(plugin) {
				if time.Since(start) > 5*time.Second {
					t.Fatalf("the plugin (pid %d) still runs 5 s after ocikp ended by %v", plugin, sig)
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("plugin gone %v after ocikp ended by %v", time.Since(start).Round(time.Millisecond), sig)
		})
	}
}

// hangingKMS is a Cloud KMS endpoint that accepts connections and never
// answers; accepted receives each connection.
func hangingKMS(t *testing.T) (net.Listener, chan net.Conn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	})
	return l, accepted
}

// alive reports whether a process exists and has not exited (a zombie
// waiting for a reaper has ended).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}
