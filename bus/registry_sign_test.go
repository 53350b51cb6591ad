package bus

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"
)

// TestRegistryIgnoresForgedEntries: anyone who can write the registry
// bucket could announce a host or rewrite a real host's facts and agents.
// A client lists only entries signed by the host they name (its pinned
// key, or a key its host certificate vouches for) and reports the rest:
// unsigned, signed by another key, signed by one host under another's
// name, and a host certificate from an untrusted authority.
func TestRegistryIgnoresForgedEntries(t *testing.T) {
	nc, reg := testRegistry(t, "t", time.Minute)
	ctx := context.Background()
	web1, web2, web3, intruder := newSigner(t), newSigner(t), newSigner(t), newSigner(t)
	known := hostKeys{"web1": web1.PublicKey(), "web2": web2.PublicKey(), "web3": web3.PublicKey()}
	now := time.Now()
	put := func(s ssh.Signer, id string) {
		t.Helper()
		if err := reg.Put(ctx, s, &Registration{Identity: id, Collective: "t", Agents: []string{"rpcutil"}, Started: now, Updated: now}); err != nil {
			t.Fatal(err)
		}
	}
	put(web1, "web1")
	put(intruder, "web2") // a key that is not web2's
	put(web1, "web3")     // web1 signing for web3
	// An unsigned entry in the old format, written straight to the bucket.
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, RegistryBucket("t"))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(&Registration{Identity: "web4", Collective: "t", Agents: []string{"rpcutil"}})
	if _, err := kv.Put(ctx, "web4", plain); err != nil {
		t.Fatal(err)
	}
	// A host certificate from an authority known_hosts does not trust.
	ca := newSSHCA(t)
	put(ca.issue("web5", "web5", "-h", "-n", "web5"), "web5")

	reported := map[string]error{}
	reg.Verify(known, func(key string, err error) { reported[key] = err })
	regs, err := reg.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || regs[0].Identity != "web1" {
		var ids []string
		for _, r := range regs {
			ids = append(ids, r.Identity)
		}
		t.Fatalf("listed %v, want only web1", ids)
	}
	for key, want := range map[string]string{"web2": "not by the host key of web2", "web3": "not by the host key of web3",
		"web4": "is not signed", "web5": "does not trust"} {
		err := reported[key]
		if !errors.Is(err, ErrRegistryEntry) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s reported as %v, want ErrRegistryEntry saying %q", key, err, want)
		}
	}

	// Trusting the authority for web5 makes its certified entry count.
	reported = map[string]error{}
	reg.Verify(caHostKeys{hostKeys: known, ca: ca.pub}, func(key string, err error) { reported[key] = err })
	regs, err = reg.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 2 || regs[1].Identity != "web5" || reported["web5"] != nil {
		t.Fatalf("with the host CA trusted: %d entries, web5 reported %v", len(regs), reported["web5"])
	}
}

// caHostKeys trusts one host certificate authority for every name.
type caHostKeys struct {
	hostKeys
	ca ssh.PublicKey
}

func (k caHostKeys) HostCA(_ string, key ssh.PublicKey) bool {
	return string(key.Marshal()) == string(k.ca.Marshal())
}
