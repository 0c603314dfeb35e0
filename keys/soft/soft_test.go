package soft

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"github.com/ocikp/ocikp/pq"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocikp/ocikp/internal/hint"
)

func genKey(t testing.TB) *ecdh.PrivateKey {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCreateGetListDelete(t *testing.T) {
	st := &Store{Dir: filepath.Join(t.TempDir(), "a", "keys")}
	priv := genKey(t)
	k, err := st.Create("alice", priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(st.Dir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %o", fi.Mode().Perm())
	}
	fi, _ = os.Stat(filepath.Join(st.Dir, "alice.key"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %o", fi.Mode().Perm())
	}
	got, err := st.Get("alice")
	if err != nil || got.Recipient != k.Recipient {
		t.Fatalf("get: %v", err)
	}
	p, err := got.PrivateKey(nil)
	if err != nil || !p.Equal(priv) {
		t.Fatalf("private key: %v", err)
	}
	if _, err := st.Create("alice", genKey(t), nil); !errors.Is(err, ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}
	st.Create("bob", genKey(t), nil)
	es, err := st.List()
	if err != nil || len(es) != 2 || es[0].Name != "alice" || es[1].Name != "bob" {
		t.Fatalf("list: %v %+v", err, es)
	}
	if err := st.Delete("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := st.Delete("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestNames(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	for _, n := range []string{"", ".hidden", "-x", "a/b", "../up", "a b", strings.Repeat("x", 65), "é"} {
		if _, err := st.Create(n, genKey(t), nil); err == nil {
			t.Errorf("%q accepted", n)
		}
		if err := st.Delete(n); err == nil {
			t.Errorf("delete %q accepted", n)
		}
	}
	for _, n := range []string{"a", "A.b_c-1", strings.Repeat("x", 64)} {
		if !ValidName(n) {
			t.Errorf("%q rejected", n)
		}
	}
}

// Key files and keystore directories that others could have written or
// can read are refused, each with the command that fixes it.
func TestKeystoreTrust(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, st *Store, key string)
		want  string // in the error
		hint  string // in the hint
	}{
		{"key 0604", func(t *testing.T, st *Store, key string) { os.Chmod(key, 0o604) }, "accessible to group or others (mode 0604)", "chmod 600 "},
		{"key 0640", func(t *testing.T, st *Store, key string) { os.Chmod(key, 0o640) }, "accessible to group or others (mode 0640)", "chmod 600 "},
		{"key 0660", func(t *testing.T, st *Store, key string) { os.Chmod(key, 0o660) }, "accessible to group or others (mode 0660)", "chmod 600 "},
		{"dir 0777", func(t *testing.T, st *Store, key string) { os.Chmod(st.Dir, 0o777) }, "directory writable by group or others (mode 0777)", "chmod 700 "},
		{"dir 0770", func(t *testing.T, st *Store, key string) { os.Chmod(st.Dir, 0o770) }, "directory writable by group or others (mode 0770)", "chmod 700 "},
		{"symlinked key", func(t *testing.T, st *Store, key string) {
			real := filepath.Join(t.TempDir(), "real.key")
			os.Rename(key, real)
			os.Symlink(real, key)
		}, "a symbolic link", "instead of a link"},
		{"FIFO", func(t *testing.T, st *Store, key string) {
			os.Remove(key)
			if err := syscall.Mkfifo(key, 0o600); err != nil {
				t.Skip(err)
			}
		}, "not a regular file (a FIFO)", ""},
		{"directory", func(t *testing.T, st *Store, key string) { os.Remove(key); os.Mkdir(key, 0o700) }, "not a regular file (a directory)", ""},
		{"key owned by another user", func(t *testing.T, st *Store, key string) { chownOther(t, key) }, "owned by user 65534", "chown "},
		{"dir owned by another user", func(t *testing.T, st *Store, key string) { chownOther(t, st.Dir) }, "owned by user 65534", "chown "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := &Store{Dir: filepath.Join(t.TempDir(), "keys")}
			if _, err := st.Create("alice", genKey(t), nil); err != nil {
				t.Fatal(err)
			}
			c.setup(t, st, filepath.Join(st.Dir, "alice.key"))
			done := make(chan error, 1)
			go func() { _, err := st.Get("alice"); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("reading the key hung")
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if h := strings.Join(hint.Of(err), " | "); !strings.Contains(h, c.hint) {
				t.Fatalf("hint %q, want %q", h, c.hint)
			}
			es, err := st.List()
			if err == nil && (len(es) != 1 || es[0].Err == nil) {
				t.Fatal("list does not flag the untrusted key")
			}
		})
	}
	// An unsafe key can still be deleted.
	st := &Store{Dir: t.TempDir()}
	st.Create("alice", genKey(t), nil)
	os.Chmod(filepath.Join(st.Dir, "alice.key"), 0o644)
	if err := st.Delete("alice"); err != nil {
		t.Fatal(err)
	}
}

// chownOther gives path to nobody (65534); only root can.
func chownOther(t *testing.T, path string) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
}

// Concurrent creates of one name: exactly one wins, the file is whole, and
// no temporary files are left behind.
func TestCreateAtomic(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wins []*KeyFile
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := st.Create("race", genKey(t), nil)
			if err == nil {
				mu.Lock()
				wins = append(wins, k)
				mu.Unlock()
			} else if !errors.Is(err, ErrExists) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(wins) != 1 {
		t.Fatalf("%d creates won", len(wins))
	}
	got, err := st.Get("race")
	if err != nil || got.Recipient != wins[0].Recipient {
		t.Fatalf("stored key is not the winner's: %v", err)
	}
	des, _ := os.ReadDir(st.Dir)
	if len(des) != 1 {
		t.Fatalf("left %d files", len(des))
	}
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	st := &Store{Dir: t.TempDir()}
	os.Chmod(st.Dir, 0o500)
	defer os.Chmod(st.Dir, 0o700)
	if _, err := st.Create("alice", genKey(t), nil); err == nil {
		t.Fatal("created in a read-only dir")
	}
	des, _ := os.ReadDir(st.Dir)
	if len(des) != 0 {
		t.Fatalf("left %d files", len(des))
	}
}

func TestPassphrase(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	priv := genKey(t)
	pass := []byte("correct horse battery staple")
	if _, err := st.Create("p", priv, pass); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(st.Dir, "p.key"))
	if bytes.Contains(data, []byte(`"private"`)) {
		t.Fatal("sealed key file has a clear private key")
	}
	k, err := st.Get("p")
	if err != nil || !k.Protected() {
		t.Fatalf("get: %v", err)
	}
	if _, err := k.PrivateKey(nil); !errors.Is(err, ErrPassphraseNeeded) {
		t.Fatalf("no passphrase: %v", err)
	}
	if _, err := k.PrivateKey([]byte("wrong")); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	got, err := k.PrivateKey(pass)
	if err != nil || !got.Equal(priv) {
		t.Fatalf("right passphrase: %v", err)
	}
}

func pemFor(t testing.TB, priv *ecdh.PrivateKey, kind string) []byte {
	ek, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), priv.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	switch kind {
	case "PRIVATE KEY":
		der, _ := x509.MarshalPKCS8PrivateKey(ek)
		return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	default:
		der, _ := x509.MarshalECPrivateKey(ek)
		return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	}
}

