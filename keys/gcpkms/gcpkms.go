// Package gcpkms is the Google Cloud KMS backend: file keys wrapped by KMS
// Encrypt under a symmetric key, bound to the envelope version by
// additional authenticated data, with CRC32C integrity checks both ways. It
// also opens the blobs of the GCP KMS key provider ocikp replaces.
//
// It links the Cloud KMS client (gRPC, protobuf, auth), so it is linked only
// into ocikp-plugin-gcpkms, never into the exec binary.
package gcpkms

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/kmsplugin"
	"github.com/ocikp/ocikp/plugin"
)

// Rules: a key URL names a key, never an endpoint (calls go to the
// configured endpoint, OCIKP_GCPKMS_ENDPOINT or Google's); its project
// must be in "allowed_projects" when that is set.
var Rules = kmsplugin.Rules{
	Name: "gcpkms", Service: "Cloud KMS", Section: "gcp", Endpoint: "endpoint",
	AccountsEnv: kmsplugin.EnvGCPAllowedProjects, AccountsSetting: "allowed_projects", Account: "project",
}

// Target says where a call for u goes; see Rules.
func (b *Backend) Target(u string) (kmsplugin.Target, error) {
	name, _, err := ParseURL(u)
	if err != nil {
		return kmsplugin.Target{}, err
	}
	return kmsplugin.Target{Account: strings.Split(name, "/")[1]}, nil
}

// StanzaType is the envelope stanza type of GCP KMS symmetric recipients.
const StanzaType = "gcpkms"

// RSAStanzaType is the stanza type of file keys wrapped offline for an
// asymmetric (RSA_DECRYPT_OAEP_*_SHA256) key version.
const RSAStanzaType = "gcpkms-rsa"

// Scheme of GCP KMS key URLs.
const Scheme = "gcpkms"

// aad binds a wrapped file key to the envelope format.
var aad = []byte("ocikp/v1 gcpkms")

// Environment variables read by OptionsFromEnv.
const (
	EnvCredentials = "OCIKP_GCPKMS_CREDENTIALS" // credentials file (what --adc sets)
	EnvEndpoint    = "OCIKP_GCPKMS_ENDPOINT"    // host:port of the KMS API
	EnvInsecure    = "OCIKP_GCPKMS_INSECURE"    // "1": plaintext, no auth (loopback endpoints only)
	EnvTimeout     = "OCIKP_KMS_TIMEOUT"        // per call, a Go duration (default 30s)
)

// Options configure the backend.
type Options struct {
	CredentialsFile string
	Endpoint        string
	Insecure        bool
	Timeout         time.Duration
}

// OptionsFromEnv reads Options from the environment. Without a credentials
// file the client uses Application Default Credentials
// (GOOGLE_APPLICATION_CREDENTIALS, gcloud, the metadata server).
func OptionsFromEnv() (Options, error) {
	o := Options{
		CredentialsFile: os.Getenv(EnvCredentials),
		Endpoint:        os.Getenv(EnvEndpoint),
		Insecure:        os.Getenv(EnvInsecure) == "1",
		Timeout:         30 * time.Second,
	}
	if t := os.Getenv(EnvTimeout); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("%s: want a duration such as 30s", EnvTimeout)
		}
		o.Timeout = d
	}
	if o.Insecure {
		host, _, err := net.SplitHostPort(o.Endpoint)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !ip.IsLoopback() {
			return o, fmt.Errorf("%s=1 is allowed only with a loopback %s (a local test server)", EnvInsecure, EnvEndpoint)
		}
	}
	return o, nil
}

// Backend talks to Cloud KMS; its client is made on first use.
type Backend struct {
	opts   Options
	once   sync.Once
	client *kms.KeyManagementClient
	err    error
}

// New returns a backend.
func New(o Options) *Backend {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return &Backend{opts: o}
}

