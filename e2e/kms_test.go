package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"google.golang.org/grpc/codes"

	"github.com/ocikp/ocikp/internal/testkms"
)

const (
	gcpKeyName = "projects/p/locations/global/keyRings/r/cryptoKeys/layers"
	gcpKeyURL  = "gcpkms://" + gcpKeyName
)

const (
	awsKeyID  = "1234abcd-12ab-34cd-56ef-1234567890ab"
	awsKeyURL = "awskms:///alias/layers?region=eu-west-1"
)

// kmsEnv points ocikp-plugin-gcpkms at a fake Cloud KMS on loopback.
func kmsEnv(fake *testkms.GCP) []string {
	return []string{"OCIKP_GCPKMS_ENDPOINT=" + fake.Addr, "OCIKP_GCPKMS_INSECURE=1"}
}

// awsEnv points the AWS SDK in ocikp-plugin-awskms at a fake on loopback, with
// dummy credentials, no shared config and no instance metadata service.
func awsEnv(t *testing.T, fake *testkms.AWS) []string {
	dir := t.TempDir()
	return []string{"AWS_ENDPOINT_URL_KMS=" + fake.URL, "AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=secret",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=" + dir + "/config", "AWS_SHARED_CREDENTIALS_FILE=" + dir + "/credentials",
		"AWS_PROFILE="}
}

func TestSkopeoKMS(t *testing.T) {
	p := newProvider(t, "ocikp")
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	fake := testkms.StartGCP(t, gcpKeyName)
	aws := testkms.StartAWS(t, []string{awsKeyID}, map[string]string{"alias/layers": awsKeyID})
	// alice's key is post-quantum, as the KMS keys are (symmetric): the
	// mixing rule lets them share a layer.
	ksA, ra := p.keystoreOf(t, "mlkem768x25519", "alice")
	ksEmpty := t.TempDir()
	const layers = 3
	orig := pushImage(t, reg+"/kms:1", layers)
	want := layerDigests(t, orig)
	sk.env = append(kmsEnv(fake), awsEnv(t, aws)...)

	// One layer, three recipients: a GCP key, an AWS key, a software X-Wing key.
	out, err := sk.copy(ksEmpty, []string{
		"--encryption-key", "provider:ocikp:" + gcpKeyURL,
		"--encryption-key", "provider:ocikp:" + awsKeyURL,
		"--encryption-key", "provider:ocikp:" + ra["alice"],
	}, "docker://"+reg+"/kms:1", "docker://"+reg+"/kms:enc")
	if err != nil {
		t.Fatalf("encrypt: %v\n%s", err, out)
	}
	if n, m := fake.Calls("Encrypt"), aws.Calls("Encrypt"); n != layers || m != layers {
		t.Errorf("encrypt: %d GCP and %d AWS Encrypt calls for %d layers", n, m, layers)
	}
	p.calls(t)

	decrypt := func(t *testing.T, ks, key, tag string) []string {
		t.Helper()
		dir := t.TempDir() + "/oci"
		out, err := sk.copy(ks, []string{"--decryption-key", key}, "docker://"+reg+"/kms:"+tag, "oci:"+dir+":out")
		if err != nil {
			t.Fatalf("decrypt: %v\n%s", err, out)
		}
		return ociLayerDigests(t, dir)
	}

	t.Run("software key alone, KMS unreachable", func(t *testing.T) {
		saved := sk.env
		sk.env = []string{"OCIKP_GCPKMS_ENDPOINT=127.0.0.1:1", "OCIKP_GCPKMS_INSECURE=1", "AWS_ENDPOINT_URL_KMS=http://127.0.0.1:1"}
		defer func() { sk.env = saved }()
		fake.ResetCalls()
		if got := decrypt(t, ksA, "provider:ocikp", "enc"); !slices.Equal(got, want) {
			t.Fatalf("layers %v, want %v", got, want)
		}
	})

	t.Run("KMS alone: one Decrypt per layer", func(t *testing.T) {
		fake.ResetCalls()
		p.calls(t)
		if got := decrypt(t, ksEmpty, "provider:ocikp", "enc"); !slices.Equal(got, want) {
			t.Fatalf("layers %v, want %v", got, want)
		}
		if n := fake.Calls("Decrypt"); n != layers {
			t.Errorf("%d KMS Decrypt calls for %d layers", n, layers)
		}
		if n := p.calls(t); n != layers {
			t.Errorf("%d provider calls for %d layers", n, layers)
		}
	})

	t.Run("AWS alone (GCP denies): one AWS Decrypt per layer", func(t *testing.T) {
		fake.SetFault(codes.PermissionDenied)
		defer fake.SetFault(codes.OK)
		aws.ResetCalls()
		if got := decrypt(t, ksEmpty, "provider:ocikp", "enc"); !slices.Equal(got, want) {
			t.Fatalf("layers %v, want %v", got, want)
		}
		if n := aws.Calls("Decrypt"); n != layers {
			t.Errorf("%d AWS Decrypt calls for %d layers", n, layers)
		}
		// Naming the AWS key selects its stanza only: GCP is not called.
		fake.ResetCalls()
		aws.ResetCalls()
		if got := decrypt(t, ksEmpty, "provider:ocikp:"+awsKeyURL, "enc"); !slices.Equal(got, want) {
			t.Fatalf("layers %v, want %v", got, want)
		}
		if n, m := fake.Calls("Decrypt"), aws.Calls("Decrypt"); n != 0 || m != layers {
			t.Errorf("named AWS key: %d GCP and %d AWS Decrypt calls", n, m)
		}
		p.calls(t)
	})

	t.Run("KMS denies: our message through skopeo", func(t *testing.T) {
		aws.SetFault("AccessDeniedException", 400)
		defer aws.SetFault("", 0)
		fake.SetFault(codes.PermissionDenied)
		defer fake.SetFault(codes.OK)
		out, err := sk.copy(ksEmpty, []string{"--decryption-key", "provider:ocikp"}, "docker://"+reg+"/kms:enc", "oci:"+t.TempDir()+"/oci:out")
		if err == nil {
			t.Fatal("decrypted although the KMS refused")
		}
		if !strings.Contains(out, "permission denied: the caller needs cloudkms.cryptoKeyVersions.useToDecrypt") ||
			!strings.Contains(out, "permission denied: the caller needs kms:Decrypt") {
			t.Fatalf("output:\n%s", out)
		}
	})

	// Images encrypted by the GCP KMS key provider (provider name
	// "kmscrypt", blob {"key_url","wrapped_key","wrap_type":"AES"}) decrypt
	// with ocikp configured under that name.
	t.Run("seed kmscrypt image", func(t *testing.T) {
		seed := newProvider(t, "kmscrypt")
		ssk := newSkopeo(t, seed)
		ssk.env = kmsEnv(fake)
		makeSeedImage(t, p, ksA, fake, reg+"/kms:enc", reg+"/kms:seed")
		dir := t.TempDir() + "/oci"
		fake.ResetCalls()
		out, err := ssk.copy(ksEmpty, []string{"--decryption-key", "provider:kmscrypt:" + gcpKeyURL}, "docker://"+reg+"/kms:seed", "oci:"+dir+":out")
		if err != nil {
			t.Fatalf("decrypt seed image: %v\n%s", err, out)
		}
		if got := ociLayerDigests(t, dir); !slices.Equal(got, want) {
			t.Fatalf("layers %v, want %v", got, want)
		}
		if n := fake.Calls("Decrypt"); n != layers {
			t.Errorf("%d KMS Decrypt calls for %d layers", n, layers)
		}
	})

	// ocikp migrate turns the seed's blobs (opened through the KMS) into
	// ocikp envelopes for alice's software key: afterwards the image
	// decrypts with no KMS at all.
	t.Run("migrate the seed kmscrypt image", func(t *testing.T) {
		stdout, stderr, err := ocikpRunEnv(t, kmsEnv(fake), p.bin, ksEmpty, "migrate", "--tls-verify=false", "--recipient", ra["alice"], "docker://"+reg+"/kms:seed")
		if err != nil || !strings.Contains(stderr, "gcp-kmscrypt-provider (seed format)") {
			t.Fatalf("migrate: %v\n%s%s", err, stdout, stderr)
		}
		for _, l := range remoteManifest(t, reg+"/kms:seed").Layers {
			if _, ok := l.Annotations[annotationPrefix+"kmscrypt"]; ok {
				t.Fatal("the kmscrypt annotation is still there")
			}
		}
		sk.env = nil // no KMS reachable
		if got := decrypt(t, ksA, "provider:ocikp", "seed"); !slices.Equal(got, want) {
			t.Fatalf("layers %v, want %v", got, want)
		}
	})
}

