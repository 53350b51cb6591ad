package bus

import (
	"crypto/rand"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// BenchmarkVerifyRequest measures what a host does to authenticate one
// request frame (parse it, find the trusted principal, check signatures),
// with a key listed in the trust file and with a user certificate from a
// trusted CA, in the same run. The goal is cert/key at most 1.3.
// cert-first is a certificate's first request on a host, which also checks
// the CA's signature over it; later ones find it in the host's cache.
//
//	go test ./bus -run '^$' -bench VerifyRequest -count 5
func BenchmarkVerifyRequest(b *testing.B) {
	r, op, certSig := certBench(b)
	for _, bc := range []struct {
		name   string
		signer ssh.Signer
		first  bool // every request is the certificate's first on this host
	}{{"key", op, false}, {"cert", certSig, false}, {"cert-first", certSig, true}} {
		frame := benchFrame(b, bc.signer, op)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if bc.first {
					r.certs = certCache{}
				}
				req, o, err := ParseRequest(frame)
				if err != nil {
					b.Fatal(err)
				}
				if _, f := r.authenticate(req, o); f != nil {
					b.Fatal(f.reason)
				}
			}
		})
	}
}

// BenchmarkVerifyRequestRatio interleaves the two, one request each per
// iteration, so a shared machine's changing load falls on both alike, and
// reports each one's time and their ratio (cert/key).
//
//	go test ./bus -run '^$' -bench VerifyRequestRatio -benchtime 4000x -count 5
func BenchmarkVerifyRequestRatio(b *testing.B) {
	r, op, certSig := certBench(b)
	frames := make([][]byte, 2)
	for i, s := range []ssh.Signer{op, certSig} {
		frames[i] = benchFrame(b, s, op)
	}
	var spent [2]time.Duration
	for b.Loop() {
		for i, frame := range frames {
			start := time.Now()
			req, o, err := ParseRequest(frame)
			if err != nil {
				b.Fatal(err)
			}
			if _, f := r.authenticate(req, o); f != nil {
				b.Fatal(f.reason)
			}
			spent[i] += time.Since(start)
		}
	}
	b.ReportMetric(float64(spent[0].Nanoseconds())/float64(b.N), "key-ns/op")
	b.ReportMetric(float64(spent[1].Nanoseconds())/float64(b.N), "cert-ns/op")
	b.ReportMetric(float64(spent[1])/float64(spent[0]), "cert/key")
}

// certBench is a responder that trusts the operator key op both as a
// listed key and through a user CA, with certSig carrying op's
// certificate from that CA.
func certBench(b *testing.B) (r *Responder, op, certSig ssh.Signer) {
	op = newSigner(b)
	ca := newSigner(b)
	cert := &ssh.Certificate{Key: op.PublicKey(), CertType: ssh.UserCert, KeyId: "alice", ValidPrincipals: []string{"admin"},
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		b.Fatal(err)
	}
	certSig, err := ssh.NewCertSigner(cert, op)
	if err != nil {
		b.Fatal(err)
	}
	trust := certTrust{
		trustMap: trustMap{string(op.PublicKey().Marshal()): {Name: "alice", Roles: []string{"admin"}, Fingerprint: ssh.FingerprintSHA256(op.PublicKey()), Key: op.PublicKey()}},
		cas:      map[string]*CertAuthority{string(ca.PublicKey().Marshal()): {Name: "ca", Roles: []string{"admin"}, Key: ca.PublicKey()}},
	}
	return &Responder{cfg: ResponderConfig{Trust: trust, Now: time.Now, ClockSkew: 30 * time.Second}}, op, certSig
}

// benchFrame is a package update request from op, signed by signer.
func benchFrame(b *testing.B, signer, op ssh.Signer) []byte {
	req := &Request{Version: ProtocolVersion, ID: NewID(), Sender: Sender{User: "alice", Key: ssh.FingerprintSHA256(op.PublicKey())},
		Collective: "prod", Agent: "package", Action: "update", Params: map[string]any{"package": "middleware", "version": "1.4.2"},
		Targets: []string{"web1"}, Created: time.Now().UnixMilli(), TTL: 60}
	frame, err := SignRequest(signer, req)
	if err != nil {
		b.Fatal(err)
	}
	return frame
}
