// Package usage prints a command's help in the one format every ocikp
// command uses, in ocikp and in its sibling executables alike:
//
//	usage: ocikp list [--json]
//
//	List the keystore's keys …
//
//	flags:
//	  --json           print JSON
//	  --keystore DIR   keystore directory
package usage

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Print writes "usage: LINE", the summary, and fs's flags (nil for none).
func Print(w io.Writer, line, summary string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n", line)
	if summary != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(summary))
	}
	if fs == nil {
		return
	}
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(flags) == 0 {
		return
	}
	fmt.Fprintln(w, "\nflags:")
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	for _, f := range flags {
		name, help := flag.UnquoteUsage(f)
		arg := "--" + f.Name
		if name != "" {
			if m, ok := metavars[f.Name]; ok && !strings.Contains(f.Usage, "`") {
				name = m
			}
			arg += " " + strings.ToUpper(name)
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "0s" {
			help += " (default " + d + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", arg, help)
	}
	tw.Flush()
}

// metavars name the values of ocikp's flags in help ("--keystore DIR"
// rather than the type, "--keystore STRING"); a flag's usage can also name
// its own with a `backquoted` word.
var metavars = map[string]string{
	"name": "NAME", "keystore": "DIR", "passphrase-file": "FILE", "adc": "FILE", "aws-profile": "PROFILE",
	"kms-config": "FILE", "file": "FILE", "backend": "BACKEND", "tag": "TAG", "path": "BIN", "grpc": "ADDR",
	"tls-ca": "FILE", "tls-cert": "FILE", "tls-key": "FILE", "server-name": "NAME", "listen": "ADDR",
	"client-ca": "FILE", "metrics": "ADDR", "config": "FILE", "log-level": "LEVEL", "service": "NAME",
	"timeout": "DURATION", "request-timeout": "DURATION", "drain-timeout": "DURATION", "idle-timeout": "DURATION",
	"reload-interval": "DURATION", "max-message-bytes": "N", "max-concurrent": "N", "max-connections": "N", "kms-procs": "N",
}

// FlagOf returns the flag a line of Print's flag list describes
// ("  --keystore DIR   …" gives "--keystore").
func FlagOf(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "  --")
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, " ")
	return "--" + name, name != ""
}
