package bus

import (
	"crypto/ed25519"
	"testing"

	"golang.org/x/crypto/ssh"
)

type oneKey struct {
	id  string
	pub ssh.PublicKey
}

func (k oneKey) Lookup(id string) (ssh.PublicKey, bool) { return k.pub, id == k.id }

// BenchmarkVerifyReply is the client's cost per reply: parse the frame,
// look up the host key (parsed once, when known_hosts is loaded) and
// verify the SSHSIG signature. docs/performance.md multiplies it by the
// fleet for the 100,000-host figures.
func BenchmarkVerifyReply(b *testing.B) {
	hk := newSigner(b)
	frame, err := SignReply(hk, &Reply{Version: 1, RequestID: NewID(), Identity: "web1", Agent: "rpcutil", Action: "ping",
		Status: StatusOK, Summary: "pong", Data: map[string]any{"pong": true}, Time: 1, RequestDigest: FrameDigest([]byte("x"))})
	if err != nil {
		b.Fatal(err)
	}
	c := &Client{cfg: ClientConfig{HostKeys: oneKey{"web1", hk.PublicKey()}}}
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := c.verifySigned(frame); r.Status != ResultOK {
			b.Fatalf("%s: %s", r.Status, r.Error)
		}
	}
}

// BenchmarkEd25519Verify is the bare signature check, for comparison.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 64)
	sig := ed25519.Sign(priv, msg)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("bad")
		}
	}
}
