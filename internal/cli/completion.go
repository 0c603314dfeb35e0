package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"

	"github.com/ocikp/ocikp/internal/usage"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/plugin"
	"github.com/ocikp/ocikp/pq"
)

// Shell completion: `ocikp completion SHELL` prints a small script that
// asks `ocikp __complete WORD…` for candidates, so commands, flags and key
// names are known in one place, this one.

const bashCompletion = `# bash completion for ocikp: eval "$(ocikp completion bash)"
_ocikp() {
  local IFS=$'\n'
  COMPREPLY=($(ocikp __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
  if [ "${COMPREPLY[0]}" = "__files__" ]; then
    COMPREPLY=()
    compopt -o default 2>/dev/null
  fi
}
complete -F _ocikp ocikp
`

const zshCompletion = `#compdef ocikp
# zsh completion for ocikp: source <(ocikp completion zsh), or save it as _ocikp in $fpath
_ocikp() {
  local -a c
  c=("${(@f)$(ocikp __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if [[ ${c[1]} == __files__ ]]; then
    _files
  elif [[ -n ${c[1]} ]]; then
    compadd -- "${c[@]}"
  fi
}
if (( $+functions[compdef] )); then compdef _ocikp ocikp; fi
`

const fishCompletion = `# fish completion for ocikp: ocikp completion fish | source
function __ocikp_complete
    set -l c (ocikp __complete (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)
    if test "$c[1]" = __files__
        __fish_complete_path (commandline -ct)
    else
        printf '%s\n' $c
    end
end
complete -c ocikp -f -a '(__ocikp_complete)'
`

func cmdCompletion(e *env, args []string) error {
	pos, err := e.parse(e.flags("completion"), args, 1, 1, "bash|zsh|fish")
	if err != nil {
		return err
	}
	switch pos[0] {
	case "bash":
		io.WriteString(e.stdout, bashCompletion)
	case "zsh":
		io.WriteString(e.stdout, zshCompletion)
	case "fish":
		io.WriteString(e.stdout, fishCompletion)
	default:
		return usagef("completion: want bash, zsh or fish, not %.20q", pos[0])
	}
	return nil
}

// fileFlags take a path: the shell completes files for them.
var fileFlags = map[string]bool{
	"--keystore": true, "--file": true, "--passphrase-file": true, "--adc": true, "--kms-config": true,
	"--tls-ca": true, "--tls-cert": true, "--tls-key": true, "--client-ca": true, "--config": true, "--path": true,
}

// cmdComplete prints the candidates for the last of args, given the words
// before it (all after "ocikp"), one per line; "__files__" asks the shell
// to complete a path. It never fails: a shell shows nothing instead.
func cmdComplete(e *env, args []string) error {
	if len(args) == 0 {
		args = []string{""}
	}
	words, cur := args[:len(args)-1], args[len(args)-1]
	if len(words) > 0 && fileFlags[words[len(words)-1]] {
		fmt.Fprintln(e.stdout, "__files__")
		return nil
	}
	// Global flags before the command.
	i := 0
	for i < len(words) && strings.HasPrefix(words[i], "-") {
		if words[i] == "--keystore" && i+1 < len(words) {
			e.keystore = words[i+1]
			i++
		} else if v, ok := strings.CutPrefix(words[i], "--keystore="); ok {
			e.keystore = v
		}
		i++
	}
	words = words[i:]
	var cands []string
	switch {
	case len(words) > 1 && words[len(words)-1] == "--type" && words[0] == "keygen":
		cands = soft.Types()
		if hardwareBackend(words) {
			cands = []string{soft.TypeP256, pq.MLKEMP256} // X25519 is no TPM or PKCS#11 curve
		}
	case len(words) > 1 && words[len(words)-1] == "--backend":
		cands = []string{"soft", "keychain"}
		if words[0] == "keygen" {
			cands = append(cands, "tpm", "pkcs11")
		}
	case len(words) == 0 && strings.HasPrefix(cur, "-"):
		cands = []string{"--keystore", "--help", "--version"}
	case len(words) == 0:
		for _, c := range commands {
			cands = append(cands, c.name)
		}
		cands = append(cands, "help")
	case strings.HasPrefix(cur, "-"):
		cands = e.commandFlags(words[0])
	default:
		cands = e.positional(words)
	}
	sort.Strings(cands)
	for _, c := range cands {
		if strings.HasPrefix(c, cur) {
			fmt.Fprintln(e.stdout, c)
		}
	}
	return nil
}

// hardwareBackend reports a keygen for a TPM or PKCS#11 key.
func hardwareBackend(words []string) bool {
	for i := 1; i < len(words); i++ {
		if words[i] == "--backend=tpm" || words[i] == "--backend=pkcs11" ||
			words[i-1] == "--backend" && (words[i] == "tpm" || words[i] == "pkcs11") {
			return true
		}
	}
	return false
}

// positional completes a command's arguments: key names for the commands
// that take one, sub-commands, shells.
func (e *env) positional(words []string) []string {
	switch words[0] {
	case "help":
		if len(words) == 1 {
			names := []string{"help"}
			for _, c := range commands {
				names = append(names, c.name)
			}
			return names
		}
	case "recipient", "delete":
		return e.keyNames()
	case "kms":
		if len(words) == 1 {
			return []string{"pubkey"}
		}
	case "tpm":
		if len(words) == 1 {
			return []string{"ek", "enroll", "recipient"}
		}
	case "completion":
		if len(words) == 1 {
			return []string{"bash", "zsh", "fish"}
		}
	case "import":
		return nil
	}
	return nil
}

// keyNames lists the keystore's keys and Keychain records, quietly.
func (e *env) keyNames() []string {
	dir, err := soft.DefaultDir(e.keystore)
	if err != nil {
		return nil
	}
	return storeNames(&soft.Store{Dir: dir})
}

// commandFlags reads a command's flags from its own help, so that they
// are never listed twice.
func (e *env) commandFlags(name string) []string {
	help, err := e.helpOf(name)
	if err != nil {
		return nil
	}
	flags := []string{"--help"}
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		if f, ok := usage.FlagOf(sc.Text()); ok {
			flags = append(flags, f)
		}
	}
	return flags
}

// helpOf returns what "ocikp NAME --help" prints; serve and health ask
// ocikp-serve, inspect, rewrap and migrate ocikp-image.
func (e *env) helpOf(name string) (string, error) {
	var help bytes.Buffer
	switch name {
	case "serve", "health", "inspect", "rewrap", "migrate":
		// These run a sibling executable: ask it, never exec over this one.
		prog, args := "ocikp-serve", []string{"--help"}
		switch name {
		case "health":
			args = []string{"health", "--help"}
		case "inspect", "rewrap", "migrate":
			prog, args = "ocikp-image", []string{name, "--help"}
		}
		path, err := (&plugin.Client{Name: prog}).Find()
		if err != nil {
			return "", err
		}
		cmd := exec.Command(path, args...)
		cmd.Stdout = &help
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("%s %s: %w", path, strings.Join(args, " "), err)
		}
		return help.String(), nil
	}
	for _, c := range commands {
		if c.name == name {
			sub := &env{stdin: e.stdin, stdout: &help, stderr: &bytes.Buffer{}, keystore: e.keystore}
			c.run(sub, []string{"--help"})
			return help.String(), nil
		}
	}
	return "", unknownCommand(name)
}
