// Passphrases: for new keys (terminal or file) and for unattended
// decryption (file or environment, never a prompt).

package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/ocikp/ocikp/internal/hint"
)

// unattendedPassphrase reads a passphrase from a file or the environment,
// never from a terminal: ocicrypt gives the provider no terminal and has no
// time-out, so a prompt would hang the caller.
func unattendedPassphrase(flagFile string) func(string) ([]byte, error) {
	return func(string) ([]byte, error) {
		if f := flagFile; f != "" {
			return readPassphraseFile(f)
		}
		if f := os.Getenv(envPassphraseFile); f != "" {
			return readPassphraseFile(f)
		}
		if p := os.Getenv(envPassphrase); p != "" {
			return []byte(p), nil
		}
		return nil, nil
	}
}

func readPassphraseFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("passphrase file: %w", err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return nil, fmt.Errorf("passphrase file %s is empty", path)
	}
	return line, nil
}

// newPassphrase gets the passphrase for a new key: from --passphrase-file,
// or from the terminal with --passphrase. None means an unprotected key.
func (e *env) newPassphrase(prompt bool, file string) ([]byte, error) {
	switch {
	case file != "" && prompt:
		return nil, usagef("--passphrase and --passphrase-file are exclusive")
	case file != "":
		return readPassphraseFile(file)
	case prompt:
		p, err := promptPassphrase("Passphrase for the new key: ")
		if err != nil {
			return nil, err
		}
		again, err := promptPassphrase("Repeat the passphrase: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, again) {
			return nil, errors.New("the passphrases do not match")
		}
		if len(p) == 0 {
			return nil, errors.New("empty passphrase")
		}
		return p, nil
	}
	return nil, nil
}

// promptPassphrase reads a line from the terminal without echo.
func promptPassphrase(prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, hint.Wrap(errors.New("--passphrase needs a terminal"), "use --passphrase-file FILE instead")
	}
	defer tty.Close()
	fmt.Fprint(tty, prompt)
	p, err := readNoEcho(tty)
	fmt.Fprintln(tty)
	if err != nil {
		return nil, err
	}
	return p, nil
}
