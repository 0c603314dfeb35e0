package imagecli

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/ocikp/ocikp/keys/soft"
)

// pgpBomb is what anyone holding only the victim's public key can write
// into a layer annotation: a PGP message whose literal body, zlib
// compressed inside the encryption, is size bytes of zeros.
func pgpBomb(t *testing.T, publicKey []byte, size int) []byte {
	t.Helper()
	ring, err := openpgp.ReadKeyRing(bytes.NewReader(publicKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ring {
		if e.PrivateKey != nil {
			t.Fatal("the bomb must be made with the public key only")
		}
		// A key's compression preferences are only the writer's hints.
		for _, id := range e.Identities {
			id.SelfSignature.PreferredCompression = []uint8{uint8(packet.CompressionZLIB)}
		}
	}
	var out bytes.Buffer
	cfg := &packet.Config{DefaultCompressionAlgo: packet.CompressionZLIB, CompressionConfig: &packet.CompressionConfig{Level: 9}}
	w, err := openpgp.Encrypt(&out, ring, nil, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for i := 0; i < size; i += len(zeros) {
		if _, err := w.Write(zeros); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if out.Len() > size/64 {
		t.Fatalf("the bomb is %d bytes: not compressed", out.Len())
	}
	return out.Bytes()
}

// A PGP-wrapped key that decompresses to 256 MiB of zeros: migrate
// --gpg-key refuses it, naming the bound, having decompressed no more
// than the largest secret an envelope holds (ocicrypt's own unwrapper
// reads the whole body into memory first).
func TestMigratePGPBombBounded(t *testing.T) {
	const bombSize = 48 << 20
	ks := filepath.Join(t.TempDir(), "keys")
	newKey(t, &soft.Store{Dir: ks}, "bob")
	e, err := openpgp.NewEntity("victim", "", "victim@example.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub, secret bytes.Buffer
	e.Serialize(&pub)
	aw, _ := armor.Encode(&secret, openpgp.PrivateKeyType, nil)
	e.SerializePrivate(aw, nil)
	aw.Close()
	bomb := pgpBomb(t, pub.Bytes(), bombSize)
	t.Logf("bomb: %d bytes of PGP message, %d MiB of zeros inside", len(bomb), bombSize>>20)
	dir, _ := encryptedLayout(t, func([]byte) map[string]string {
		return map[string]string{"org.opencontainers.image.enc.keys.pgp": base64.StdEncoding.EncodeToString(bomb)}
	})
	keyFile := filepath.Join(t.TempDir(), "secret.asc")
	os.WriteFile(keyFile, secret.Bytes(), 0o600)
	manifest0 := readManifest(t, dir)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	out, stderr, code := runMain("migrate", "--keystore", ks, "--recipient", "bob", "--gpg-key", keyFile, "oci:"+dir+":img")
	close(stop)
	<-done
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("migrate: %d MiB allocated in all, peak heap %d MiB (before: %d MiB)",
		allocated>>20, peak.Load()>>20, before.HeapAlloc>>20)

	// Everything migrate allocates, whatever the timing of the sampler:
	// a few MiB of keys, manifests and buffers, nowhere near the bomb.
	if allocated > 16<<20 {
		t.Errorf("migrate allocated %d MiB for a %d-byte annotation", allocated>>20, len(bomb))
	}
	checkError(t, stderr, code, "decompresses to more than")
	t.Logf("stderr: %s", stderr)
	if !strings.Contains(stderr, "ocikp: hint: no tool writes a wrapped key that large") {
		t.Errorf("no hint that the image is hostile: %s", stderr)
	}
	if out != "" {
		t.Fatalf("stdout: %s", out)
	}
	if readManifest(t, dir) != manifest0 {
		t.Fatal("the refused migration wrote the manifest")
	}
	if strings.Contains(stderr, "-----BEGIN") {
		t.Fatal("the key reached the error")
	}
}

// A wrapped key of another scheme larger than any ocicrypt writes is
// refused before it is parsed (PKCS#7's BER parser recurses per nesting
// level; PGP and JWE decompress).
func TestMigrateForeignBlobBounded(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	newKey(t, &soft.Store{Dir: ks}, "bob")
	priv, _ := rsaPair(t)
	keyFile := filepath.Join(t.TempDir(), "k.pem")
	os.WriteFile(keyFile, priv, 0o600)
	big := bytes.Repeat([]byte{0x30, 0x80}, maxForeignBlob/2+1)
	for _, scheme := range []string{"pkcs7", "jwe", "pgp"} {
		dir, _ := encryptedLayout(t, func([]byte) map[string]string {
			return map[string]string{"org.opencontainers.image.enc.keys." + scheme: base64.StdEncoding.EncodeToString(big)}
		})
		_, stderr, code := runMain("migrate", "--keystore", ks, "--recipient", "bob", "--key", keyFile, "--gpg-key", keyFile, "oci:"+dir+":img")
		checkError(t, stderr, code, "at most 65536 are read")
	}
}
