//go:build unix

package imagecli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocikp/ocikp/keys/soft"
)

// A layout is the image's: a FIFO in it (where a tar extraction puts
// one) hung inspect and rewrap forever in open(2), and a link to a
// terminal waited for its input. Only regular files are read, without
// blocking on the open.
func TestLayoutNonRegularBlob(t *testing.T) {
	ks := filepath.Join(t.TempDir(), "keys")
	alice := newKey(t, &soft.Store{Dir: ks}, "alice")
	dir := layout(t, nil, alice)
	idx, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	i := strings.Index(string(idx), `"digest":"sha256:`) + len(`"digest":"sha256:`)
	blob := filepath.Join(dir, "blobs", "sha256", string(idx[i:i+64]))
	os.Remove(blob)
	if err := syscall.Mkfifo(blob, 0o644); err != nil {
		t.Skip("no FIFO here:", err)
	}
	// Whatever happens, let a reader stuck in open(2) go at the end.
	t.Cleanup(func() {
		if f, err := os.OpenFile(blob, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	type result struct {
		stderr string
		code   int
	}
	done := make(chan result, 1)
	go func() {
		_, stderr, code := runMain("inspect", "--keystore", ks, "oci:"+dir+":img")
		done <- result{stderr, code}
	}()
	select {
	case r := <-done:
		checkError(t, r.stderr, r.code, "not a regular file")
	case <-time.After(20 * time.Second):
		t.Fatal("inspect of a layout whose manifest is a FIFO still runs after 20 s")
	}
}
