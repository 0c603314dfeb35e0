package companion

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ocikp/ocikp/internal/hint"
)

// The test binary is its own companion: with OCIKP_COMPANION_TEST set it
// answers as the variable says.
func TestMain(m *testing.M) {
	switch os.Getenv("OCIKP_COMPANION_TEST") {
	case "":
		os.Exit(m.Run())
	case "echo":
		var req map[string]string
		json.NewDecoder(os.Stdin).Decode(&req)
		env := "clean"
		for _, kv := range os.Environ() {
			if strings.HasPrefix(kv, "OCIKP_PASSPHRASE") {
				env = "leaked"
			}
		}
		json.NewEncoder(os.Stdout).Encode(map[string]string{"echo": req["x"], "env": env})
	case "fail":
		json.NewEncoder(os.Stdout).Encode(Status{Error: "wrong PIN", Code: "pin"})
		os.Exit(1)
	case "crash":
		fmt.Fprintln(os.Stderr, "ocikp: error: it broke")
		os.Exit(1)
	case "flood":
		fmt.Print(`{"echo":"`, strings.Repeat("a", 1<<20), `"}`)
	case "hang":
		time.Sleep(time.Minute)
	}
	os.Exit(0)
}

var errPIN = errors.New("PIN sentinel")

func client(t *testing.T, mode string) *Client {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OCIKP_PLUGIN_DIR", "")
	t.Setenv("OCIKP_COMPANION_TEST", mode)
	return &Client{Name: exe, Timeout: 2 * time.Second, MaxReply: 4096, Coded: func(c string) error {
		if c == "pin" {
			return errPIN
		}
		return nil
	}, Explain: func(err error) error { return hint.Wrap(err, "give the PIN") }}
}

type reply struct{ Echo, Env string }

func TestCall(t *testing.T) {
	t.Setenv("OCIKP_PASSPHRASE", "secret")
	var rep reply
	if err := client(t, "echo").Call(map[string]string{"x": "hello"}, &rep); err != nil || rep.Echo != "hello" {
		t.Fatalf("echo: %+v, %v", rep, err)
	}
	if rep.Env != "clean" {
		t.Fatal("the companion saw OCIKP_PASSPHRASE")
	}
	err := client(t, "fail").Call(nil, &rep)
	if !errors.Is(err, errPIN) || err.Error() != "wrong PIN" || len(hint.Of(err)) != 1 {
		t.Fatalf("coded failure: %v (hints %q)", err, hint.Of(err))
	}
	if err := client(t, "crash").Call(nil, &rep); err == nil || !strings.Contains(err.Error(), "it broke") {
		t.Fatalf("crash: %v", err)
	}
	if err := client(t, "flood").Call(nil, &rep); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("a reply beyond MaxReply: %v", err)
	}
	if err := client(t, "hang").Call(nil, &rep); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("hang: %v", err)
	}
	t.Setenv("OCIKP_PLUGIN_DIR", t.TempDir())
	err = (&Client{Name: "ocikp-none", Timeout: time.Second}).Call(nil, &rep)
	if err == nil || !strings.Contains(err.Error(), "ocikp-none is not installed") || len(hint.Of(err)) != 2 {
		t.Fatalf("missing companion: %v (hints %q)", err, hint.Of(err))
	}
}
