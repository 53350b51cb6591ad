package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TLSFiles are the PEM files of a broker's TLS: the CA clients trust
// (nats.ca_file), and the server's certificate and key.
type TLSFiles struct {
	CA, Cert, Key string
}

// LabTLS is where GenerateTLS writes in dir.
func LabTLS(dir string) TLSFiles {
	return TLSFiles{CA: filepath.Join(dir, "tls", "ca.pem"), Cert: filepath.Join(dir, "tls", "server.pem"),
		Key: filepath.Join(dir, "tls", "server-key.pem")}
}

// GenerateTLS makes, for a lab or a first install, a CA and a server
// certificate signed by it for names (host names or IP addresses the
// clients dial; default localhost and 127.0.0.1), valid for validity.
// Keys are ECDSA P-256, written 0600; the CA key (tls/ca-key.pem) is
// kept to sign the next server certificate. Existing files are kept. A
// production broker uses the operator's own PKI instead (--tls-cert,
// --tls-key).
func GenerateTLS(dir string, names []string, validity time.Duration) (TLSFiles, error) {
	f := LabTLS(dir)
	if _, err := os.Stat(f.Cert); err == nil {
		return f, nil
	}
	if len(names) == 0 {
		names = []string{"localhost", "127.0.0.1"}
	}
	if err := os.MkdirAll(filepath.Dir(f.CA), 0o700); err != nil {
		return f, err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "signet broker CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("broker: tls: ca: %w", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("broker: tls: server certificate: %w", err)
	}
	write := func(path, typ string, b []byte, perm os.FileMode) error {
		return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), perm)
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return f, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return f, err
	}
	for _, w := range []struct {
		path, typ string
		b         []byte
		perm      os.FileMode
	}{
		{filepath.Join(filepath.Dir(f.CA), "ca-key.pem"), "EC PRIVATE KEY", caKeyDER, 0o600},
		{f.Key, "EC PRIVATE KEY", keyDER, 0o600},
		{f.CA, "CERTIFICATE", caDER, 0o644},
		{f.Cert, "CERTIFICATE", der, 0o644}, // last: its presence says the set is complete
	} {
		if err := write(w.path, w.typ, w.b, w.perm); err != nil {
			return f, fmt.Errorf("broker: tls: %w", err)
		}
	}
	return f, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("broker: no randomness: " + err.Error())
	}
	return n
}

// tlsConfig is the server side of the broker's TLS: its certificate and
// key, and, with clientCA, client certificates required and verified.
func tlsConfig(cert, key, clientCA string) (*tls.Config, error) {
	if cert == "" || key == "" {
		return nil, errors.New("broker: tls needs both a certificate and its key (--tls-cert, --tls-key)")
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert, KeyFile: key, CaFile: clientCA, Verify: clientCA != "",
		Timeout: 2})
	if err != nil {
		return nil, fmt.Errorf("broker: tls: %w", err)
	}
	return tc, nil
}