func TestParsePEM(t *testing.T) {
	for range 20 {
		priv := genKey(t)
		for _, kind := range []string{"PRIVATE KEY", "EC PRIVATE KEY"} {
			data := pemFor(t, priv, kind)
			if kind == "EC PRIVATE KEY" {
				// openssl ecparam -genkey writes an EC PARAMETERS block first.
				data = append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), data...)
			}
			got, err := ParsePEMPrivateKey(data)
			if err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
			if !got.Equal(priv) {
				t.Fatalf("%s: wrong key", kind)
			}
		}
	}
}

func TestParsePEMRejects(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.MarshalPKCS8PrivateKey(p384)
	sec384, _ := x509.MarshalECPrivateKey(p384)
	ed := "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHhJ8l0+5g2Xl/zoe7D+Sg3p2hOt/3gmZA3mZyEhmC1x\n-----END PRIVATE KEY-----\n"
	for name, data := range map[string][]byte{
		"empty":     nil,
		"P-384":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der384}),
		"SEC1 384":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec384}),
		"ed25519":   []byte(ed),
		"encrypted": []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"),
		"garbage":   []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"cert only": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		if _, err := ParsePEMPrivateKey(data); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func FuzzParsePEMPrivateKey(f *testing.F) {
	priv := genKey(f)
	f.Add(pemFor(f, priv, "PRIVATE KEY"))
	f.Add(pemFor(f, priv, "EC PRIVATE KEY"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePEMPrivateKey(b)
		if err == nil && len(k.Bytes()) != 32 {
			t.Fatal("accepted a bad key")
		}
		if err != nil && len(b) > 16 && strings.Contains(err.Error(), string(b)) {
			t.Fatal("error echoes the input")
		}
	})
}

