// Package cli implements the ocikp command line. cmd/ocikp is a thin main
// around Main, and the testscript tests run Main in-process.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/suggest"
	"github.com/ocikp/ocikp/internal/usage"
	"github.com/ocikp/ocikp/keys/keychain"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const generalUsage = `ocikp — an OCIcrypt key provider

Usage:
  ocikp keyprovider [--name NAME]      answer one ocicrypt request (stdin → stdout)
  ocikp keygen [--type TYPE] [--passphrase] NAME
                                       create a key (p256, or post-quantum mlkem768x25519
                                       or mlkem768p256); prints its recipient
  ocikp keygen --backend keychain [--secure-enclave] [--require-presence] [--tag TAG] NAME
                                       create a macOS Keychain / Secure Enclave key
  ocikp keygen --backend tpm [--tpm PATH] [--pin] [--pcrs LIST] NAME
                                       create a key in the TPM (docs/tpm.md)
  ocikp import NAME [--file PEM]       import a P-256 private key (PKCS#8 or SEC1 PEM)
  ocikp import --backend keychain --tag TAG NAME
                                       record an existing Keychain key (e.g. the Apple provider's)
  ocikp list [--long | --json]         list keys (--long: whole recipients)
  ocikp recipient NAME                 print a key's recipient string
  ocikp delete NAME                    delete a key
  ocikp config [--name NAME]           print an OCICRYPT_KEYPROVIDER_CONFIG file
  ocikp kms pubkey URL                 fetch and cache an asymmetric KMS key's public key
  ocikp tpm ek [--type rsa] [--cert]   print the TPM's endorsement key or its certificate (PEM)
  ocikp tpm enroll [--if-absent]       record the TPM's EKs: layers sealed to them open here
  ocikp tpm recipient --ek FILE [--pcrs LIST --pcr-values HEX,…]
                                       a recipient only that TPM opens, made anywhere
  ocikp serve [--listen ADDR] …        run the gRPC key provider service (ocikp serve -h)
  ocikp inspect [--keys] [--json] IMAGE…
                                       show who can decrypt an image (ocikp inspect -h)
  ocikp rewrap --add R… --remove R… IMAGE…
                                       change an image's recipients without moving its layers
  ocikp migrate --recipient R… [--key F] IMAGE…
                                       move seed-provider, JWE, PKCS#7 and PGP layers to ocikp envelopes
  ocikp health [--grpc ADDR] …         ask a service whether it serves (exit 0) (ocikp health -h)
  ocikp doctor [--json] [provider:NAME[:VALUE] …]
                                       check the setup the callers see; says what to fix
  ocikp version                        print the version (also ocikp -v, ocikp --version)
  ocikp help [COMMAND]                 print this, or a command's help
  ocikp completion bash|zsh|fish       print a shell completion script

Global flags (before or after the command):
  --keystore DIR    keystore directory (default $OCIKP_KEYSTORE, else
                    $XDG_DATA_HOME/ocikp/keys or ~/.local/share/ocikp/keys)

With no arguments and a non-terminal stdin, ocikp acts as "ocikp keyprovider".
`

// usageError is a command-line mistake: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// env is what a command runs with.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	stdinIsTTY     bool
	keystore       string             // --keystore, "" for default
	cmd            string             // the command being run, for the usage hint
	kc             *keychain.Keychain // nil: this machine's (tests use a fake)
}

func (e *env) keychain() *keychain.Keychain {
	if e.kc != nil {
		return e.kc
	}
	return keychain.System()
}

// Main runs ocikp with args (without the program name) and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return mainEnv(&env{stdin: stdin, stdout: stdout, stderr: stderr}, args)
}

func mainEnv(e *env, args []string) int {
	stdin, stderr := e.stdin, e.stderr
	// A terminal, not any character device: </dev/null is input too.
	if f, ok := stdin.(*os.File); ok {
		e.stdinIsTTY = term.IsTerminal(int(f.Fd()))
	}
	err := run(e, args)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	printError(stderr, err)
	var ue *usageError
	if errors.As(err, &ue) {
		if len(hint.Of(err)) >= 2 {
			// printError showed two hints already: the most a failure gets.
		} else if e.cmd != "" {
			fmt.Fprintf(stderr, "ocikp: hint: run 'ocikp %s --help' for usage\n", e.cmd)
		} else {
			fmt.Fprintln(stderr, "ocikp: hint: run 'ocikp help' for usage")
		}
		return exitUsage
	}
	return exitFailure
}

// printError writes one error line and at most two hint lines.
func printError(w io.Writer, err error) { hint.Print(w, err) }

// oneLine makes a message one printable line: errors carry strings from
// layers, which must not reach the terminal as control sequences.
func oneLine(s string) string { return hint.OneLine(s) }

type command struct {
	name    string
	run     func(e *env, args []string) error
	summary string // shown by "ocikp CMD --help" and "ocikp help CMD"
}

var commands []command

