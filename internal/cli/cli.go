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

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/safetext"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `ocikp — an OCIcrypt key provider

Usage:
  ocikp keyprovider [--name NAME]      answer one ocicrypt request (stdin → stdout)
  ocikp keygen NAME                    create a key; prints its recipient
  ocikp keygen --backend keychain [--secure-enclave] [--require-presence] [--tag TAG] NAME
                                       create a macOS Keychain / Secure Enclave key
  ocikp import NAME [--file PEM]       import a P-256 private key (PKCS#8 or SEC1 PEM)
  ocikp import --backend keychain --tag TAG NAME
                                       record an existing Keychain key (e.g. the Apple provider's)
  ocikp list [--json]                  list keys
  ocikp recipient NAME                 print a key's recipient string
  ocikp delete NAME                    delete a key
  ocikp config [--name NAME]           print an OCICRYPT_KEYPROVIDER_CONFIG file
  ocikp kms pubkey URL                 fetch and cache an asymmetric KMS key's public key
  ocikp serve [--listen ADDR] …        run the gRPC key provider service (ocikp serve -h)
  ocikp health [--grpc ADDR] …         ask a service whether it serves (exit 0) (ocikp health -h)
  ocikp version

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
	keystore       string // --keystore, "" for default
}

// Main runs ocikp with args (without the program name) and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			e.stdinIsTTY = st.Mode()&os.ModeCharDevice != 0
		}
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
		fmt.Fprintln(stderr, "ocikp: hint: run 'ocikp help' for usage")
		return exitUsage
	}
	return exitFailure
}

// printError writes one error line and at most two hint lines.
func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "ocikp: error: %s\n", oneLine(err.Error()))
	for i, h := range hint.Of(err) {
		if i == 2 {
			break
		}
		fmt.Fprintf(w, "ocikp: hint: %s\n", oneLine(h))
	}
}

// oneLine makes a message one printable line: errors carry strings from
// layers, which must not reach the terminal as control sequences.
func oneLine(s string) string {
	return safetext.Clean(strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " "))
}

type command struct {
	name string
	run  func(e *env, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"keyprovider", cmdKeyprovider},
		{"keygen", cmdKeygen},
		{"import", cmdImport},
		{"list", cmdList},
		{"recipient", cmdRecipient},
		{"delete", cmdDelete},
		{"config", cmdConfig},
		{"kms", cmdKMS},
		{"serve", cmdServe},
		{"health", cmdHealth},
		{"version", cmdVersion},
	}
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
			fmt.Fprint(e.stdout, usage)
			return nil
		case "version":
			return cmdVersion(e, nil)
		default:
			return usagef("unknown flag %.40q before the command", args[0])
		}
	}
	if len(args) == 0 {
		if !e.stdinIsTTY {
			return cmdKeyprovider(e, nil)
		}
		fmt.Fprint(e.stderr, usage)
		return &usageError{"no command given"}
	}
	if args[0] == "help" {
		fmt.Fprint(e.stdout, usage)
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(e, args[1:])
		}
	}
	return usagef("unknown command %.40q", args[0])
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
				fmt.Fprintf(e.stdout, "usage: %s %s\n", fs.Name(), what)
				fs.SetOutput(e.stdout)
				fs.PrintDefaults()
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
