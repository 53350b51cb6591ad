// Package keys handles signet's SSH key material: operator keys on disk or
// in ssh-agent, the responder's host key, the authorized_keys file that says
// which operator keys a host trusts and with which roles, and the
// known_hosts file that pins each responder's host key.
//
// signet trusts ed25519 keys only: plain ssh-ed25519 and, for FIDO hardware
// keys held by ssh-agent, sk-ssh-ed25519@openssh.com. Everything else is
// refused with an error that says so.
package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/edsign"
	"github.com/signetbus/signet/internal/trustfile"
)

// ErrKeyType is returned for a key that is not ed25519 or sk-ed25519.
var ErrKeyType = errors.New("keys: only ed25519 keys are accepted")

// ErrPassphraseNeeded is returned by LoadSigner for an encrypted key when no
// passphrase callback was given.
var ErrPassphraseNeeded = errors.New("keys: private key is encrypted and no passphrase was supplied")

// ErrWrongPassphrase is returned when the passphrase does not decrypt the key.
var ErrWrongPassphrase = errors.New("keys: wrong passphrase")

// ErrPublicKey is returned when the file given as a private key holds a
// public key (an id_ed25519.pub given for id_ed25519).
var ErrPublicKey = errors.New("keys: a public key was given as the private key")

// MaxPassphraseTries is how often LoadSignerAsking asks, as ssh does.
const MaxPassphraseTries = 3

// Fingerprint returns "SHA256:..." as ssh-keygen -l prints it.
func Fingerprint(pub ssh.PublicKey) string { return ssh.FingerprintSHA256(pub) }

// acceptedType reports whether signet trusts keys of this type.
func acceptedType(t string) bool {
	return t == ssh.KeyAlgoED25519 || t == ssh.KeyAlgoSKED25519
}

func checkType(pub ssh.PublicKey) error {
	if !acceptedType(pub.Type()) {
		return fmt.Errorf("%w, got %s %s", ErrKeyType, pub.Type(), Fingerprint(pub))
	}
	return nil
}

// Generate writes an OpenSSH ed25519 private key (0600; encrypted when
// passphrase is non-empty) at path and path+".pub" (0644), refusing to
// overwrite.
func Generate(path, comment string, passphrase []byte) (ssh.PublicKey, error) {
	if strings.ContainsAny(comment, "\r\n") {
		return nil, errors.New("keys: generate: comment must be one line")
	}
	for _, p := range []string{path, path + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("keys: generate: %s already exists; refusing to overwrite it", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("keys: generate: %w", err)
		}
	}
	edPub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keys: generate: %w", err)
	}
	var block *pem.Block
	if len(passphrase) > 0 {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, comment, passphrase)
	} else {
		block, err = ssh.MarshalPrivateKey(priv, comment)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: generate: %w", err)
	}
	pub, err := ssh.NewPublicKey(edPub)
	if err != nil {
		return nil, fmt.Errorf("keys: generate: %w", err)
	}
	if err := writeNew(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment != "" {
		line += " " + comment
	}
	if err := writeNew(path+".pub", []byte(line+"\n"), 0o644); err != nil {
		os.Remove(path)
		return nil, err
	}
	return pub, nil
}

// writeNew creates path exclusively with mode perm (whatever the umask) and
// writes data to it.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("keys: %s already exists; refusing to overwrite it", path)
		}
		return fmt.Errorf("keys: %w", err)
	}
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("keys: write %s: %w", path, err)
	}
	return nil
}

// LoadSigner loads a signer from a private key file. passphrase is called
// only when the key is encrypted (may be nil: then an encrypted key is a
// clear error with a hint).
//
// Like ssh, LoadSigner refuses a private key file that group or others can
// read, and it refuses keys other than ed25519.
func LoadSigner(path string, passphrase func() ([]byte, error)) (ssh.Signer, error) {
	data, err := readPrivate(path)
	if err != nil {
		return nil, err
	}
	return parseSigner(path, data, passphrase)
}

// LoadSignerAsking is LoadSigner for a person at a terminal: ask is called
// again after a wrong passphrase, up to MaxPassphraseTries times, and
// retry (may be nil) is told why before each new try.
func LoadSignerAsking(path string, ask func() ([]byte, error), retry func(msg string)) (ssh.Signer, error) {
	data, err := readPrivate(path)
	if err != nil {
		return nil, err
	}
	for try := 1; ; try++ {
		s, err := parseSigner(path, data, ask)
		if !errors.Is(err, ErrWrongPassphrase) || try == MaxPassphraseTries {
			return s, err
		}
		if retry != nil {
			retry(fmt.Sprintf("wrong passphrase for %s, try again", path))
		}
	}
}