func init() {
	commands = []command{
		{"keyprovider", cmdKeyprovider, "Answer one ocicrypt key provider request: JSON on stdin, the reply on stdout. skopeo, podman, buildah, containerd's ctd-decoder and CRI-O run this; ocikp config writes the entry that makes them."},
		{"keygen", cmdKeygen, "Create a key in the keystore (or the macOS Keychain) and print its recipient, the string others encrypt for."},
		{"import", cmdImport, "Import a private key: a PEM P-256 key (PKCS#8 or SEC1) or an ocikp key file, from --file or stdin; or record an existing macOS Keychain key."},
		{"list", cmdList, "List the keystore's keys, Keychain keys and cached KMS public keys. Each recipient shows as a fingerprint, the first 12 hex digits of its SHA-256 (ocikp recipient NAME | tr -d '\\n' | sha256sum); --long and --json show whole recipients."},
		{"recipient", cmdRecipient, "Print a key's recipient string."},
		{"delete", cmdDelete, "Delete a key. Layers encrypted only for it can no longer be decrypted, so it asks at a terminal and needs --force elsewhere."},
		{"config", cmdConfig, "Print an OCICRYPT_KEYPROVIDER_CONFIG file that runs this ocikp (or points at an ocikp serve service); with --containerd, --crio or --quadlet, the caller's own configuration that uses it."},
		{"kms", cmdKMS, "KMS commands. kms pubkey URL fetches and caches an asymmetric KMS key's public key, so that encrypting for it needs no KMS call."},
		{"tpm", cmdTPM, "TPM commands. tpm ek prints the TPM's endorsement key (ECC, or --type rsa), or with --cert its certificate (PEM); tpm enroll records its endorsement keys in the keystore, so that layers sealed to them open here (no layer for an EK reaches the TPM without it), and prints them; tpm recipient --ek FILE makes, on any machine, a recipient that only that TPM can open."},
		{"serve", cmdServe, ""},
		{"inspect", cmdImage("inspect"), ""},
		{"rewrap", cmdImage("rewrap"), ""},
		{"migrate", cmdImage("migrate"), ""},
		{"health", cmdHealth, ""},
		{"doctor", cmdDoctor, "Check what skopeo, podman, containerd and CRI-O would find: OCICRYPT_KEYPROVIDER_CONFIG, the ocikp it runs and its --name, the keystore, KMS plugins and settings, an ocikp serve service it names. One line per check, with the fix; exit 0 only if none fails. Give the provider:NAME[:VALUE] strings you pass to check them too."},
		{"version", cmdVersion, "Print ocikp's version."},
		{"completion", cmdCompletion, "Print a shell completion script (bash, zsh or fish) for commands, flags and key names: eval \"$(ocikp completion bash)\"; source <(ocikp completion zsh); ocikp completion fish | source."},
	}
}

func summaryOf(name string) string {
	for _, c := range commands {
		if c.name == name {
			return c.summary
		}
	}
	return ""
}

func run(e *env, args []string) error {
	// Leading global flags.
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		name, val, hasVal := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		switch name {
		case "keystore":
			if !hasVal {
				if len(args) < 2 {
					return usagef("--keystore needs a directory")
				}
				val, args = args[1], args[1:]
			}
			e.keystore = val
			args = args[1:]
		case "h", "help":
			fmt.Fprint(e.stdout, generalUsage)
			return nil
		case "v", "version":
			return cmdVersion(e, nil)
		default:
			return usagef("unknown flag %.40q before the command", args[0])
		}
	}
	if len(args) == 0 {
		if !e.stdinIsTTY {
			return cmdKeyprovider(e, nil)
		}
		fmt.Fprint(e.stderr, generalUsage)
		return &usageError{"no command given"}
	}
	if args[0] == "__complete" { // for the completion scripts; not listed
		return cmdComplete(e, args[1:])
	}
	if args[0] == "help" {
		e.cmd = "help"
		return cmdHelp(e, args[1:])
	}
	for _, c := range commands {
		if c.name == args[0] {
			e.cmd = c.name
			return c.run(e, args[1:])
		}
	}
	return unknownCommand(args[0])
}

const helpSummary = "Print ocikp's commands, or one command's help: \"ocikp help CMD\" is \"ocikp CMD --help\". \"ocikp help --man\" prints the manual page ocikp(1), in roff, from these same texts."

// cmdHelp is "ocikp help [CMD]"; "ocikp help --man" writes the manual
// page (docs/man/ocikp.1) from the same help texts.
func cmdHelp(e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stdout, generalUsage)
		return nil
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage.Print(e.stdout, "ocikp help [COMMAND]", helpSummary, nil)
		return nil
	case "--man":
		return e.manPage()
	}
	if len(args) > 1 {
		return usagef("usage: ocikp help [COMMAND]")
	}
	// "ocikp help CMD" is "ocikp CMD --help", whichever binary runs CMD.
	for _, c := range commands {
		if c.name == args[0] {
			e.cmd = c.name
			return c.run(e, []string{"--help"})
		}
	}
	return unknownCommand(args[0])
}

// unknownCommand is a usage error naming the command typed and, when one is
// close, the command meant.
func unknownCommand(name string) error {
	err := usagef("unknown command %.40q", name)
	names := []string{"help"}
	for _, c := range commands {
		names = append(names, c.name)
	}
	if h := suggest.Hint(name, names); h != "" {
		return hint.Wrap(err, h)
	}
	return err
}

// flags returns a flag set for a command, with the global flags added.
func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("ocikp "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by Main
	fs.StringVar(&e.keystore, "keystore", e.keystore, "keystore directory")
	return fs
}

// parse parses flags that may follow positional arguments, and checks the
// number of positional arguments.
func (e *env) parse(fs *flag.FlagSet, args []string, min, max int, what string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage.Print(e.stdout, fs.Name()+" "+what, summaryOf(strings.TrimPrefix(fs.Name(), "ocikp ")), fs)
				return nil, err
			}
			return nil, &usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < min || len(pos) > max {
		return nil, usagef("usage: %s %s", fs.Name(), what)
	}
	return pos, nil
}
