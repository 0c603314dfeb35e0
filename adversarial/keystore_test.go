//go:build linux

package adversarial

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newKeystore makes a keystore with key alice and a layer encrypted for it.
func newKeystore(t *testing.T) (ks, recipient string, ann []byte) {
	ks = filepath.Join(t.TempDir(), "keys")
	e := env(t, ks)
	out, stderr, code := exe(t, nil, e, "keygen", "alice")
	if code != 0 {
		t.Fatal(stderr)
	}
	recipient = strings.TrimSpace(out)
	return ks, recipient, wrap(t, e, recipient)
}

// A keystore that others could have written, or a key file others can
// read, is refused with the command that fixes it; the same keystore,
// fixed, opens the layer.
func TestUntrustedKeystoreRefused(t *testing.T) {
	cases := []struct {
		name        string
		break_, fix func(t *testing.T, ks, key string)
		says, hint  string
	}{
		{"keystore 0777", chmod(".", 0o777), chmod(".", 0o700), "directory writable by group or others (mode 0777)", "chmod 700 "},
		{"keystore 0770", chmod(".", 0o770), chmod(".", 0o700), "directory writable by group or others (mode 0770)", "chmod 700 "},
		{"keystore owned by nobody", chown("."), chownBack("."), "owned by user 65534", "chown "},
		{"key owned by nobody", chown("alice.key"), chownBack("alice.key"), "owned by user 65534", "chown "},
		{"key 0640", chmod("alice.key", 0o640), chmod("alice.key", 0o600), "accessible to group or others (mode 0640)", "chmod 600 "},
		{"key 0660", chmod("alice.key", 0o660), chmod("alice.key", 0o600), "accessible to group or others (mode 0660)", "chmod 600 "},
		{"symlinked key", func(t *testing.T, ks, key string) {
			real := filepath.Join(t.TempDir(), "alice.key")
			os.Rename(key, real)
			os.Symlink(real, key)
		}, func(t *testing.T, ks, key string) {
			real, _ := os.Readlink(key)
			os.Remove(key)
			os.Rename(real, key)
		}, "a symbolic link, which ocikp does not follow", "instead of a link"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ks, _, ann := newKeystore(t)
			key := filepath.Join(ks, "alice.key")
			c.break_(t, ks, key)
			_, stderr, code := exe(t, unwrapRequest(ann), env(t, ks), "keyprovider", "--name", "ocikp")
			if code != 1 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			mustContain(t, "stderr", stderr, c.says, "ocikp: hint: ")
			if hint := stderr[strings.Index(stderr, "ocikp: hint: "):]; !strings.Contains(hint, c.hint) {
				t.Fatalf("the hint does not say %q:\n%s", c.hint, stderr)
			}
			c.fix(t, ks, key)
			if _, stderr, code := exe(t, unwrapRequest(ann), env(t, ks), "keyprovider", "--name", "ocikp"); code != 0 {
				t.Fatalf("fixed, the keystore still fails:\n%s", stderr)
			}
		})
	}
}

func chmod(rel string, mode os.FileMode) func(t *testing.T, ks, key string) {
	return func(t *testing.T, ks, key string) {
		if err := os.Chmod(filepath.Join(ks, rel), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func chown(rel string) func(t *testing.T, ks, key string) {
	return func(t *testing.T, ks, key string) {
		if os.Geteuid() != 0 {
			t.Skip("giving a file to another user needs root")
		}
		if err := os.Chown(filepath.Join(ks, rel), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
}

func chownBack(rel string) func(t *testing.T, ks, key string) {
	return func(t *testing.T, ks, key string) {
		if err := os.Chown(filepath.Join(ks, rel), os.Geteuid(), os.Getegid()); err != nil {
			t.Fatal(err)
		}
	}
}
