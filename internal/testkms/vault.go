package testkms

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Vault is an httptest stand-in for Vault's (and OpenBao's) Transit secrets
// engine: encrypt and decrypt under named AES-256-GCM keys with associated
// data, token checks, namespaces, request counting and fault injection,
// driven by Vault's real API client.
type Vault struct {
	base
	URL   string
	Token string

	keys       map[string][]byte // "mount/name" → key
	rsaKeys    map[string]*rsa.PrivateKey
	namespaces []string
	status     int
}

// StartVault serves a fake Vault on 127.0.0.1 until the test ends; keys
// are "mount/name", e.g. "transit/layers".
func StartVault(t testing.TB, token string, keys ...string) *Vault {
	v := &Vault{Token: token, keys: map[string][]byte{}, rsaKeys: map[string]*rsa.PrivateKey{}}
	v.init()
	for _, k := range keys {
		b := make([]byte, 32)
		rand.Read(b)
		v.keys[k] = b
	}
	srv := httptest.NewServer(http.HandlerFunc(v.serve))
	v.URL = srv.URL
	t.Cleanup(func() {
		v.stop()
		srv.Close()
	})
	return v
}

// AddRSAKey adds an rsa-2048 Transit key, "mount/name". As Transit does, it
// encrypts with RSA-OAEP, SHA-256 and an empty label.
func (v *Vault) AddRSAKey(t testing.TB, name string) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rsaKeys[name] = k
}

// ResetCalls zeroes the counters and the recorded namespaces.
func (v *Vault) ResetCalls() {
	v.base.ResetCalls()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.namespaces = nil
}

// Namespaces returns the X-Vault-Namespace of the requests so far.
func (v *Vault) Namespaces() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.namespaces...)
}

// SetFault makes every request fail with an HTTP status (0: none).
func (v *Vault) SetFault(status int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.status = status
}

func vaultError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string][]string{"errors": {msg}})
}

func (v *Vault) serve(w http.ResponseWriter, r *http.Request) {
	// /v1/MOUNT.../(encrypt|decrypt)/NAME
	p := strings.TrimPrefix(r.URL.Path, "/v1/")
	i := strings.LastIndex(p, "/")
	j := strings.LastIndex(p[:max(i, 0)], "/")
	if i < 0 || j < 0 {
		vaultError(w, 404, "unsupported path")
		return
	}
	mount, op, name := p[:j], p[j+1:i], p[i+1:]
	if v.count(r.Context(), op) {
		return
	}
	v.mu.Lock()
	v.namespaces = append(v.namespaces, r.Header.Get("X-Vault-Namespace"))
	status, key, rkey := v.status, v.keys[mount+"/"+name], v.rsaKeys[mount+"/"+name]
	v.mu.Unlock()
	if status != 0 {
		vaultError(w, status, "injected fault")
		return
	}
	if r.Header.Get("X-Vault-Token") != v.Token {
		vaultError(w, 403, "permission denied")
		return
	}
	if rkey != nil {
		v.serveRSA(w, r, op, rkey)
		return
	}
	if key == nil {
		vaultError(w, 400, "encryption key not found")
		return
	}
	if op == "keys" && r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"type": "aes256-gcm96", "latest_version": 1, "keys": map[string]any{"1": 1700000000}}})
		return
	}
	var req struct {
		Plaintext      string `json:"plaintext"`
		Ciphertext     string `json:"ciphertext"`
		AssociatedData string `json:"associated_data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		vaultError(w, 400, "bad JSON")
		return
	}
	ad, _ := base64.StdEncoding.DecodeString(req.AssociatedData)
	g := gcm(key)
	var data map[string]string
	switch op {
	case "encrypt":
		pt, err := base64.StdEncoding.DecodeString(req.Plaintext)
		if err != nil {
			vaultError(w, 400, "failed to base64-decode plaintext")
			return
		}
		nonce := make([]byte, 12)
		rand.Read(nonce)
		data = map[string]string{"ciphertext": "vault:v1:" + base64.StdEncoding.EncodeToString(g.Seal(nonce, nonce, pt, ad))}
	case "decrypt":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(req.Ciphertext, "vault:v1:"))
		if err != nil || !strings.HasPrefix(req.Ciphertext, "vault:v1:") || len(raw) < 12 {
			vaultError(w, 400, "invalid ciphertext")
			return
		}
		pt, err := g.Open(nil, raw[:12], raw[12:], ad)
		if err != nil {
			vaultError(w, 400, "cipher: message authentication failed")
			return
		}
		data = map[string]string{"plaintext": base64.StdEncoding.EncodeToString(pt)}
	default:
		vaultError(w, 404, "unsupported operation")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func (v *Vault) serveRSA(w http.ResponseWriter, r *http.Request, op string, k *rsa.PrivateKey) {
	var data map[string]any
	switch {
	case op == "keys" && r.Method == http.MethodGet:
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		data = map[string]any{"type": "rsa-2048", "latest_version": 1, "keys": map[string]any{
			"1": map[string]any{"name": "rsa-2048", "public_key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}}
	case op == "decrypt":
		var req struct {
			Ciphertext string `json:"ciphertext"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(req.Ciphertext, "vault:v1:"))
		if err != nil || !strings.HasPrefix(req.Ciphertext, "vault:v1:") {
			vaultError(w, 400, "invalid ciphertext")
			return
		}
		pt, err := rsa.DecryptOAEP(sha256.New(), nil, k, raw, nil)
		if err != nil {
			vaultError(w, 500, "failed to RSA decrypt the ciphertext")
			return
		}
		data = map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)}
	default:
		vaultError(w, 400, "unsupported operation for an RSA key in this fake")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"data": data})
}
