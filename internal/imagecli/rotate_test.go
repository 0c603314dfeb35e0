package imagecli

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/containers/ocicrypt/blockcipher"
	"github.com/containers/ocicrypt/config"
	"github.com/containers/ocicrypt/keywrap/jwe"
	"github.com/containers/ocicrypt/keywrap/pgp"
	"github.com/containers/ocicrypt/keywrap/pkcs7"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/kmspub"
	"github.com/ocikp/ocikp/keys/soft"
)

// encryptedLayout writes a layout whose one layer is really encrypted by
// ocicrypt's layer cipher; wrap turns the layer's private options into
// its key annotations. It returns the directory and the plain content.
func encryptedLayout(t *testing.T, wrap func(opts []byte) map[string]string) (string, []byte) {
	dir := t.TempDir()
	put := layoutWriter(t, dir)
	plain := bytes.Repeat([]byte("layer content "), 1000)
	h, _ := blockcipher.NewLayerBlockCipherHandler()
	r, fin, err := h.Encrypt(bytes.NewReader(plain), blockcipher.AES256CTR)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := io.ReadAll(r)
	opts, err := fin()
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := json.Marshal(opts.Private)
	pub, _ := json.Marshal(opts.Public)
	ann := wrap(priv)
	ann["org.opencontainers.image.enc.pubopts"] = base64.StdEncoding.EncodeToString(pub)
	a, _ := json.Marshal(ann)
	cfg := put([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":%q,"size":%d,"annotations":%s}]}`,
		cfg, put(enc), len(enc), a)
	md := put([]byte(m))
	os.WriteFile(filepath.Join(dir, "index.json"), fmt.Appendf(nil, `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"annotations":{"org.opencontainers.image.ref.name":"img"}}]}`, md, len(m)), 0o644)
	return dir, plain
}

// layerOf returns the layer descriptor of the layout's image.
func layerOf(t *testing.T, dir string) (digest string, ann map[string]string) {
	var m struct {
		Layers []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal([]byte(readManifest(t, dir)), &m); err != nil {
		t.Fatal(err)
	}
	return m.Layers[0].Digest, m.Layers[0].Annotations
}

// openLayer decrypts the layout's layer with the secret of its ocikp
// envelope, opened by st's keys.
func openLayer(t *testing.T, dir string, st *soft.Store, name string) ([]byte, error) {
	digest, ann := layerOf(t, dir)
	blob, _ := base64.StdEncoding.DecodeString(ann["org.opencontainers.image.enc.keys.provider.ocikp"])
	env, err := envelope.Parse(blob)
	if err != nil {
		return nil, err
	}
	k, err := st.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := k.PrivateKey(nil)
	id := p256Identity(priv)
	opts, err := env.Open(id)
	if err != nil {
		return nil, err
	}
	return decryptBlob(t, dir, digest, opts, ann)
}

func decryptBlob(t *testing.T, dir, digest string, privOpts []byte, ann map[string]string) ([]byte, error) {
	var priv blockcipher.PrivateLayerBlockCipherOptions
	var pub blockcipher.PublicLayerBlockCipherOptions
	json.Unmarshal(privOpts, &priv)
	pb, _ := base64.StdEncoding.DecodeString(ann["org.opencontainers.image.enc.pubopts"])
	json.Unmarshal(pb, &pub)
	f, err := os.Open(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, _ := blockcipher.NewLayerBlockCipherHandler()
	r, _, err := h.Decrypt(f, blockcipher.LayerBlockCipherOptions{Private: priv, Public: pub})
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// --rotate-layer-keys in a layout: a new blob under a new key, which the
// remaining key opens to the same content; the old key, and the old layer
// key, open nothing of it.
func TestRotateLayout(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	var oldOpts []byte
	dir, plain := encryptedLayout(t, func(opts []byte) map[string]string {
		oldOpts = opts
		blob, err := envelope.Seal(opts, alice, bob)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"org.opencontainers.image.enc.keys.provider.ocikp": base64.StdEncoding.EncodeToString(blob)}
	})
	oldDigest, _ := layerOf(t, dir)
	out, stderr, code := runMain("rewrap", "--keystore", ks, "--remove", alice.String(), "--rotate-layer-keys", "oci:"+dir+":img")
	if code != 0 || !strings.Contains(stderr, "new layer key and blob") {
		t.Fatalf("rotate: %d\n%s%s", code, out, stderr)
	}
	newDigest, ann := layerOf(t, dir)
	if newDigest == oldDigest {
		t.Fatal("the layer kept its blob")
	}
	got, err := openLayer(t, dir, st, "bob")
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("bob's view of the rotated layer: %v", err)
	}
	if _, err := openLayer(t, dir, st, "alice"); err == nil {
		t.Fatal("alice opens the rotated layer")
	}
	if got, err := decryptBlob(t, dir, newDigest, oldOpts, ann); err == nil && bytes.Equal(got, plain) {
		t.Fatal("the old layer key opens the new blob")
	}
}

// migrate in a layout: a JWE-wrapped layer (ocicrypt's own wrapper) gets an
// ocikp envelope that opens the layer; the JWE annotation goes.
func TestMigrateLayoutJWE(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	bob := newKey(t, st, "bob")
	privPEM, pubPEM := rsaPair(t)
	dir, plain := encryptedLayout(t, func(opts []byte) map[string]string {
		cc, err := config.EncryptWithJwe([][]byte{pubPEM})
		if err != nil {
			t.Fatal(err)
		}
		w, err := jwe.NewKeyWrapper().WrapKeys(cc.EncryptConfig, opts)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"org.opencontainers.image.enc.keys.jwe": base64.StdEncoding.EncodeToString(w)}
	})
	keyFile := filepath.Join(t.TempDir(), "jwe.pem")
	os.WriteFile(keyFile, privPEM, 0o600)
	_, stderr, code := runMain("migrate", "--keystore", ks, "--recipient", bob.String(), "oci:"+dir+":img")
	checkError(t, stderr, code, "no given key opens any of the layer's wrapped keys (jwe)")
	out, stderr, code := runMain("migrate", "--keystore", ks, "--recipient", "bob", "--key", keyFile, "oci:"+dir+":img")
	if code != 0 || !strings.Contains(out, "migrated") {
		t.Fatalf("migrate: %d\n%s%s", code, out, stderr)
	}
	if _, ann := layerOf(t, dir); ann["org.opencontainers.image.enc.keys.jwe"] != "" {
		t.Fatal("the JWE annotation is still there")
	}
	got, err := openLayer(t, dir, st, "bob")
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("bob after the migration: %v", err)
	}
}

