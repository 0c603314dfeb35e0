//go:build linux

package adversarial

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ocikp/ocikp/envelope"
)

// The host's credentials, as each cloud's SDK finds them in the
// environment; the attacker must never see one.
var hostSecrets = []string{"s.host-vault-token", "host-azure-token", "AKIDHOSTACCESSKEY", "host-aws-session-token"}

var credentialEnv = []string{
	"VAULT_TOKEN=s.host-vault-token", "VAULT_ADDR=https://127.0.0.1:1",
	"OCIKP_AZURE_ACCESS_TOKEN=host-azure-token",
	"AWS_ACCESS_KEY_ID=AKIDHOSTACCESSKEY", "AWS_SECRET_ACCESS_KEY=host-secret", "AWS_SESSION_TOKEN=host-aws-session-token",
	"AWS_REGION=us-east-1",
}

// attacker is an endpoint a layer names: it answers like a KMS would
// (Key Vault's challenge first, so that the SDK sends its token) and keeps
// every request's headers.
type attacker struct {
	srv      *httptest.Server
	mu       sync.Mutex
	requests []http.Header
}

func newAttacker(t *testing.T, tls bool) *attacker {
	a := &attacker{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.requests = append(a.requests, r.Header.Clone())
		a.mu.Unlock()
		if r.Header.Get("Authorization") == "" && strings.Contains(r.URL.Path, "/keys/") {
			w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/tenant", resource="https://vault.azure.net"`)
			w.WriteHeader(401)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		w.Write([]byte(`{"errors":["attacker"],"__type":"ValidationException","message":"attacker"}`))
	})
	if tls {
		a.srv = httptest.NewTLSServer(h)
	} else {
		a.srv = httptest.NewServer(h)
	}
	t.Cleanup(a.srv.Close)
	return a
}

// caFile writes the attacker's certificate, for the worst case: the host
// trusts it (a public CA would sign an attacker's host name just the same).
func (a *attacker) caFile(t *testing.T) string {
	if a.srv.Certificate() == nil {
		return ""
	}
	f := filepath.Join(t.TempDir(), "attacker-ca.pem")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw}), 0o644)
	return f
}

func (a *attacker) host() string {
	return strings.TrimPrefix(strings.TrimPrefix(a.srv.URL, "https://"), "http://")
}

// credentials returns the host secrets the attacker received.
func (a *attacker) credentials() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var got []string
	for _, h := range a.requests {
		for _, vs := range h {
			for _, v := range vs {
				for _, s := range hostSecrets {
					if strings.Contains(v, s) {
						got = append(got, s)
					}
				}
			}
		}
	}
	return got
}

func (a *attacker) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.requests)
}

type attack struct {
	name  string
	tls   bool
	kid   func(a *attacker) string
	typ   string
	says  func(a *attacker) string // in the refusal
	allow func(a *attacker) string // the setting that allows it
}

var attacks = []attack{
	{name: "vault over http", typ: "hashivault",
		kid:   func(a *attacker) string { return "hashivault://layers?addr=" + a.srv.URL },
		says:  func(a *attacker) string { return `names Vault address "` + a.srv.URL + `" which is not allowed` },
		allow: func(a *attacker) string { return "OCIKP_VAULT_ALLOWED_ADDRS=" + a.srv.URL }},
	{name: "vault over https", typ: "hashivault", tls: true,
		kid:   func(a *attacker) string { return "hashivault://layers?addr=" + a.srv.URL },
		says:  func(a *attacker) string { return `names Vault address "` + a.srv.URL + `" which is not allowed` },
		allow: func(a *attacker) string { return "OCIKP_VAULT_ALLOWED_ADDRS=" + a.srv.URL }},
	{name: "vault mount", typ: "hashivault",
		kid:   func(a *attacker) string { return "hashivault://layers?mount=attacker-mount" },
		says:  func(a *attacker) string { return `names Vault mount "attacker-mount" which is not allowed` },
		allow: nil},
	{name: "azure key vault host", typ: "azurekms", tls: true,
		kid:   func(a *attacker) string { return "azurekms://" + a.host() + "/layers/0123456789abcdef" },
		says:  func(a *attacker) string { return `names Azure Key Vault host "` + a.srv.URL + `" which is not allowed` },
		allow: func(a *attacker) string { return "OCIKP_AZURE_ALLOWED_HOSTS=" + a.host() }},
	{name: "aws endpoint", typ: "awskms", tls: true,
		kid:   func(a *attacker) string { return "awskms://" + a.host() + "/alias/layers" },
		says:  func(a *attacker) string { return `names AWS KMS endpoint "` + a.srv.URL + `" which is not allowed` },
		allow: func(a *attacker) string { return "OCIKP_AWS_ALLOWED_ENDPOINTS=" + a.host() }},
}

// A layer whose only stanza names an attacker's endpoint, unwrapped with
// no decryption key (containerd, CRI-O, nerdctl) while the host has
// credentials: through the exec path and through ocikp serve, nothing
// reaches the attacker, and the error says why the stanza was skipped. A
// wrap request to the service naming the endpoint is refused the same
// way. Allowed in the settings, the same endpoint is called (so this test
// can see a leak when there is one).
func TestLayerCannotSendCredentialsElsewhere(t *testing.T) {
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			a := newAttacker(t, at.tls)
			ks := t.TempDir()
			e := env(t, ks, credentialEnv...)
			if ca := a.caFile(t); ca != "" {
				e = append(e, "SSL_CERT_FILE="+ca, "VAULT_CACERT="+ca)
			}
			kid := at.kid(a)
			ann := layer(&envelope.Stanza{Type: at.typ, KID: kid, Key: []byte("vault:v1:AAAA")})

			_, stderr, code := exe(t, unwrapRequest(ann), e, "keyprovider", "--name", "ocikp")
			if got := a.credentials(); len(got) > 0 {
				t.Fatalf("exec unwrap sent the host's credentials to the layer's endpoint: %v", got)
			}
			if code != 1 {
				t.Fatalf("exec unwrap exited %d:\n%s", code, stderr)
			}
			mustContain(t, "exec stderr", stderr, "ocikp: error: no key can decrypt this layer", "stanza 1: "+at.typ+": key URL "+at.says(a), "ocikp: hint: allow it with")

			s := serve(t, ks, e)
			msg := s.mustFail(t, "unwrap", unwrapRequest(ann))
			if got := a.credentials(); len(got) > 0 {
				t.Fatalf("the service sent the host's credentials to the layer's endpoint: %v", got)
			}
			mustContain(t, "service status", msg, "stanza 1: "+at.typ+": key URL "+at.says(a))
			msg = s.mustFail(t, "wrap", wrapRequest([]byte(`{"symkey":"x"}`), kid))
			mustContain(t, "service wrap status", msg, at.typ+": key URL "+at.says(a))

			if n := a.count(); n != 0 || len(a.credentials()) != 0 {
				t.Fatalf("the attacker got %d requests carrying %v", n, a.credentials())
			}
			if at.allow == nil {
				return
			}
			// The control: allowed by the host's settings, the endpoint is
			// called with the host's credentials.
			exe(t, unwrapRequest(ann), append(e, at.allow(a)), "keyprovider", "--name", "ocikp")
			if len(a.credentials()) == 0 {
				t.Fatalf("allowed, the endpoint got %d requests but no credential: the test cannot see a leak", a.count())
			}
			t.Logf("refused by default; allowed with %s, the endpoint received %v", at.allow(a), a.credentials())
		})
	}
}
