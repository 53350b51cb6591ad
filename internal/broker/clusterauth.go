package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ClusterUser is the user name broker nodes present to each other on
// routes and leafnodes; the password is the cluster secret.
const ClusterUser = "signet-node"

// ClusterFiles are the credentials the nodes of one broker deployment
// (the cluster's nodes and the DR brokers that join it as leafnodes)
// present to each other: a CA of their own, one node certificate it
// signed (server and client use: each node both accepts and dials), its
// key, and a shared secret. `signet broker init` writes them in
// DIR/cluster; every node, DR brokers included, needs a copy of that
// directory.
type ClusterFiles struct {
	CA, Cert, Key, Secret string
}

// ClusterAuthPaths is where GenerateClusterAuth writes in dir.
func ClusterAuthPaths(dir string) ClusterFiles {
	c := filepath.Join(dir, "cluster")
	return ClusterFiles{CA: filepath.Join(c, "ca.pem"), Cert: filepath.Join(c, "node.pem"),
		Key: filepath.Join(c, "node-key.pem"), Secret: filepath.Join(c, "secret")}
}

// GenerateClusterAuth writes, in dir/cluster, a CA, a node certificate
// and key signed by it (valid for validity) and a random secret, all but
// the CA certificate mode 0600. Existing files are kept. The CA's key is
// not kept: a new set is made by removing the directory and running it
// again, then copying it to every node.
func GenerateClusterAuth(dir string, validity time.Duration) (ClusterFiles, error) {
	f := ClusterAuthPaths(dir)
	if _, err := os.Stat(f.Secret); err == nil {
		return f, nil
	}
	if err := os.MkdirAll(filepath.Dir(f.CA), 0o700); err != nil {
		return f, fmt.Errorf("broker: cluster auth: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	caTmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "signet broker nodes CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity), IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("broker: cluster auth: ca: %w", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: ClusterUser}, DNSNames: []string{ClusterUser},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("broker: cluster auth: node certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return f, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return f, err
	}
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	for _, w := range []struct {
		path string
		b    []byte
		perm os.FileMode
	}{
		{f.Key, pemOf("EC PRIVATE KEY", keyDER), 0o600},
		{f.CA, pemOf("CERTIFICATE", caDER), 0o644},
		{f.Cert, pemOf("CERTIFICATE", der), 0o644},
		{f.Secret, []byte(base64.RawURLEncoding.EncodeToString(secret) + "\n"), 0o600}, // last: the set is complete
	} {
		if err := writeFileAtomic(w.path, w.b, w.perm); err != nil {
			return f, fmt.Errorf("broker: cluster auth: %w", err)
		}
	}
	return f, nil
}

// ClusterAuth is what a node presents and requires on routes and
// leafnodes (Topology.Auth): mutual TLS with the nodes' own CA, and the
// shared secret as the password of ClusterUser.
type ClusterAuth struct {
	// TLS serves both sides: accepting, it requires a client certificate
	// signed by the nodes' CA; dialling, it presents the node certificate
	// and accepts a peer whose certificate the nodes' CA signed.
	TLS    *tls.Config
	Secret string
}

// ErrClusterAuth is wrapped by LoadClusterAuth's errors.
var ErrClusterAuth = errors.New("broker: cluster auth")

// LoadClusterAuth reads the files GenerateClusterAuth wrote in dir.
//
// A dialled peer is checked against the nodes' CA and the name
// ClusterUser, not against the address dialled: the CA signs nothing but
// node certificates, and routes are often dialled by IP address.
func LoadClusterAuth(dir string) (*ClusterAuth, error) {
	f := ClusterAuthPaths(dir)
	b, err := os.ReadFile(f.Secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClusterAuth, err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < 32 {
		return nil, fmt.Errorf("%w: %s: want a secret of at least 32 characters", ErrClusterAuth, f.Secret)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: node certificate: %w", ErrClusterAuth, err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClusterAuth, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%w: %s holds no certificate", ErrClusterAuth, f.CA)
	}
	return &ClusterAuth{
		// Accepting, a client certificate chained to the nodes' CA is
		// required; dialling, the peer's must chain to it and name
		// ClusterUser, whatever address was dialled.
		TLS: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, RootCAs: pool, ServerName: ClusterUser},
		Secret: secret,
	}, nil
}

// withUser returns u with the cluster user and secret, unless it names a
// user of its own.
func (a *ClusterAuth) withUser(u *url.URL) *url.URL {
	if u.User != nil {
		return u
	}
	c := *u
	c.User = url.UserPassword(ClusterUser, a.Secret)
	return &c
}
