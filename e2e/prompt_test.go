package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// keygen --passphrase reads the passphrase twice from the terminal without
// echo. script(1) gives ocikp a real pseudo-terminal.
func TestPassphrasePrompt(t *testing.T) {
	script := need(t, "script")
	bin := ocikpBinary(t)
	ks := filepath.Join(t.TempDir(), "keys")
	const secret = "tr0ub4dor&3"
	prompt := func(name string, answers ...string) (string, error) {
		cmd := exec.Command(script, "-qec", bin+" --keystore "+ks+" keygen --passphrase "+name, "/dev/null")
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for _, a := range answers {
				time.Sleep(300 * time.Millisecond) // let the prompt switch echo off first
				in.Write([]byte(a + "\n"))
			}
			time.Sleep(300 * time.Millisecond)
			in.Close()
		}()
		done := make(chan struct{})
		var out []byte
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatal("keygen --passphrase did not finish")
		}
		return string(out), err
	}

	out, err := prompt("alice", secret, secret)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Contains(out, secret) {
		t.Fatalf("the passphrase was echoed:\n%s", out)
	}
	if !strings.Contains(out, "Passphrase for the new key:") || !strings.Contains(out, "(passphrase-protected)") {
		t.Fatalf("unexpected output:\n%s", out)
	}
	list, err := exec.Command(bin, "--keystore", ks, "list", "--json").Output()
	if err != nil || !strings.Contains(string(list), `"protected": true`) {
		t.Fatalf("list: %v\n%s", err, list)
	}

	out, err = prompt("bob", secret, "something else")
	if err == nil || !strings.Contains(out, "the passphrases do not match") {
		t.Fatalf("mismatch accepted: %v\n%s", err, out)
	}
}