func FuzzParseKeyFile(f *testing.F) {
	priv := genKey(f)
	k, _ := NewKeyFile("alice", priv, nil)
	clear, _ := k.Marshal()
	f.Add(clear)
	ks, _ := NewKeyFile("bob", priv, []byte("pw"))
	sealed, _ := ks.Marshal()
	f.Add(sealed)
	f.Add([]byte(`{"format":"ocikp-key-v1"}`))
	old, _ := filepath.Glob("testdata/old-*.key")
	for _, name := range old {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	for _, kind := range pq.Kinds() {
		seed, _, _ := kind.GenerateKey()
		for _, pass := range [][]byte{nil, []byte("pw")} {
			k, _ := NewHybridKeyFile("carol", kind, seed, pass)
			b, _ := k.Marshal()
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKeyFile(b)
		if err != nil {
			return
		}
		// Accepted files re-encode to files that parse to the same key.
		again, err := k.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParseKeyFile(again)
		if err != nil || k2.Recipient != k.Recipient || k2.Protected() != k.Protected() {
			t.Fatalf("re-parse: %v", err)
		}
		if !k.Protected() {
			k.PrivateKey(nil) // may fail (mismatch), must not panic
			k.HybridKey(nil)
		}
		if k.Type != k2.Type || !bytes.Equal(k.Public, k2.Public) {
			t.Fatal("re-parse changed the key")
		}
	})
}

// Post-quantum key files: the same file rules as P-256 ones; the seed in
// clear or sealed; the recipient's type must be the file's.
func TestHybridKeyFiles(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	for _, kind := range pq.Kinds() {
		seed, pub, err := kind.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		for _, pass := range [][]byte{nil, []byte("pw")} {
			name := kind.Type + map[bool]string{true: "-sealed", false: ""}[pass != nil]
			k, err := NewHybridKeyFile(name, kind, seed, pass)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Put(name, k); err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(filepath.Join(st.Dir, name+".key"))
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v", fi.Mode())
			}
			got, err := st.Get(name)
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != kind.Type || !bytes.Equal(got.Public, pub) || got.RecipientString() != kind.Format(pub) || got.Protected() != (pass != nil) {
				t.Fatalf("%s: read back %s", name, got.Type)
			}
			if pass != nil {
				if _, err := got.HybridKey(nil); !errors.Is(err, ErrPassphraseNeeded) {
					t.Fatalf("no passphrase: %v", err)
				}
				if _, err := got.HybridKey([]byte("wrong")); !errors.Is(err, ErrBadPassphrase) {
					t.Fatalf("wrong passphrase: %v", err)
				}
			}
			priv, err := got.HybridKey(pass)
			if err != nil || !bytes.Equal(priv.Key.PublicKey().Bytes(), pub) {
				t.Fatalf("private key: %v", err)
			}
			if _, err := got.PrivateKey(pass); err == nil {
				t.Fatal("a post-quantum key gave a P-256 private key")
			}
			r, err := got.NewRecipient()
			if err != nil || r.(interface{ Type() string }).Type() != kind.Type {
				t.Fatalf("recipient: %v", err)
			}
		}
		// A file whose type is not its recipient's is refused.
		k, _ := NewHybridKeyFile("x", kind, seed, nil)
		b, _ := k.Marshal()
		other := pq.XWing
		if kind.Type == pq.XWing {
			other = pq.MLKEMP256
		}
		bad := bytes.Replace(b, []byte(`"type": "`+kind.Type+`"`), []byte(`"type": "`+other+`"`), 1)
		if _, err := ParseKeyFile(bad); err == nil {
			t.Fatalf("%s key file labelled %s accepted", kind.Type, other)
		}
		if _, err := ParseKeyFile(bytes.Replace(b, []byte(`"type": "`+kind.Type+`"`), []byte(`"type": "rsa"`), 1)); err == nil || !strings.Contains(err.Error(), "mlkem768x25519") {
			t.Fatalf("unknown type: %v", err)
		}
	}
}

// A key file cannot make an unwrap spend more than the scrypt bounds:
// hostile parameters are refused when the file is parsed, before any work.
func TestHostileScryptParameters(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	k, err := st.Create("alice", genKey(t), []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := k.Marshal()
	for _, c := range []struct{ logN, r, p string }{{"22", "32", "1"}, {"20", "8", "16"}, {"21", "8", "1"}} {
		hostile := strings.Replace(string(data), `"logN": 15`, `"logN": `+c.logN, 1)
		hostile = strings.Replace(hostile, `"r": 8`, `"r": `+c.r, 1)
		hostile = strings.Replace(hostile, `"p": 1`, `"p": `+c.p, 1)
		if hostile == string(data) {
			t.Fatal("the key file's layout changed; update this test")
		}
		start := time.Now()
		_, err := ParseKeyFile([]byte(hostile))
		if err == nil || !strings.Contains(err.Error(), "over the limits") {
			t.Fatalf("logN %s r %s p %s: %v", c.logN, c.r, c.p, err)
		}
		t.Logf("logN %s r %s p %s refused in %v: %v", c.logN, c.r, c.p, time.Since(start), err)
	}
}
