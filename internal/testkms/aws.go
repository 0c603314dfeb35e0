package testkms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// AWS is an httptest stand-in for the AWS KMS JSON API (TrentService
// Encrypt and Decrypt), driven by the real SDK through its endpoint setting.
// Ciphertexts embed the key id, as the real service's do.
type AWS struct {
	base
	URL string

	keys    map[string][]byte          // "key/ID" → AES key
	rsa     map[string]*rsa.PrivateKey // "key/ID" → RSA key (asymmetric keys)
	aliases map[string]string          // "alias/NAME" → "key/ID"
	regions []string
	fault   string // error type to return, e.g. "AccessDeniedException"
	status  int
}

// StartAWS serves a fake AWS KMS on 127.0.0.1 until the test ends. Each key
// is a key id; aliases maps alias names ("alias/x") to key ids.
func StartAWS(t testing.TB, keyIDs []string, aliases map[string]string) *AWS {
	a := &AWS{keys: map[string][]byte{}, rsa: map[string]*rsa.PrivateKey{}, aliases: map[string]string{}}
	a.init()
	for _, id := range keyIDs {
		k := make([]byte, 32)
		rand.Read(k)
		a.keys["key/"+id] = k
	}
	for al, id := range aliases {
		a.aliases[al] = "key/" + id
	}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	a.URL = srv.URL
	t.Cleanup(func() {
		a.stop()
		srv.Close()
	})
	return a
}

// AddRSAKey adds an RSA_2048 ENCRYPT_DECRYPT key.
func (a *AWS) AddRSAKey(t testing.TB, id string) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rsa["key/"+id] = k
}

func (a *AWS) rsaKey(keyID string) (*rsa.PrivateKey, string) {
	if strings.HasPrefix(keyID, "arn:") {
		if parts := strings.SplitN(keyID, ":", 6); len(parts) == 6 {
			keyID = parts[5]
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if al, ok := a.aliases[keyID]; ok {
		keyID = al
	} else if !strings.HasPrefix(keyID, "key/") {
		keyID = "key/" + keyID
	}
	return a.rsa[keyID], keyID
}

// ResetCalls zeroes the counters and the recorded regions.
func (a *AWS) ResetCalls() {
	a.base.ResetCalls()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.regions = nil
}

// Regions returns the signing regions of the requests so far.
func (a *AWS) Regions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.regions...)
}

// SetFault makes every request fail with an AWS error type and HTTP status
// ("" for none).
func (a *AWS) SetFault(errType string, status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fault, a.status = errType, status
}

var credentialRegion = regexp.MustCompile(`Credential=[^/]+/[0-9]+/([^/]+)/kms/`)

func (a *AWS) serve(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	if a.count(r.Context(), op) {
		return
	}
	a.mu.Lock()
	if m := credentialRegion.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		a.regions = append(a.regions, m[1])
	}
	fault, status := a.fault, a.status
	a.mu.Unlock()
	if fault != "" {
		awsError(w, status, fault, "injected fault")
		return
	}
	var req struct {
		EncryptionAlgorithm string            `json:"EncryptionAlgorithm"`
		KeyID               string            `json:"KeyId"`
		Plaintext           []byte            `json:"Plaintext"`
		CiphertextBlob      []byte            `json:"CiphertextBlob"`
		EncryptionContext   map[string]string `json:"EncryptionContext"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		awsError(w, 400, "SerializationException", "bad JSON")
		return
	}
	ad := contextAD(req.EncryptionContext)
	if rk, id := a.rsaKey(req.KeyID); rk != nil {
		switch {
		case op == "GetPublicKey":
			der, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
			reply(w, map[string]any{"KeyId": a.arn(id), "PublicKey": der, "KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT",
				"EncryptionAlgorithms": []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}})
		case op == "Decrypt" && req.EncryptionAlgorithm == "RSAES_OAEP_SHA_256" && len(req.EncryptionContext) == 0:
			pt, err := rsa.DecryptOAEP(sha256.New(), nil, rk, req.CiphertextBlob, nil)
			if err != nil {
				awsError(w, 400, "InvalidCiphertextException", "")
				return
			}
			reply(w, map[string]any{"Plaintext": pt, "KeyId": a.arn(id), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
		default:
			awsError(w, 400, "InvalidKeyUsageException", "wrong operation or algorithm for an RSA key")
		}
		return
	}
	switch op {
	case "GetPublicKey":
		awsError(w, 400, "UnsupportedOperationException", "symmetric keys have no public key")
	case "Encrypt":
		id, key, ok := a.resolve(req.KeyID)
		if !ok {
			awsError(w, 400, "NotFoundException", "Key '"+req.KeyID+"' does not exist")
			return
		}
		g := gcm(key)
		nonce := make([]byte, g.NonceSize())
		rand.Read(nonce)
		ct := append([]byte{byte(len(id))}, id...)
		ct = append(ct, g.Seal(nonce, nonce, req.Plaintext, ad)...)
		reply(w, map[string]any{"CiphertextBlob": ct, "KeyId": a.arn(id), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
	case "Decrypt":
		ct := req.CiphertextBlob
		if len(ct) < 1 || len(ct) < 1+int(ct[0])+12 {
			awsError(w, 400, "InvalidCiphertextException", "")
			return
		}
		id := string(ct[1 : 1+ct[0]])
		if req.KeyID != "" {
			if want, _, ok := a.resolve(req.KeyID); !ok || want != id {
				awsError(w, 400, "IncorrectKeyException", "The key ID in the request does not identify a KMS key that can perform this operation.")
				return
			}
		}
		_, key, ok := a.resolve(id)
		if !ok {
			awsError(w, 400, "NotFoundException", "")
			return
		}
		g := gcm(key)
		body := ct[1+ct[0]:]
		pt, err := g.Open(nil, body[:12], body[12:], ad)
		if err != nil {
			awsError(w, 400, "InvalidCiphertextException", "")
			return
		}
		reply(w, map[string]any{"Plaintext": pt, "KeyId": a.arn(id), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
	default:
		awsError(w, 400, "UnknownOperationException", "")
	}
}

// resolve maps a key id, key ARN, alias name or alias ARN to "key/ID".
func (a *AWS) resolve(keyID string) (string, []byte, bool) {
	if strings.HasPrefix(keyID, "arn:") {
		parts := strings.SplitN(keyID, ":", 6)
		if len(parts) < 6 {
			return "", nil, false
		}
		keyID = parts[5]
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if strings.HasPrefix(keyID, "alias/") {
		keyID = a.aliases[keyID]
	} else if !strings.HasPrefix(keyID, "key/") {
		keyID = "key/" + keyID
	}
	k, ok := a.keys[keyID]
	return keyID, k, ok
}

func (a *AWS) arn(id string) string { return "arn:aws:kms:us-east-1:111122223333:" + id }

func gcm(key []byte) cipher.AEAD {
	b, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(b)
	return g
}

func contextAD(ctx map[string]string) []byte {
	keys := make([]string, 0, len(ctx))
	for k := range ctx {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%q=%q;", k, ctx[k])
	}
	return []byte(b.String())
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(v)
}

func awsError(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", errType)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": errType, "message": msg})
}