// migrate of a PGP-wrapped layer (ocicrypt's wrapper, an OpenPGP key made
// here), with the armored secret key given to --gpg-key.
func TestMigrateLayoutPGP(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	newKey(t, st, "bob")
	e, err := openpgp.NewEntity("ci", "", "ci@example.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pubRing, secret bytes.Buffer
	e.Serialize(&pubRing)
	aw, _ := armor.Encode(&secret, openpgp.PrivateKeyType, nil)
	e.SerializePrivate(aw, nil)
	aw.Close()
	dir, plain := encryptedLayout(t, func(opts []byte) map[string]string {
		cc, err := config.EncryptWithGpg([][]byte{[]byte("ci@example.test")}, pubRing.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		w, err := pgp.NewKeyWrapper().WrapKeys(cc.EncryptConfig, opts)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"org.opencontainers.image.enc.keys.pgp": base64.StdEncoding.EncodeToString(w)}
	})
	keyFile := filepath.Join(t.TempDir(), "secret.asc")
	os.WriteFile(keyFile, secret.Bytes(), 0o600)
	out, stderr, code := runMain("migrate", "--keystore", ks, "--recipient", "bob", "--gpg-key", keyFile, "oci:"+dir+":img")
	if code != 0 || !strings.Contains(out, "migrated") {
		t.Fatalf("migrate: %d\n%s%s", code, out, stderr)
	}
	got, err := openLayer(t, dir, st, "bob")
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("bob after the migration: %v", err)
	}
}

