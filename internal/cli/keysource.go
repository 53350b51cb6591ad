package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/signetbus/signet/internal/keys"
)

// loadKeyFile loads the operator's key file. An encrypted key takes its
// passphrase from SIGNET_PASSPHRASE_FILE, else from the terminal (asked
// up to keys.MaxPassphraseTries times, as ssh does); with neither it
// fails with a hint to use ssh-agent. Only a missing key file gets the
// hint to make one: a wrong passphrase or a .pub file is said as such.
func (g *globalOptions) loadKeyFile(path string) (ssh.Signer, error) {
	var s ssh.Signer
	var err error
	tty, onTerminal := g.terminalIn()
	switch {
	case g.io.Getenv("SIGNET_PASSPHRASE_FILE") != "":
		s, err = keys.LoadSigner(path, func() ([]byte, error) { return readPassphraseFile(g.io.Getenv("SIGNET_PASSPHRASE_FILE")) })
	case onTerminal:
		ask := func() ([]byte, error) {
			fmt.Fprintf(g.io.Err, "Enter passphrase for %s: ", path)
			pw, err := term.ReadPassword(int(tty.Fd()))
			fmt.Fprintln(g.io.Err)
			return pw, err
		}
		s, err = keys.LoadSignerAsking(path, ask, func(msg string) { fmt.Fprintln(g.io.Err, msg) })
	default:
		s, err = keys.LoadSigner(path, nil)
	}
	switch {
	case err == nil:
		return s, nil
	case errors.Is(err, keys.ErrPassphraseNeeded):
		return nil, withHint(fmt.Errorf("%w: %s", keys.ErrPassphraseNeeded, path),
			fmt.Sprintf("ssh-add %s and set key: agent, or set SIGNET_PASSPHRASE_FILE, or run from a terminal to be asked", path))
	case errors.Is(err, fs.ErrNotExist):
		return nil, withHint(err, "make a key with `signet keygen` (it writes ~/"+DefaultKeyPath+", where signet looks by default), set key: PATH in the client config, or key: agent to sign with ssh-agent")
	}
	return nil, err
}

// terminalIn returns stdin when it is a terminal.
func (g *globalOptions) terminalIn() (*os.File, bool) {
	f, ok := g.io.In.(*os.File)
	return f, ok && term.IsTerminal(int(f.Fd()))
}

func readPassphraseFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("SIGNET_PASSPHRASE_FILE: %w", err)
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}