// parseSigner parses the private key file data read from path.
func parseSigner(path string, data []byte, passphrase func() ([]byte, error)) (ssh.Signer, error) {
	raw, err := ssh.ParseRawPrivateKey(data)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		if passphrase == nil {
			return nil, fmt.Errorf("%w: %s\nhint: add the key to ssh-agent (ssh-add %s) and use it from there, or run from a terminal to be asked for the passphrase", ErrPassphraseNeeded, path, path)
		}
		pass, perr := passphrase()
		if perr != nil {
			return nil, fmt.Errorf("keys: passphrase for %s: %w", path, perr)
		}
		raw, err = ssh.ParseRawPrivateKeyWithPassphrase(data, pass)
		clear(pass)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("%w for %s", ErrWrongPassphrase, path)
		}
		if err != nil {
			return nil, fmt.Errorf("keys: decrypt %s: %w", path, err)
		}
	case err != nil:
		if perr := publicKeyError(path, data); perr != nil {
			return nil, perr
		}
		return nil, fmt.Errorf("keys: parse private key %s: %w", path, err)
	}
	signer, err := signerOf(raw)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	if err := checkType(signer.PublicKey()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return signer, nil
}

// signerOf is ssh.NewSignerFromKey, except that an ed25519 key signs
// through edsign: a process's first signature then costs about 70 µs
// instead of the 2 ms crypto/ed25519 spends on its table (the signatures
// are the same).
func signerOf(raw any) (ssh.Signer, error) {
	var k ed25519.PrivateKey
	switch r := raw.(type) {
	case *ed25519.PrivateKey: // OpenSSH's format
		k = *r
	case ed25519.PrivateKey: // PKCS #8
		k = r
	default:
		return ssh.NewSignerFromKey(raw)
	}
	s, err := edsign.New(k)
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromSigner(s)
}

// maxKeyFile bounds a private key file; any real one is far smaller.
const maxKeyFile = 64 << 10

// readPrivate reads a private key file after checking that only its owner
// can read it.
func readPrivate(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keys: private key %s is not a regular file (%s)", path, fi.Mode())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		// A public key is meant to be readable: say what it is rather
		// than ask to chmod it.
		head, _ := io.ReadAll(io.LimitReader(f, maxKeyFile))
		if err := publicKeyError(path, head); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("keys: private key %s has mode %04o: group and others must not have access\nhint: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("keys: read %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("keys: private key %s is larger than %d bytes, more than any key file", path, maxKeyFile)
	}
	return data, nil
}

// publicKeyError says so when data is a public key (an authorized_keys
// or .pub line), naming the private key beside it; nil otherwise.
func publicKeyError(path string, data []byte) error {
	if _, _, _, _, err := ssh.ParseAuthorizedKey(data); err != nil {
		return nil
	}
	if priv, ok := strings.CutSuffix(path, ".pub"); ok {
		return fmt.Errorf("%w: %s is a public key; the private key is %s", ErrPublicKey, path, priv)
	}
	return fmt.Errorf("%w: %s is a public key; give the private key file (the one without .pub)", ErrPublicKey, path)
}

// LoadHostKey loads or, when missing, creates the responder's host key
// (unencrypted, 0600). A new key also gets a path+".pub" file, whose line
// operators add to their known_hosts with FormatKnownHost. The parent
// directory is created (0700) when missing.
//
// The key is a trust input: it is refused when group or others can read
// or write it, when it is owned by a user other than root and signetd's
// own, or when a directory above it is open to others (see trustfile).
func LoadHostKey(path string) (ssh.Signer, error) {
	signer, err := loadHostKey(path)
	if err == nil {
		return signer, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keys: host key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keys: host key: %w", err)
	}
	host, _ := os.Hostname()
	if _, err := Generate(path, "signetd@"+host, nil); err != nil {
		return nil, fmt.Errorf("keys: create host key: %w", err)
	}
	signer, err = loadHostKey(path)
	if err != nil {
		return nil, fmt.Errorf("keys: host key: %w", err)
	}
	return signer, nil
}

// CheckHostKey checks the host key as LoadHostKey would load it, without
// creating it: a missing key is not an error (start-up creates it), a
// loose or unparsable one is.
func CheckHostKey(path string) error {
	_, err := loadHostKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func loadHostKey(path string) (ssh.Signer, error) {
	data, err := trustfile.ReadFile(path, trustfile.Options{What: "host key", Private: true, MaxBytes: maxKeyFile})
	if err != nil {
		return nil, err
	}
	return parseSigner(path, data, nil)
}
