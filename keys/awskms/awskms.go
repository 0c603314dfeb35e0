// Package awskms is the AWS KMS backend: file keys wrapped by KMS Encrypt
// under a symmetric key, with the encryption context {"ocikp": "v1"}
// binding them to the envelope version. Credentials come from the SDK's
// default chain (environment, shared config and profiles, SSO, web identity,
// ECS and EC2 roles); OCIKP_AWS_PROFILE or ocikp keyprovider --aws-profile
// pick a profile.
//
// It links the AWS SDK, so it is linked only into ocikp-plugin-awskms.
package awskms

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/kmsplugin"
	"github.com/ocikp/ocikp/plugin"
)

// Rules: a key URL's own host (awskms://HOST/KEY) must be listed in
// "allowed_endpoints"; without one the SDK picks AWS's endpoint for the
// region (or AWS_ENDPOINT_URL_KMS, which is configuration). A key ARN's
// account must be in "allowed_accounts" when that is set.
var Rules = kmsplugin.Rules{
	Name: "awskms", Service: "AWS KMS", Section: "aws", Endpoint: "endpoint",
	EndpointsEnv: kmsplugin.EnvAWSAllowedEndpoints, EndpointsSetting: "allowed_endpoints",
	AccountsEnv: kmsplugin.EnvAWSAllowedAccounts, AccountsSetting: "allowed_accounts", Account: "AWS account",
}

// Target says where a call for u goes; see Rules.
func (b *Backend) Target(u string) (kmsplugin.Target, error) {
	k, err := ParseURL(u)
	if err != nil {
		return kmsplugin.Target{}, err
	}
	t := kmsplugin.Target{Account: k.Account}
	if k.Endpoint != "" {
		t.Endpoint, err = kmsplugin.NormalizeEndpoint(k.Endpoint)
	}
	return t, err
}

// StanzaType is the envelope stanza type of AWS KMS symmetric recipients.
const StanzaType = "awskms"

// RSAStanzaType is the stanza type of file keys wrapped offline for an RSA
// key (RSAES_OAEP_SHA_256) whose public key is cached.
const RSAStanzaType = "awskms-rsa"

// Scheme of AWS KMS key URLs.
const Scheme = "awskms"

// EnvProfile names the shared-config profile to use (what --aws-profile sets).
const EnvProfile = "OCIKP_AWS_PROFILE"

// encryptionContext binds a wrapped file key to the envelope format.
var encryptionContext = map[string]string{"ocikp": "v1"}

// Key is a parsed awskms:// URL.
type Key struct {
	URL      string
	KeyID    string // key id, key ARN, alias name or alias ARN
	Region   string // "" for the SDK's default
	Endpoint string // "" for the default endpoint
	Account  string // a key or alias ARN's account, else ""
}

// regionPattern admits AWS region names (us-east-1, us-gov-west-1,
// cn-north-1): the SDK builds the endpoint's host name from the region,
// so a region is one host label or it is refused.
var regionPattern = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)

