package cli

import (
	"os"

	"golang.org/x/term"
)

func readNoEcho(tty *os.File) ([]byte, error) {
	return term.ReadPassword(int(tty.Fd()))
}
