package testkms

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Azure is an httptest TLS stand-in for the Key Vault keys API (wrapKey and
// unwrapKey with RSA-OAEP-256) with Key Vault's challenge-based bearer
// authentication, driven by the real azkeys client.
type Azure struct {
	base
	URL    string // https://127.0.0.1:PORT
	Token  string
	CAFile string // PEM of the server certificate, for SSL_CERT_FILE

	keys    map[string]*rsa.PrivateKey // name → key (one version)
	version string
	status  int
}

// StartAzure serves a fake Key Vault on 127.0.0.1 until the test ends.
func StartAzure(t testing.TB, token string, names ...string) *Azure {
	a := &Azure{Token: token, keys: map[string]*rsa.PrivateKey{}, version: "0123456789abcdef0123456789abcdef"}
	a.init()
	for _, n := range names {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		a.keys[n] = k
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(a.serve))
	a.URL = srv.URL
	a.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(a.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	t.Cleanup(func() {
		a.stop()
		srv.Close()
	})
	return a
}

// SetFault makes every authenticated request fail with an HTTP status (0: none).
func (a *Azure) SetFault(status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status = status
}

func azError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

var b64url = base64.RawURLEncoding

// Tenant is the tenant in the fake's authentication challenge.
const Tenant = "00000000-0000-0000-0000-000000000000"

// TokenRequests returns how many client-credentials token requests the
// fake's Entra ID endpoint answered (for AZURE_AUTHORITY_HOST=URL).
func (a *Azure) TokenRequests() int { return a.Calls("token") }

// ClientSecret is what the fake's Entra ID endpoint accepts for any client.
const ClientSecret = "fake-client-secret"

// entra serves the two Microsoft Entra ID endpoints MSAL uses for a client
// secret when instance discovery is disabled: tenant discovery and token.
func (a *Azure) entra(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/v2.0/.well-known/openid-configuration"):
		tenant := strings.Split(strings.Trim(p, "/"), "/")[0]
		base := a.URL + "/" + tenant
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"token_endpoint": base + "/oauth2/v2.0/token", "authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"device_authorization_endpoint": base + "/oauth2/v2.0/devicecode", "issuer": base + "/v2.0",
		})
		return true
	case strings.HasSuffix(p, "/oauth2/v2.0/token"):
		a.count(r.Context(), "token")
		r.ParseForm()
		if r.Form.Get("grant_type") != "client_credentials" || r.Form.Get("client_secret") != ClientSecret {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			json.NewEncoder(w).Encode(map[string]any{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
			return true
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": a.Token})
		return true
	}
	return false
}

func (a *Azure) serve(w http.ResponseWriter, r *http.Request) {
	if a.entra(w, r) {
		return
	}
	if r.Header.Get("Authorization") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/`+Tenant+`", resource="https://vault.azure.net"`)
		azError(w, 401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
		return
	}
	// /keys/NAME[/VERSION]/(wrapkey|unwrapkey), GET /keys/NAME[/VERSION]
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method == http.MethodGet && len(parts) >= 2 && len(parts) <= 3 && parts[0] == "keys" {
		a.getKey(w, r, parts)
		return
	}
	if len(parts) < 3 || parts[0] != "keys" {
		azError(w, 404, "NotFound", "")
		return
	}
	name, op := parts[1], parts[len(parts)-1]
	version := ""
	if len(parts) == 4 {
		version = parts[2]
	}
	if a.count(r.Context(), op) {
		return
	}
	a.mu.Lock()
	status, key, cur := a.status, a.keys[name], a.version
	a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+a.Token {
		azError(w, 401, "Unauthorized", "AKV10032: Invalid issuer.")
		return
	}
	if status != 0 {
		azError(w, status, "Forbidden", "injected fault")
		return
	}
	if key == nil || (version != "" && version != cur) {
		azError(w, 404, "KeyNotFound", "A key with (name/id) "+name+" was not found in this key vault.")
		return
	}
	var req struct {
		Alg   string `json:"alg"`
		Value string `json:"value"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Alg != "RSA-OAEP-256" {
		azError(w, 400, "BadParameter", "bad request")
		return
	}
	in, err := b64url.DecodeString(strings.TrimRight(req.Value, "="))
	if err != nil {
		azError(w, 400, "BadParameter", "value")
		return
	}
	var out []byte
	switch op {
	case "wrapkey":
		out, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, &key.PublicKey, in, nil)
	case "unwrapkey":
		out, err = key.Decrypt(rand.Reader, in, &rsa.OAEPOptions{Hash: crypto.SHA256})
	default:
		azError(w, 404, "NotFound", "")
		return
	}
	if err != nil {
		azError(w, 400, "BadParameter", "Error while unwrapping")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"kid": a.URL + "/keys/" + name + "/" + cur, "value": b64url.EncodeToString(out)})
}

func (a *Azure) getKey(w http.ResponseWriter, r *http.Request, parts []string) {
	a.count(r.Context(), "getkey")
	a.mu.Lock()
	key, cur := a.keys[parts[1]], a.version
	a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+a.Token {
		azError(w, 401, "Unauthorized", "AKV10032: Invalid issuer.")
		return
	}
	if key == nil || (len(parts) == 3 && parts[2] != "" && parts[2] != cur) {
		azError(w, 404, "KeyNotFound", "")
		return
	}
	e := big.NewInt(int64(key.E)).Bytes()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"key": map[string]any{
		"kid": a.URL + "/keys/" + parts[1] + "/" + cur, "kty": "RSA", "key_ops": []string{"wrapKey", "unwrapKey"},
		"n": b64url.EncodeToString(key.N.Bytes()), "e": b64url.EncodeToString(e)}})
}

// AllowEnv is the setting that lets ocikp's Azure plugin call this stand-in
// (a loopback host is not one of Azure's own).
func (a *Azure) AllowEnv() string {
	return "OCIKP_AZURE_ALLOWED_HOSTS=" + strings.TrimPrefix(a.URL, "https://")
}
