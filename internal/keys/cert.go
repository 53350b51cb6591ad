package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"golang.org/x/crypto/ssh"
)

// CertSuffix is what ssh-keygen -s appends to a key's path for its
// certificate: id_ed25519 is certified in id_ed25519-cert.pub.
const CertSuffix = "-cert.pub"

// ParseCertificate parses a -cert.pub line (type, base64, comment).
func ParseCertificate(data []byte) (*ssh.Certificate, error) {
	pub, _, _, rest, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("keys: not a certificate line: %w", err)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("keys: more than one certificate in the file")
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("keys: a plain %s key, not a certificate", pub.Type())
	}
	if err := checkType(cert.Key); err != nil {
		return nil, err
	}
	return cert, nil
}

// LoadCertificate reads a certificate file (ssh-keygen -s writes them).
func LoadCertificate(path string) (*ssh.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: certificate: %w", err)
	}
	cert, err := ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

// certify returns signer presenting cert, which must certify its key.
func certify(signer ssh.Signer, cert *ssh.Certificate, path string) (ssh.Signer, error) {
	if !bytes.Equal(cert.Key.Marshal(), signer.PublicKey().Marshal()) {
		return nil, fmt.Errorf("keys: certificate %s certifies %s, not the key %s", path, Fingerprint(cert.Key), Fingerprint(signer.PublicKey()))
	}
	s, err := ssh.NewCertSigner(cert, signer)
	if err != nil {
		return nil, fmt.Errorf("keys: certificate %s: %w", path, err)
	}
	return s, nil
}

// WithCertificate returns signer presenting the user certificate in
// keyPath+CertSuffix, as ssh does, or signer itself when there is no such
// file. The certificate must be a user certificate of signer's key. Its
// validity window is checked when a request is signed.
func WithCertificate(signer ssh.Signer, keyPath string) (ssh.Signer, error) {
	path := keyPath + CertSuffix
	cert, err := LoadCertificate(path)
	if errors.Is(err, fs.ErrNotExist) {
		return signer, nil
	}
	if err != nil {
		return nil, err
	}
	if cert.CertType != ssh.UserCert {
		return nil, fmt.Errorf("keys: %s is a host certificate; operators sign with a user certificate (ssh-keygen -s CA -I NAME -n ROLES KEY.pub)", path)
	}
	return certify(signer, cert, path)
}

// LoadHostCertificate returns hostKey presenting the host certificate in
// path, after CheckHostCertificate, when it certifies hostKey.
func LoadHostCertificate(path string, hostKey ssh.Signer, identity string) (ssh.Signer, error) {
	cert, err := checkHostCertificate(path, identity)
	if err != nil {
		return nil, err
	}
	return certify(hostKey, cert, path)
}

// CheckHostCertificate checks the host certificate in path: a host
// certificate naming identity among its principals, so signetd does not
// start with one that every client would refuse. Its window is not
// checked: a renewed file is read on restart, and clients report an
// expired one.
func CheckHostCertificate(path, identity string) error {
	_, err := checkHostCertificate(path, identity)
	return err
}

func checkHostCertificate(path, identity string) (*ssh.Certificate, error) {
	cert, err := LoadCertificate(path)
	if err != nil {
		return nil, err
	}
	if cert.CertType != ssh.HostCert {
		return nil, fmt.Errorf("keys: %s is a user certificate; a host presents a host certificate (ssh-keygen -s CA -h -I %s -n %s host_key.pub)", path, identity, identity)
	}
	if !slices.Contains(cert.ValidPrincipals, identity) {
		return nil, fmt.Errorf("keys: host certificate %s names %v, not this host's identity %s", path, cert.ValidPrincipals, identity)
	}
	return cert, nil
}