func (b *Backend) getClient() (*kms.KeyManagementClient, error) {
	b.once.Do(func() {
		var opts []option.ClientOption
		if b.opts.Endpoint != "" {
			opts = append(opts, option.WithEndpoint(b.opts.Endpoint))
		}
		if b.opts.Insecure {
			opts = append(opts, option.WithoutAuthentication(),
				option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
		} else if f := b.opts.CredentialsFile; f != "" {
			o, err := credentialsOption(f)
			if err != nil {
				b.err = err
				return
			}
			opts = append(opts, o)
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
		defer cancel()
		b.client, b.err = kms.NewKeyManagementClient(ctx, opts...)
		if b.err != nil {
			b.err = hint.Wrap(fmt.Errorf("gcpkms: no usable credentials: %w", b.err),
				"check GOOGLE_APPLICATION_CREDENTIALS or --adc, or run: gcloud auth application-default login")
		}
	})
	return b.client, b.err
}

// credentialsOption reads a credentials file's "type" and passes the
// matching constant: the library does not check the declared type itself.
func credentialsOption(path string) (option.ClientOption, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gcpkms credentials: %w", err)
	}
	var probe struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return nil, fmt.Errorf("gcpkms credentials %s: not a JSON credentials file", path)
	}
	types := map[string]option.CredentialsType{
		"service_account":              option.ServiceAccount,
		"authorized_user":              option.AuthorizedUser,
		"impersonated_service_account": option.ImpersonatedServiceAccount,
		"external_account":             option.ExternalAccount,
	}
	t, ok := types[probe.Type]
	if !ok {
		return nil, fmt.Errorf("gcpkms credentials %s: unsupported type %.40q", path, probe.Type)
	}
	return option.WithAuthCredentialsFile(t, path), nil
}

// Close releases the client.
func (b *Backend) Close() error {
	if b.client != nil {
		return b.client.Close()
	}
	return nil
}

// ParseURL returns the KMS resource name of gcpkms://projects/P/locations/L/
// keyRings/R/cryptoKeys/K (a symmetric key) or …/cryptoKeyVersions/V.
func ParseURL(u string) (name string, version bool, err error) {
	rest, ok := strings.CutPrefix(u, Scheme+"://")
	parts := strings.Split(rest, "/")
	bad := fmt.Errorf("gcpkms key URL: want gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K")
	if !ok || (len(parts) != 8 && len(parts) != 10) {
		return "", false, bad
	}
	for i, want := range []string{"projects", "locations", "keyRings", "cryptoKeys", "cryptoKeyVersions"} {
		if 2*i >= len(parts) {
			break
		}
		if parts[2*i] != want || parts[2*i+1] == "" || strings.ContainsAny(parts[2*i+1], "?#") {
			return "", false, bad
		}
	}
	return rest, len(parts) == 10, nil
}

// Wrap encrypts fileKey under the symmetric key at url.
func (b *Backend) Wrap(url string, fileKey []byte) (*envelope.Stanza, error) {
	name, version, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	if version {
		return nil, fmt.Errorf("gcpkms: %s names a key version (asymmetric keys): not supported yet; name the symmetric key", url)
	}
	c, err := b.getClient()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
	defer cancel()
	resp, err := c.Encrypt(ctx, &kmspb.EncryptRequest{
		Name:                              name,
		Plaintext:                         fileKey,
		PlaintextCrc32C:                   crc(fileKey),
		AdditionalAuthenticatedData:       aad,
		AdditionalAuthenticatedDataCrc32C: crc(aad),
	}, retry(ctx))
	if err != nil {
		return nil, explain(err, url, "encrypt", "cloudkms.cryptoKeyVersions.useToEncrypt", "roles/cloudkms.cryptoKeyEncrypter")
	}
	if !resp.VerifiedPlaintextCrc32C || !resp.VerifiedAdditionalAuthenticatedDataCrc32C ||
		resp.CiphertextCrc32C == nil || crc(resp.Ciphertext).Value != resp.CiphertextCrc32C.Value {
		return nil, fmt.Errorf("gcpkms: encrypt with %s: the request or response was corrupted in transit (CRC32C mismatch)", url)
	}
	return &envelope.Stanza{Type: StanzaType, KID: url, Key: resp.Ciphertext}, nil
}

// Unwrap decrypts a gcpkms or gcpkms-rsa stanza.
func (b *Backend) Unwrap(s *envelope.Stanza) ([]byte, error) {
	switch s.Type {
	case StanzaType:
		return b.decrypt(s.KID, s.Key, aad)
	case RSAStanzaType:
		return b.asymmetricDecrypt(s.KID, s.Key)
	}
	return nil, envelope.ErrIncorrectIdentity
}

// PublicKey fetches the public key of an asymmetric key version, for
// wrapping offline. Only RSA_DECRYPT_OAEP_*_SHA256 versions qualify.
func (b *Backend) PublicKey(url string) (*plugin.PublicKey, error) {
	name, version, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	if !version {
		return nil, fmt.Errorf("gcpkms: %s is a key, not a key version: symmetric keys are wrapped by the KMS, not offline", url)
	}
	c, err := b.getClient()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
	defer cancel()
	resp, err := c.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: name}, retry(ctx))
	if err != nil {
		return nil, explain(err, url, "get public key", "cloudkms.cryptoKeyVersions.viewPublicKey", "roles/cloudkms.publicKeyViewer")
	}
	if resp.PemCrc32C == nil || crc([]byte(resp.Pem)).Value != resp.PemCrc32C.Value {
		return nil, fmt.Errorf("gcpkms: public key of %s corrupted in transit (CRC32C mismatch)", url)
	}
	switch resp.Algorithm {
	case kmspb.CryptoKeyVersion_RSA_DECRYPT_OAEP_2048_SHA256, kmspb.CryptoKeyVersion_RSA_DECRYPT_OAEP_3072_SHA256,
		kmspb.CryptoKeyVersion_RSA_DECRYPT_OAEP_4096_SHA256:
	default:
		return nil, fmt.Errorf("gcpkms: %s has algorithm %s; ocikp wraps offline only for RSA_DECRYPT_OAEP_*_SHA256 keys", url, resp.Algorithm)
	}
	block, _ := pem.Decode([]byte(resp.Pem))
	if block == nil {
		return nil, fmt.Errorf("gcpkms: public key of %s is not PEM", url)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	rpub, ok := pub.(*rsa.PublicKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("gcpkms: public key of %s is not an RSA key", url)
	}
	return &plugin.PublicKey{StanzaType: RSAStanzaType, KID: url, N: rpub.N.Bytes(), E: rpub.E}, nil
}

func (b *Backend) asymmetricDecrypt(url string, ciphertext []byte) ([]byte, error) {
	name, version, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	if !version {
		return nil, fmt.Errorf("gcpkms: %s stanza without a key version", RSAStanzaType)
	}
	c, err := b.getClient()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
	defer cancel()
	resp, err := c.AsymmetricDecrypt(ctx, &kmspb.AsymmetricDecryptRequest{Name: name, Ciphertext: ciphertext, CiphertextCrc32C: crc(ciphertext)}, retry(ctx))
	if err != nil {
		return nil, explain(err, url, "decrypt", "cloudkms.cryptoKeyVersions.useToDecrypt", "roles/cloudkms.cryptoKeyDecrypter")
	}
	if !resp.VerifiedCiphertextCrc32C || resp.PlaintextCrc32C == nil || crc(resp.Plaintext).Value != resp.PlaintextCrc32C.Value {
		return nil, fmt.Errorf("gcpkms: decrypt with %s: corrupted in transit (CRC32C mismatch)", url)
	}
	return resp.Plaintext, nil
}

func (b *Backend) decrypt(url string, ciphertext, ad []byte) ([]byte, error) {
	name, version, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	if version {
		return nil, fmt.Errorf("gcpkms: %s names a key version (asymmetric keys): not supported yet", url)
	}
	c, err := b.getClient()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
	defer cancel()
	req := &kmspb.DecryptRequest{Name: name, Ciphertext: ciphertext, CiphertextCrc32C: crc(ciphertext)}
	if ad != nil {
		req.AdditionalAuthenticatedData, req.AdditionalAuthenticatedDataCrc32C = ad, crc(ad)
	}
	resp, err := c.Decrypt(ctx, req, retry(ctx))
	if err != nil {
		return nil, explain(err, url, "decrypt", "cloudkms.cryptoKeyVersions.useToDecrypt", "roles/cloudkms.cryptoKeyDecrypter")
	}
	if resp.PlaintextCrc32C == nil || crc(resp.Plaintext).Value != resp.PlaintextCrc32C.Value {
		return nil, fmt.Errorf("gcpkms: decrypt with %s: the response was corrupted in transit (CRC32C mismatch)", url)
	}
	return resp.Plaintext, nil
}

// retry replaces the client library's default retries (UNAVAILABLE and
// DEADLINE_EXCEEDED only): past a quota Cloud KMS answers RESOURCE_EXHAUSTED,
// and without a retry every node of a rollout at the quota failed its pull
// on the first refusal. Quota refusals back off longer and with full jitter
// (gax picks a delay in (0, cur]), so nodes refused together spread out;
// the call's context (OCIKP_KMS_TIMEOUT) bounds all attempts, and a pause
// that would outlast it is not taken, so the caller sees the KMS's reason
// rather than a bare deadline.
func retry(ctx context.Context) gax.CallOption {
	deadline, _ := ctx.Deadline()
	return gax.WithRetry(func() gax.Retryer {
		return &retryer{
			deadline:  deadline,
			transient: gax.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 1.3},
			quota:     gax.Backoff{Initial: 500 * time.Millisecond, Max: 8 * time.Second, Multiplier: 2},
		}
	})
}

type retryer struct {
	deadline         time.Time
	transient, quota gax.Backoff
}