var keyIDPattern = regexp.MustCompile(`^(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)

// ParseURL reads the forms cosign and gocloud.dev users write:
//
//	awskms:///KEY                 KEY: key id, key ARN, alias/NAME or alias ARN
//	awskms://KEYID                a bare key id
//	awskms://alias/NAME           (gocloud.dev)
//	awskms://HOST[:PORT]/KEY      a specific endpoint (cosign)
//
// with an optional ?region=R. Otherwise the region comes from a key ARN,
// then from the SDK's configuration (AWS_REGION, the profile).
func ParseURL(s string) (*Key, error) {
	bad := errors.New("awskms key URL: want awskms:///KEY-ID-OR-ARN-OR-alias/NAME[?region=R] (or awskms://alias/NAME)")
	if !strings.HasPrefix(s, Scheme+"://") {
		return nil, bad
	}
	u, err := url.Parse(s)
	if err != nil || u.User != nil || u.Fragment != "" {
		return nil, bad
	}
	k := &Key{URL: s}
	path := strings.TrimPrefix(u.Path, "/")
	switch {
	case u.Host == "":
		k.KeyID = path
	case u.Host == "alias":
		k.KeyID = "alias/" + path
	case keyIDPattern.MatchString(u.Host) && path == "":
		k.KeyID = u.Host
	default:
		k.Endpoint, k.KeyID = "https://"+u.Host, path
	}
	for key, vs := range u.Query() {
		if key != "region" || len(vs) != 1 || vs[0] == "" {
			return nil, fmt.Errorf("awskms key URL: unknown or repeated query parameter %.20q (only region)", key)
		}
		k.Region = vs[0]
	}
	if k.KeyID == "" || strings.ContainsAny(k.KeyID, " \t\n") || k.KeyID == "alias/" {
		return nil, bad
	}
	if strings.HasPrefix(k.KeyID, "arn:") {
		parts := strings.Split(k.KeyID, ":")
		if len(parts) < 6 || parts[2] != "kms" || parts[3] == "" {
			return nil, fmt.Errorf("awskms key URL: %.100q is not a KMS ARN", k.KeyID)
		}
		if k.Region == "" {
			k.Region = parts[3]
		}
		k.Account = parts[4]
	}
	if k.Region != "" && !regionPattern.MatchString(k.Region) {
		return nil, fmt.Errorf("awskms key URL: %.40q is not an AWS region name", k.Region)
	}
	return k, nil
}

// Backend talks to AWS KMS, with one client per region and endpoint.
type Backend struct {
	Timeout time.Duration
	mu      sync.Mutex
	clients map[string]*kms.Client
}

// New returns a backend; timeout bounds each call, retries included.
func New(timeout time.Duration) *Backend {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Backend{Timeout: timeout, clients: map[string]*kms.Client{}}
}

func (b *Backend) client(ctx context.Context, k *Key) (*kms.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := k.Region + " " + k.Endpoint
	if c, ok := b.clients[id]; ok {
		return c, nil
	}
	var opts []func(*config.LoadOptions) error
	if p := os.Getenv(EnvProfile); p != "" {
		opts = append(opts, config.WithSharedConfigProfile(p))
	}
	if k.Region != "" {
		opts = append(opts, config.WithRegion(k.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, hint.Wrap(fmt.Errorf("awskms: loading AWS configuration: %w", err), "check AWS_PROFILE / "+EnvProfile+" and ~/.aws/config")
	}
	if cfg.Region == "" {
		return nil, hint.Wrap(fmt.Errorf("awskms: no region for %s", k.URL), "add ?region=R to the key URL, use a key ARN, or set AWS_REGION")
	}
	c := kms.NewFromConfig(cfg, func(o *kms.Options) {
		if k.Endpoint != "" {
			o.BaseEndpoint = aws.String(k.Endpoint)
		}
		// The SDK's default gives up after 3 attempts, a few seconds:
		// at a rollout's quota a third of the nodes then failed their
		// pulls (internal/cmd/simrollout). Throttling is retried with
		// the standard full-jitter back-off until OCIKP_KMS_TIMEOUT;
		// AWS_MAX_ATTEMPTS or max_attempts, when set, still win.
		o.Retryer = noteRetries{retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts, so.MaxBackoff = 20, 8*time.Second
		})}
	})
	b.clients[id] = c
	return c, nil
}

// with parses u, gets its client and runs f under the call deadline.
func (b *Backend) with(u string, f func(ctx context.Context, k *Key, c *kms.Client) error) error {
	k, err := ParseURL(u)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
	defer cancel()
	ctx = context.WithValue(ctx, retriedKey{}, new(retried))
	c, err := b.client(ctx, k)
	if err != nil {
		return err
	}
	return f(ctx, k, c)
}

// Wrap encrypts fileKey under the key at url.
func (b *Backend) Wrap(u string, fileKey []byte) (*envelope.Stanza, error) {
	var s *envelope.Stanza
	err := b.with(u, func(ctx context.Context, k *Key, c *kms.Client) error {
		out, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(k.KeyID), Plaintext: fileKey, EncryptionContext: encryptionContext})
		if err != nil {
			return explain(lastRetried(ctx, err), u, "encrypt", "kms:Encrypt")
		}
		s = &envelope.Stanza{Type: StanzaType, KID: u, Key: out.CiphertextBlob}
		return nil
	})
	return s, err
}

// PublicKey fetches the public key of an RSA ENCRYPT_DECRYPT key that
// supports RSAES_OAEP_SHA_256, for wrapping offline.
func (b *Backend) PublicKey(u string) (*plugin.PublicKey, error) {
	var out *kms.GetPublicKeyOutput
	err := b.with(u, func(ctx context.Context, k *Key, c *kms.Client) (err error) {
		if out, err = c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(k.KeyID)}); err != nil {
			return explain(lastRetried(ctx, err), u, "get public key", "kms:GetPublicKey")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out.KeyUsage != types.KeyUsageTypeEncryptDecrypt || !slices.Contains(out.EncryptionAlgorithms, types.EncryptionAlgorithmSpecRsaesOaepSha256) {
		return nil, fmt.Errorf("awskms: %s is not an RSA encryption key with RSAES_OAEP_SHA_256", u)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	rpub, ok := pub.(*rsa.PublicKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("awskms: public key of %s is not an RSA key", u)
	}
	return &plugin.PublicKey{StanzaType: RSAStanzaType, KID: u, N: rpub.N.Bytes(), E: rpub.E}, nil
}

// Unwrap decrypts an awskms or awskms-rsa stanza.
func (b *Backend) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if s.Type != StanzaType && s.Type != RSAStanzaType {
		return nil, envelope.ErrIncorrectIdentity
	}
	var plain []byte
	err := b.with(s.KID, func(ctx context.Context, k *Key, c *kms.Client) error {
		in := &kms.DecryptInput{KeyId: aws.String(k.KeyID), CiphertextBlob: s.Key, EncryptionContext: encryptionContext}
		if s.Type == RSAStanzaType {
			// Asymmetric decryption takes no encryption context.
			in.EncryptionContext, in.EncryptionAlgorithm = nil, types.EncryptionAlgorithmSpecRsaesOaepSha256
		}
		out, err := c.Decrypt(ctx, in)
		if err != nil {
			return explain(lastRetried(ctx, err), s.KID, "decrypt", "kms:Decrypt")
		}
		plain = out.Plaintext
		return nil
	})
	return plain, err
}

// noteRetries records, in the call's context, the error each retry follows:
// when OCIKP_KMS_TIMEOUT ends a back-off the SDK returns only the
// cancellation, and the caller should read why it was waiting.
type noteRetries struct{ *retry.Standard }

type retriedKey struct{}

type retried struct {
	mu      sync.Mutex
	err     error
	network int  // retries after no answer at all
	gaveUp  bool // network retries ran out
}

// networkRetries is the SDK's default for failures without an answer
// (unreachable endpoint): the raised attempts are for KMS answers such as
// throttling, not for waiting out a wrong endpoint.
const networkRetries = 2

var errGaveUp = errors.New("no answer from the endpoint")

func (r noteRetries) GetRetryToken(ctx context.Context, opErr error) (func(error) error, error) {
	if rec, ok := ctx.Value(retriedKey{}).(*retried); ok {
		rec.mu.Lock()
		rec.err = opErr
		var ae smithy.APIError
		if !errors.As(opErr, &ae) {
			if rec.network++; rec.network > networkRetries {
				rec.gaveUp = true
				rec.mu.Unlock()
				return nil, errGaveUp
			}
		}
		rec.mu.Unlock()
	}
	return r.Standard.GetRetryToken(ctx, opErr)
}

// lastRetried returns the error the last retry followed when the deadline
// ended the call during its back-off, or when network retries ran out;
// else err.
func lastRetried(ctx context.Context, err error) error {
	rec, ok := ctx.Value(retriedKey{}).(*retried)
	if !ok {
		return err
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.err == nil || !(rec.gaveUp || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	return rec.err
}

// explain names the key and what to do; AWS error messages are bounded and
// never carry key material.
func explain(err error, u, op, permission string) error {
	base := fmt.Sprintf("awskms: %s with %s", op, u)
	if errors.Is(err, context.DeadlineExceeded) {
		return hint.Wrap(fmt.Errorf("%s: no answer in time", base), "check the network path to AWS KMS, or raise OCIKP_KMS_TIMEOUT")
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return hint.Wrap(fmt.Errorf("%s: %v", base, err), "check the network path to AWS KMS")
	}
	msg := ae.ErrorMessage()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	switch ae.ErrorCode() {
	case "AccessDeniedException":
		return hint.Wrap(fmt.Errorf("%s: permission denied: the caller needs %s", base, permission),
			"allow "+permission+" on the key in its key policy or the caller's IAM policy")
	case "NotFoundException":
		return hint.Wrap(fmt.Errorf("%s: key not found", base), "check the key id, alias and region")
	case "DisabledException", "KMSInvalidStateException":
		return hint.Wrap(fmt.Errorf("%s: the key cannot be used (disabled or pending deletion): %s", base, msg), "enable the key")
	case "InvalidKeyUsageException":
		return fmt.Errorf("%s: the key is not a symmetric ENCRYPT_DECRYPT key", base)
	case "InvalidCiphertextException", "IncorrectKeyException":
		return fmt.Errorf("%s: rejected (a layer wrapped under another key, or corrupted)", base)
	case "UnrecognizedClientException", "ExpiredTokenException", "InvalidSignatureException", "InvalidClientTokenId":
		return hint.Wrap(fmt.Errorf("%s: credentials missing, invalid or expired (%s)", base, ae.ErrorCode()),
			"check the AWS credentials ocikp runs with (AWS_PROFILE, aws sso login, the instance or pod role)")
	case "ThrottlingException":
		return hint.Wrap(fmt.Errorf("%s: throttled (retried until OCIKP_KMS_TIMEOUT)", base), "retry later, or raise the KMS request quota")
	}
	return fmt.Errorf("%s: %s: %s", base, ae.ErrorCode(), msg)
}
