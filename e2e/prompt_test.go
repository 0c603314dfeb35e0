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
		return atTerminal(t, script, bin+" --keystore "+ks+" keygen --passphrase "+name, answers...)
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

// delete asks at a terminal for the key's name; anything else keeps it.
func TestDeleteConfirmation(t *testing.T) {
	script := need(t, "script")
	bin := ocikpBinary(t)
	ks := filepath.Join(t.TempDir(), "keys")
	if out, err := exec.Command(bin, "--keystore", ks, "keygen", "carol").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := atTerminal(t, script, bin+" --keystore "+ks+" delete carol", "carl")
	if err == nil || !strings.Contains(out, "Type the key's name to delete it:") || !strings.Contains(out, "not deleted") {
		t.Fatalf("a wrong answer: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "--keystore", ks, "recipient", "carol").CombinedOutput(); err != nil {
		t.Fatalf("the key went anyway: %v\n%s", err, out)
	}
	out, err = atTerminal(t, script, bin+" --keystore "+ks+" delete carol", "carol")
	if err != nil || !strings.Contains(out, `deleted key "carol"`) {
		t.Fatalf("confirmed: %v\n%s", err, out)
	}
}

// atTerminal runs cmdline with a real pseudo-terminal (script(1)), typing
// each answer after a pause, and returns what the terminal showed.
func atTerminal(t *testing.T, script, cmdline string, answers ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(script, "-qec", cmdline, "/dev/null")
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
		t.Fatalf("%s did not finish", cmdline)
	}
	return string(out), err
}