// makeSeedImage rewrites an ocikp-encrypted image as the GCP KMS key provider
// would have written it: each layer's optsdata (recovered with ocikp and
// alice's key) wrapped directly by KMS Encrypt, stored under the
// "kmscrypt" annotation.
func makeSeedImage(t *testing.T, p *provider, ks string, fake *testkms.GCP, src, dst string) {
	srcRef, _ := name.ParseReference(src, name.Insecure)
	desc, err := remote.Get(srcRef)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(desc.Manifest, &m)
	for _, l := range m["layers"].([]any) {
		ann := l.(map[string]any)["annotations"].(map[string]any)
		ocikpAnn, _ := base64.StdEncoding.DecodeString(ann[annotationPrefix+"ocikp"].(string))
		opts := unwrapWithOcikp(t, p.bin, ks, ocikpAnn)
		ct, err := fake.Seal(gcpKeyName, opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		blob, _ := json.Marshal(map[string]any{"key_url": gcpKeyURL, "wrapped_key": ct, "wrap_type": "AES"})
		delete(ann, annotationPrefix+"ocikp")
		ann[annotationPrefix+"kmscrypt"] = base64.StdEncoding.EncodeToString(blob)
	}
	raw, _ := json.Marshal(m)
	dstRef, _ := name.ParseReference(dst, name.Insecure)
	if err := remote.Put(dstRef, rawManifest{raw, desc.MediaType}); err != nil {
		t.Fatal(err)
	}
}

func unwrapWithOcikp(t *testing.T, bin, ks string, ann []byte) []byte {
	req, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string]any{}}, "annotation": ann}})
	cmd := exec.Command(bin, "--keystore", ks, "keyprovider")
	cmd.Stdin = bytes.NewReader(req)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("unwrap with ocikp: %v", err)
	}
	var reply struct {
		R struct{ Optsdata []byte } `json:"keyunwrapresults"`
	}
	json.Unmarshal(out, &reply)
	return reply.R.Optsdata
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }
