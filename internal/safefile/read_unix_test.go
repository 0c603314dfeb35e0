//go:build unix && !solaris && !illumos && !aix

package safefile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Read (a bare descriptor) gives what readFile (an *os.File) gives, data
// and error text alike, for each kind of file a keystore may hold.
func TestReadAsReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte("k"), size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const limit = 9000
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(write("target", 10, 0o600), link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what, path string
		kind       Kind
		wantErr    string // "" for data
	}{
		{"empty", write("empty", 0, 0o600), Private, ""},
		{"a P-256 key's size", write("small", 254, 0o600), Private, ""},
		{"a post-quantum key's size", write("pq", 3807, 0o600), Private, ""},
		{"past the first guess", write("big", 8191, 0o600), Private, ""},
		{"the limit exactly", write("limit", limit, 0o600), Private, ""},
		{"over the limit", write("over", limit+1, 0o600), Private, "too large (9001 bytes, at most 9000)"},
		{"a private key readable by others", write("open", 10, 0o644), Private, "accessible to group or others (mode 0644)"},
		{"a record readable by others", write("record", 10, 0o644), Record, ""},
		{"a record writable by the group", write("groupw", 10, 0o664), Record, "writable by group or others (mode 0664)"},
		{"a symbolic link", link, Private, "a symbolic link"},
		{"a FIFO, without blocking", fifo, Private, "not a regular file (a FIFO)"},
		{"a directory", sub, Private, "not a regular file (a directory)"},
		{"missing", filepath.Join(dir, "missing"), Private, "no such file or directory"},
	} {
		t.Run(c.what, func(t *testing.T) {
			done := make(chan struct{})
			var got []byte
			var err error
			go func() { got, err = Read(c.path, c.kind, limit); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Read blocked")
			}
			want, wantErr := readFile(c.path, c.kind, limit)
			if !bytes.Equal(got, want) || (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
				t.Fatalf("Read: %d bytes, %v\nreadFile: %d bytes, %v", len(got), err, len(want), wantErr)
			}
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if fi, _ := os.Stat(c.path); int64(len(got)) != fi.Size() {
					t.Fatalf("read %d bytes of %d", len(got), fi.Size())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want %q", err, c.wantErr)
			}
			if c.what == "missing" && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%v is not fs.ErrNotExist", err)
			}
			if strings.Contains(c.wantErr, "mode") || c.what == "a symbolic link" {
				if !errors.Is(err, ErrUntrusted) {
					t.Errorf("%v is not ErrUntrusted", err)
				}
			}
		})
	}
}

// A file longer than its fstat says (Linux's /proc files say 0 bytes) is
// read past the first guess, and refused at limit+1 bytes: what a file
// that grew after its fstat would get.
func TestReadBeyondItsStat(t *testing.T) {
	const p = "/proc/self/status"
	if runtime.GOOS != "linux" {
		t.Skip(p + " is Linux's")
	}
	data, err := Read(p, Record, 1<<20)
	if err != nil || len(data) < 600 || !bytes.Contains(data, []byte("\nPid:")) {
		t.Fatalf("read %d bytes (%v): %q", len(data), err, data)
	}
	if _, err := Read(p, Record, 10); err == nil || !strings.HasSuffix(err.Error(), "too large (at most 10 bytes)") {
		t.Fatalf("got %v", err)
	}
}

func TestReadLimitInRange(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int64{-1, maxLimit + 1, 1<<63 - 1} {
		if data, err := Read(p, Private, limit); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("limit %d: %q, %v", limit, data, err)
		}
	}
}
