package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/signetbus/signet/internal/keys"
)

// Certificate mode (Options.CA): the lab plays a security team's SSH CA
// with the stock ssh-keygen. DIR/ca/user_ca certifies the operator (key ID
// operator, principal admin, valid 8 hours from each start) and
// DIR/ca/host_ca certifies each host (its identity, 52 weeks). Hosts trust
// the user CA with one cert-authority line and no operator key; the
// client's known_hosts is one "@cert-authority *" line and no host key.
// The CAs are kept across starts; the certificates are issued again at
// each start.

const (
	userCA = "user_ca"
	hostCA = "host_ca"
	// operatorValidity is the operator certificate's -V window.
	operatorValidity = "-5m:+8h"
	hostValidity     = "-5m:+52w"
)

// ErrNoSSHKeygen is returned by Start in certificate mode without ssh-keygen.
var ErrNoSSHKeygen = errors.New("lab: certificate mode runs ssh-keygen, which is not installed (Debian package openssh-client)")

// sshKeygen runs ssh-keygen with args (an argv, never a shell line).
func sshKeygen(args ...string) error {
	path, err := exec.LookPath("ssh-keygen")
	if err != nil {
		return ErrNoSSHKeygen
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: ssh-keygen %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// caDir is where the lab keeps its two CAs.
func (l *Lab) caDir() string { return filepath.Join(l.Dir, "ca") }

// caTrust creates the CAs if needed, certifies the operator key and
// returns the authorized_keys line that trusts the user CA.
func (l *Lab) caTrust(opKey string) (string, error) {
	if err := os.MkdirAll(l.caDir(), 0o700); err != nil {
		return "", err
	}
	for _, name := range []string{userCA, hostCA} {
		path := filepath.Join(l.caDir(), name)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if err := sshKeygen("-q", "-t", "ed25519", "-N", "", "-C", "lab-"+strings.ReplaceAll(name, "_", "-"), "-f", path); err != nil {
				return "", err
			}
		}
	}
	if err := sshKeygen("-q", "-s", filepath.Join(l.caDir(), userCA), "-I", "operator", "-n", "admin", "-V", operatorValidity, opKey+".pub"); err != nil {
		return "", err
	}
	pub, err := os.ReadFile(filepath.Join(l.caDir(), userCA+".pub"))
	if err != nil {
		return "", err
	}
	return `cert-authority,roles="admin",name="lab-user-ca" ` + strings.TrimSpace(string(pub)) + "\n", nil
}

// certifyHost issues h's host certificate and makes the host present it.
func (l *Lab) certifyHost(h *HostInfo) error {
	key := filepath.Join(h.Dir, "host_key")
	if err := sshKeygen("-q", "-s", filepath.Join(l.caDir(), hostCA), "-h", "-I", h.Identity, "-n", h.Identity, "-V", hostValidity, key+".pub"); err != nil {
		return err
	}
	s, err := keys.LoadHostCertificate(key+keys.CertSuffix, l.keys[h.Identity], h.Identity)
	if err != nil {
		return err
	}
	l.keys[h.Identity] = s
	return nil
}

// hostCALine is the client's whole known_hosts in certificate mode.
func (l *Lab) hostCALine() (string, error) {
	pub, err := os.ReadFile(filepath.Join(l.caDir(), hostCA+".pub"))
	if err != nil {
		return "", err
	}
	return "@cert-authority * " + strings.TrimSpace(string(pub)) + "\n", nil
}
