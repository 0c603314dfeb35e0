// Command ocikp-unwrap is ocikp for an exec key-provider config, a node's
// above all: it takes ocikp's command line and answers the requests
// ocicrypt sends once per layer with software keys (unwrap with the
// keystore's keys; wrap for recipient strings) from a binary that links
// nothing else, so each layer's process starts sooner. Every other request
// and command, and every request it cannot answer exactly as ocikp would
// (see internal/fastpath), it hands to the ocikp installed beside it, with
// the same arguments, environment and stdin: the process becomes that
// ocikp. Point the config's "path" at it instead of at ocikp; the "args"
// stay the same. "ocikp-unwrap version" prints its own build, which must
// be that ocikp's (ocikp doctor checks).
//
//	ocikp-unwrap [--keystore DIR] keyprovider [--name NAME] [--keystore DIR] < request.json
package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/ocikp/ocikp/internal/buildver"
	"github.com/ocikp/ocikp/keys/soft"
)

func main() {
	// Its own build, in ocikp's words, rather than the ocikp it hands
	// requests to: ocikp doctor compares the two.
	if len(os.Args) == 2 && os.Args[1] == "version" {
		os.Stdout.WriteString(buildver.Current() + "\n")
		return
	}
	run(os.Args[1:])
}

// fastArgs reads the command lines that the fast path serves: ocikp's
// own reading of "[--keystore DIR] [keyprovider [--name N] [--keystore
// DIR]]" (the last --keystore wins, as in ocikp). Any other flag, command
// or argument is ocikp's to read.
func fastArgs(args []string) (dir, name string, ok bool) {
	var keystore string
	value := func(arg string, rest []string) (string, []string, bool) {
		if _, v, has := strings.Cut(arg, "="); has {
			return v, rest, true
		}
		if len(rest) == 0 {
			return "", nil, false
		}
		return rest[0], rest[1:], true
	}
	// Leading global flags: ocikp strips any number of dashes here.
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		flag, _, _ := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		if flag != "keystore" {
			return "", "", false
		}
		if keystore, args, ok = value(args[0], args[1:]); !ok {
			return "", "", false
		}
	}
	if len(args) > 0 {
		if args[0] != "keyprovider" {
			return "", "", false
		}
		args = args[1:]
	}
	// The command's flags, as the flag package reads them: one or two
	// dashes; no positional arguments.
	for len(args) > 0 {
		flag, _, _ := strings.Cut(args[0], "=")
		switch flag {
		case "-name", "--name":
			if name, args, ok = value(args[0], args[1:]); !ok {
				return "", "", false
			}
		case "-keystore", "--keystore":
			if keystore, args, ok = value(args[0], args[1:]); !ok {
				return "", "", false
			}
		default:
			return "", "", false
		}
	}
	dir, err := soft.DefaultDir(keystore)
	if err != nil {
		return "", "", false
	}
	return dir, name, true
}

// ocikpPath is the ocikp that the binary hands requests to: the one in its
// own directory (never found through PATH or argv[0]).
func ocikpPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	// Linux's /proc/self/exe is the file itself; elsewhere the path may be
	// a link, and the ocikp meant is the one beside the file it names (as
	// ocikp doctor reads it).
	if runtime.GOOS != "linux" {
		if exe, err = filepath.EvalSymlinks(exe); err != nil {
			return "", err
		}
	}
	return filepath.Join(filepath.Dir(exe), "ocikp"), nil
}

// fail reports that the request could not be handed over: the one thing
// ocikp-unwrap says itself.
func fail(err error) {
	os.Stderr.WriteString("ocikp: error: ocikp-unwrap could not hand the request to ocikp: " + err.Error() + "\n" +
		"ocikp: hint: install ocikp in the same directory as ocikp-unwrap (go install ./cmd/... does)\n")
	os.Exit(1)
}
