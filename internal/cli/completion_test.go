package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func complete(t *testing.T, words ...string) []string {
	t.Helper()
	code, out, stderr := runMain(t, "", append([]string{"__complete"}, words...)...)
	if code != 0 {
		t.Fatalf("__complete %q: exit %d %s", words, code, stderr)
	}
	return strings.Fields(out)
}

func TestComplete(t *testing.T) {
	ks := t.TempDir()
	t.Setenv("OCIKP_KEYSTORE", ks)
	for _, n := range []string{"alice", "albert", "bob"} {
		if code, _, stderr := runMain(t, "", "keygen", n); code != 0 {
			t.Fatal(stderr)
		}
	}
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{""}, "completion config delete doctor health help import inspect keygen keyprovider kms list migrate recipient rewrap serve tpm version"},
		{[]string{"k"}, "keygen keyprovider kms"},
		{[]string{"-"}, "--help --keystore --version"},
		{[]string{"recipient", "al"}, "albert alice"},
		{[]string{"delete", ""}, "albert alice bob"},
		{[]string{"--keystore", ks, "delete", "b"}, "bob"},
		{[]string{"list", "--"}, "--help --json --keystore --long"},
		{[]string{"delete", "--f"}, "--force"},
		{[]string{"keyprovider", "--n"}, "--name"},
		{[]string{"kms", ""}, "pubkey"},
		{[]string{"help", "re"}, "recipient rewrap"},
		{[]string{"completion", ""}, "bash fish zsh"},
		{[]string{"import", "--file", ""}, "__files__"},
		{[]string{"--keystore", ""}, "__files__"},
		{[]string{"keygen", "--type", ""}, "mlkem768p256 mlkem768x25519 p256"},
		{[]string{"keygen", "--type", "mlkem768x"}, "mlkem768x25519"},
		{[]string{"keygen", "--backend", ""}, "keychain pkcs11 soft tpm"},
		{[]string{"keygen", "--backend", "pkcs11", "--type", ""}, "mlkem768p256 p256"},
		{[]string{"keygen", "--backend=tpm", "--type", ""}, "mlkem768p256 p256"},
		{[]string{"import", "--backend", ""}, "keychain soft"},
		{[]string{"tpm", ""}, "ek enroll recipient"},
	} {
		if got := strings.Join(complete(t, c.words...), " "); got != c.want {
			t.Errorf("%q: %q, want %q", c.words, got, c.want)
		}
	}
}

// The bash script, sourced in a real bash, completes through ocikp.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir, bin, ks := ocikpWithKey(t)
	script, _ := exec.Command(bin, "completion", "bash").Output()
	run := func(line string) string {
		cmd := exec.Command(bash, "--norc", "-c", string(script)+`
COMP_WORDS=(`+line+`); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _ocikp; printf '%s\n' "${COMPREPLY[@]}"`)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "OCIKP_KEYSTORE="+ks)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}
	if got := run(`ocikp rec`); got != "recipient" {
		t.Errorf("command: %q", got)
	}
	if got := run(`ocikp delete c`); got != "carol" {
		t.Errorf("key name: %q", got)
	}
	if got := run(`ocikp list --j`); got != "--json" {
		t.Errorf("flag: %q", got)
	}
}

// The fish script, in a real fish: "complete -C" completes a command line.
func TestFishCompletion(t *testing.T) {
	fish, err := exec.LookPath("fish")
	if err != nil {
		t.Skip("fish not installed")
	}
	dir, bin, ks := ocikpWithKey(t)
	script := filepath.Join(dir, "ocikp.fish")
	out, _ := exec.Command(bin, "completion", "fish").Output()
	os.WriteFile(script, out, 0o644)
	for line, want := range map[string]string{"ocikp rec": "recipient", "ocikp delete c": "carol", "ocikp list --j": "--json"} {
		cmd := exec.Command(fish, "--no-config", "-c", "source "+script+"; complete -C '"+line+"'")
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "OCIKP_KEYSTORE="+ks, "HOME="+dir)
		got, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("%s: %q, %v; want %q", line, got, err, want)
		}
	}
}

// The zsh and fish scripts at least parse, where those shells are installed.
func TestOtherShellsParse(t *testing.T) {
	for shell, script := range map[string]string{"zsh": zshCompletion, "fish": fishCompletion} {
		path, err := exec.LookPath(shell)
		if err != nil {
			t.Logf("%s not installed: not checked", shell)
			continue
		}
		f := filepath.Join(t.TempDir(), "c."+shell)
		os.WriteFile(f, []byte(script), 0o644)
		if out, err := exec.Command(path, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", shell, err, out)
		}
	}
}

// ocikpWithKey builds ocikp into a directory (for PATH) and makes a
// keystore with the key carol.
func ocikpWithKey(t *testing.T) (dir, bin, ks string) {
	t.Helper()
	dir = t.TempDir()
	bin = filepath.Join(dir, "ocikp")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ocikp/ocikp/cmd/ocikp").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ks = filepath.Join(dir, "ks")
	if out, err := exec.Command(bin, "--keystore", ks, "keygen", "carol").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return dir, bin, ks
}
