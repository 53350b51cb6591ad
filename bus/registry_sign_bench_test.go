package bus

import (
	"testing"
	"time"
)

// BenchmarkVerifyRegistration is the cost a client pays per registry
// entry on every listing (ed25519 verify, JSON decode).
func BenchmarkVerifyRegistration(b *testing.B) {
	hk := newSigner(b)
	reg := &Registration{Identity: "web1", Collective: "prod", Facts: map[string]string{"env": "prod", "zone": "a", "role": "web"},
		Agents: []string{"rpcutil", "package", "service", "haproxy"}, Version: "1.2.3", Started: time.Now(), Updated: time.Now()}
	v, err := SignRegistration(hk, reg)
	if err != nil {
		b.Fatal(err)
	}
	keys := hostKeys{"web1": hk.PublicKey()}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyRegistration(keys, "web1", v, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRegistryDecodeCached is the same entry listed again unchanged:
// a hash instead of a signature check.
func BenchmarkRegistryDecodeCached(b *testing.B) {
	hk := newSigner(b)
	v, err := SignRegistration(hk, &Registration{Identity: "web1", Collective: "prod", Facts: map[string]string{"env": "prod", "zone": "a", "role": "web"},
		Agents: []string{"rpcutil", "package", "service", "haproxy"}, Version: "1.2.3", Started: time.Now(), Updated: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	r := &Registry{}
	r.Verify(hostKeys{"web1": hk.PublicKey()}, nil)
	b.ReportAllocs()
	for b.Loop() {
		if r.decode("web1", v) == nil {
			b.Fatal("did not verify")
		}
	}
}