func (r *retryer) Retry(err error) (time.Duration, bool) {
	var d time.Duration
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		d = r.transient.Pause()
	case codes.ResourceExhausted:
		d = r.quota.Pause()
	default:
		return 0, false
	}
	if !r.deadline.IsZero() && time.Now().Add(d).After(r.deadline) {
		return 0, false
	}
	return d, true
}

// IsLegacy reports the GCP KMS key provider's blob:
// {"key_url","wrapped_key","wrap_type":"AES"}.
func IsLegacy(blob []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(blob, &probe) != nil {
		return false
	}
	_, a := probe["key_url"]
	_, b := probe["wrapped_key"]
	return a && b
}

// legacyBlob is the GCP KMS key provider's annotation.
type legacyBlob struct {
	KeyURL     string `json:"key_url"`
	WrappedKey []byte `json:"wrapped_key"`
	WrapType   string `json:"wrap_type"`
}

func parseLegacy(blob []byte) (*legacyBlob, error) {
	var w legacyBlob
	if err := json.Unmarshal(blob, &w); err != nil {
		return nil, errors.New("malformed GCP KMS key provider blob")
	}
	if w.WrapType != "AES" {
		return nil, fmt.Errorf("GCP KMS key provider blob: unsupported wrap_type %.20q", w.WrapType)
	}
	if len(w.WrappedKey) == 0 {
		return nil, errors.New("GCP KMS key provider blob: empty wrapped_key")
	}
	return &w, nil
}

// LegacyURL returns the key URL the GCP KMS key provider's blob names.
func (b *Backend) LegacyURL(blob []byte) (string, error) {
	w, err := parseLegacy(blob)
	if err != nil {
		return "", err
	}
	return w.KeyURL, nil
}

// OpenLegacy decrypts the GCP KMS key provider's blob, whose wrapped_key is
// the KMS ciphertext of optsdata itself (no additional data).
func (b *Backend) OpenLegacy(blob []byte) ([]byte, error) {
	w, err := parseLegacy(blob)
	if err != nil {
		return nil, err
	}
	return b.decrypt(w.KeyURL, w.WrappedKey, nil)
}

func crc(b []byte) *wrapperspb.Int64Value {
	return wrapperspb.Int64(int64(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))))
}

// explain turns a KMS error into a message that names the key and, where it
// helps, the permission or action needed. Server messages are bounded;
// they never carry key material.
func explain(err error, url, op, permission, role string) error {
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			st = status.New(codes.DeadlineExceeded, "")
		} else {
			return fmt.Errorf("gcpkms: %s with %s: %w", op, url, err)
		}
	}
	msg := st.Message()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	base := fmt.Sprintf("gcpkms: %s with %s", op, url)
	switch st.Code() {
	case codes.PermissionDenied:
		return hint.Wrap(fmt.Errorf("%s: permission denied: the caller needs %s", base, permission),
			"grant "+role+" on the key to the identity ocikp runs as")
	case codes.NotFound:
		return hint.Wrap(fmt.Errorf("%s: key not found", base), "check the project, location, key ring and key names")
	case codes.FailedPrecondition:
		return hint.Wrap(fmt.Errorf("%s: the key cannot be used (disabled, destroyed or of the wrong purpose): %s", base, msg),
			"enable the key version, or check that the key's purpose is ENCRYPT_DECRYPT")
	case codes.InvalidArgument:
		return fmt.Errorf("%s: rejected: %s (a layer wrapped under another key, or corrupted)", base, msg)
	case codes.Unauthenticated:
		return hint.Wrap(fmt.Errorf("%s: credentials missing, invalid or expired", base),
			"check GOOGLE_APPLICATION_CREDENTIALS or --adc, or run: gcloud auth application-default login")
	case codes.DeadlineExceeded:
		return hint.Wrap(fmt.Errorf("%s: no answer in time", base), "check the network path to Cloud KMS, or raise "+EnvTimeout)
	case codes.Unavailable:
		return hint.Wrap(fmt.Errorf("%s: Cloud KMS is unreachable: %s", base, msg), "check the network path to Cloud KMS")
	case codes.ResourceExhausted:
		return hint.Wrap(fmt.Errorf("%s: quota exceeded or throttled (retried until %s)", base, EnvTimeout), "retry later, or raise the Cloud KMS quota (cryptographic requests per minute)")
	}
	return fmt.Errorf("%s: %s: %s", base, st.Code(), msg)
}

// IsLegacy reports the GCP KMS key provider's blob (method form, for plugins).
func (b *Backend) IsLegacy(blob []byte) bool { return IsLegacy(blob) }