// migrate of a PKCS#7-wrapped layer, with --key and --cert.
func TestMigrateLayoutPKCS7(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	newKey(t, st, "bob")
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ci"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, _ := x509.MarshalPKCS8PrivateKey(k)
	dir, plain := encryptedLayout(t, func(opts []byte) map[string]string {
		cc, err := config.EncryptWithPkcs7([][]byte{certPEM})
		if err != nil {
			t.Fatal(err)
		}
		w, err := pkcs7.NewKeyWrapper().WrapKeys(cc.EncryptConfig, opts)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"org.opencontainers.image.enc.keys.pkcs7": base64.StdEncoding.EncodeToString(w)}
	})
	kd := t.TempDir()
	keyFile, certFile := filepath.Join(kd, "k.pem"), filepath.Join(kd, "c.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	os.WriteFile(certFile, certPEM, 0o644)
	out, stderr, code := runMain("migrate", "--keystore", ks, "--recipient", "bob", "--key", keyFile, "--cert", certFile, "oci:"+dir+":img")
	if code != 0 || !strings.Contains(out, "migrated") {
		t.Fatalf("migrate: %d\n%s%s", code, out, stderr)
	}
	got, err := openLayer(t, dir, st, "bob")
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("bob after the migration: %v", err)
	}
}

// An unreachable registry: one error line naming the image, and the hint.
func TestUnreachableRegistry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, stderr, code := runMain("inspect", "--tls-verify=false", "docker://"+addr+"/app:1")
	checkError(t, stderr, code, "docker://"+addr+"/app:1: ")
	if !strings.Contains(stderr, "ocikp: hint: check the name and that the registry answers") {
		t.Fatalf("no hint: %s", stderr)
	}
}

// cacheKMSKey makes an RSA key and caches its public half in the
// keystore as the asymmetric AWS KMS key url: ocikp then wraps for url
// offline, as a KMS plugin would for a key whose policy lets anyone
// encrypt (which an attacker's own key can).
func cacheKMSKey(t *testing.T, ks, url string) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c := &kmspub.Cache{Dir: filepath.Join(ks, "kms")}
	if err := c.Put(&kmspub.Entry{URL: url, StanzaType: "awskms-rsa", KID: url, N: k.N.Bytes(), E: k.E, Fetched: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return k
}

// kmsOpens reports whether k opens a stanza of the layout's envelope for
// the layer's options.
func kmsOpens(t *testing.T, dir string, k *rsa.PrivateKey) bool {
	_, ann := layerOf(t, dir)
	blob, _ := base64.StdEncoding.DecodeString(ann["org.opencontainers.image.enc.keys.provider.ocikp"])
	env, err := envelope.Parse(blob)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range env.Recipients {
		if fk, err := rsa.DecryptOAEP(sha256.New(), nil, k, s.Key, nil); err == nil {
			if _, err := env.OpenPayload(fk); err == nil {
				return true
			}
		}
	}
	return false
}

// A KMS stanza planted in the envelope before a rotation (whoever is being
// removed knows the old layer key and can write one for a key of their
// own) does not get the new layer key: it is dropped and listed, and a
// KMS key the user names with --keep is kept.
func TestRotateDropsPlantedKMS(t *testing.T) {
	const (
		team     = "awskms://arn:aws:kms:eu-west-1:111111111111:key/team"
		attacker = "awskms://arn:aws:kms:eu-west-1:666666666666:key/mallory"
	)
	ks := filepath.Join(t.TempDir(), "keys")
	st := &soft.Store{Dir: ks}
	alice, bob := newKey(t, st, "alice"), newKey(t, st, "bob")
	teamKey, attackerKey := cacheKMSKey(t, ks, team), cacheKMSKey(t, ks, attacker)
	c := &kmspub.Cache{Dir: filepath.Join(ks, "kms")}
	var recips []envelope.Recipient
	for _, u := range []string{team, attacker} {
		e, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := e.Recipient()
		recips = append(recips, r)
	}
	mkLayout := func() string {
		dir, _ := encryptedLayout(t, func(opts []byte) map[string]string {
			blob, err := envelope.Seal(opts, append([]envelope.Recipient{alice, bob}, recips...)...)
			if err != nil {
				t.Fatal(err)
			}
			return map[string]string{"org.opencontainers.image.enc.keys.provider.ocikp": base64.StdEncoding.EncodeToString(blob)}
		})
		return dir
	}

	// Nothing named: neither KMS key gets the new layer key.
	dir := mkLayout()
	if !kmsOpens(t, dir, attackerKey) {
		t.Fatal("the planted stanza does not open the old layer key")
	}
	// The dry run shows the same plan and writes nothing.
	index0, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	out, stderr, code := runMain("rewrap", "--keystore", ks, "--dry-run", "--remove", bob.String(), "--rotate-layer-keys", "oci:"+dir+":img")
	if code != 0 || !strings.Contains(out, "planned") || !strings.Contains(stderr, "dropped  awskms-rsa "+attacker) || !strings.Contains(stderr, "ocikp: warning: ") {
		t.Fatalf("dry run: %d\n%s%s", code, out, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, index0) {
		t.Fatal("the dry run wrote index.json")
	}
	out, stderr, code = runMain("rewrap", "--keystore", ks, "--remove", bob.String(), "--rotate-layer-keys", "oci:"+dir+":img")
	if code != 0 {
		t.Fatalf("rotate: %d\n%s%s", code, out, stderr)
	}
	if kmsOpens(t, dir, attackerKey) {
		t.Fatalf("the new layer key is wrapped for the planted %s:\n%s%s", attacker, out, stderr)
	}
	if kmsOpens(t, dir, teamKey) {
		t.Fatalf("the new layer key is wrapped for %s, never named:\n%s", team, stderr)
	}
	for _, want := range []string{"dropped  awskms-rsa " + attacker, "dropped  awskms-rsa " + team, "kept     p256 tag ", "removed  p256 tag ",
		"ocikp: warning: oci:" + dir + ":img: the new layer keys are not sealed for KMS keys found in the image and not named with --keep: "} {
		if !strings.Contains(stderr, want) {
			t.Fatalf("no %q in:\n%s", want, stderr)
		}
	}
	if w := stderr[strings.Index(stderr, "ocikp: warning:"):]; !strings.Contains(w[:strings.Index(w, "\n")], attacker) {
		t.Fatalf("the warning does not list %s:\n%s", attacker, stderr)
	}
	if _, err := openLayer(t, dir, st, "alice"); err != nil {
		t.Fatalf("alice after the rotation: %v", err)
	}

	// --keep TEAM: the team key is kept, the planted one still dropped; the
	// JSON summary marks each.
	dir = mkLayout()
	carol := stranger(t)
	out, stderr, code = runMain("rewrap", "--keystore", ks, "--json", "--keep", team, "--add", carol.String(), "--remove", bob.String(), "--rotate-layer-keys", "oci:"+dir+":img")
	if code != 0 {
		t.Fatalf("rotate --keep: %d\n%s%s", code, out, stderr)
	}
	if !kmsOpens(t, dir, teamKey) || kmsOpens(t, dir, attackerKey) {
		t.Fatalf("--keep %s: team %v, attacker %v", team, kmsOpens(t, dir, teamKey), kmsOpens(t, dir, attackerKey))
	}
	var res []struct {
		Platforms []struct {
			Layers []struct {
				NewKey []struct{ Status, Recipient, Reason string }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := map[string]string{}
	for _, k := range res[0].Platforms[0].Layers[0].NewKey {
		got[k.Status] += k.Recipient + ";"
	}
	if !strings.Contains(got["kept"], "p256 tag ") || !strings.Contains(got["kept"], team) || !strings.Contains(got["added"], carol.String()[:40]) ||
		got["dropped"] != "awskms-rsa "+attacker+";" || !strings.HasPrefix(got["removed"], "p256 tag ") {
		t.Fatalf("the summary: %v\n%s", got, out)
	}

	// --keep of a key no layer holds is an error, as --remove is.
	dir = mkLayout()
	_, stderr, code = runMain("rewrap", "--keystore", ks, "--keep", team+"-typo", "--rotate-layer-keys", "oci:"+dir+":img")
	checkError(t, stderr, code, "holds a stanza for it")
	// --keep without a rotation has nothing to keep.
	_, stderr, code = runMain("rewrap", "--keystore", ks, "--keep", team, "--remove", "bob", "oci:"+dir+":img")
	if code != 2 || !strings.Contains(stderr, "--keep goes with --rotate-layer-keys") {
		t.Fatalf("--keep without a rotation: %d %s", code, stderr)
	}
}
