package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
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
// name, and a host certificate from an authority not trusted for that
// name. A host known_hosts does not cover is listed as it is: the client
// reports it as an unknown host and sends it nothing.
func TestRegistryIgnoresForgedEntries(t *testing.T) {
	nc, reg := testRegistry(t, "t", time.Minute)
	ctx := context.Background()
	web1, web2, web3, intruder := newSigner(t), newSigner(t), newSigner(t), newSigner(t)
	known := hostKeys{"web1": web1.PublicKey(), "web2": web2.PublicKey(), "web3": web3.PublicKey(), "web4": newSigner(t).PublicKey()}
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
	// A host certificate from an authority known_hosts does not trust,
	// for a name it trusts another authority for.
	ca, other := newSSHCA(t), newSSHCA(t)
	put(ca.issue("web5", "web5", "-h", "-n", "web5"), "web5")
	// A host known_hosts does not cover at all: listed unverified, so the
	// client reports it as an unknown host (and sends it nothing).
	put(intruder, "db1")

	reported := map[string]error{}
	reg.Verify(caHostKeys{hostKeys: known, ca: other.pub, names: "web5"}, func(key string, err error) { reported[key] = err })
	regs, err := reg.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range regs {
		ids = append(ids, r.Identity)
	}
	if strings.Join(ids, " ") != "db1 web1" {
		t.Fatalf("listed %v, want db1 (unknown) and web1", ids)
	}
	if reported["db1"] != nil {
		t.Errorf("db1 reported as %v; it is an unknown host, which the client reports as such", reported["db1"])
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
	reg.Verify(caHostKeys{hostKeys: known, ca: ca.pub, names: "web5"}, func(key string, err error) { reported[key] = err })
	regs, err = reg.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 3 || regs[2].Identity != "web5" || reported["web5"] != nil {
		t.Fatalf("with the host CA trusted: %d entries, web5 reported %v", len(regs), reported["web5"])
	}

	// web1 verified once (and is remembered); a forged value written over
	// it afterwards is checked again and dropped.
	put(intruder, "web1")
	if regs, err = reg.List(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range regs {
		if r.Identity == "web1" {
			t.Fatal("a forged entry replacing a verified one was listed")
		}
	}
	if !errors.Is(reported["web1"], ErrRegistryEntry) {
		t.Fatalf("web1 reported as %v", reported["web1"])
	}
}

// caHostKeys trusts one host certificate authority for one name.
type caHostKeys struct {
	hostKeys
	ca    ssh.PublicKey
	names string
}

func (k caHostKeys) Covers(id string) bool { return id == k.names }

func (k caHostKeys) HostCA(id string, key ssh.PublicKey) bool {
	return id == k.names && string(key.Marshal()) == string(k.ca.Marshal())
}

// TestClientIgnoresForgedRegistryEntry: a client given a registry
// verifies it without being asked (NewClient), leaves a host whose entry
// was forged out of the request, and logs why.
func TestClientIgnoresForgedRegistryEntry(t *testing.T) {
	f := startFleet(t, 2)
	ctx := context.Background()
	reg, err := CreateRegistry(ctx, f.nc, "test", time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	for id, r := range f.resp {
		signer := r.cfg.HostKey
		if id == "web2" {
			signer = newSigner(t) // someone with write access to the bucket
		}
		n := r.cfg.Node()
		if err := reg.Put(ctx, signer, &Registration{Identity: id, Collective: "test", Facts: n.Facts, Agents: n.Agents}); err != nil {
			t.Fatal(err)
		}
	}
	var logs strings.Builder
	c, err := NewClient(ClientConfig{Conn: f.nc, Collective: "test", Signer: f.operator, User: "alice", HostKeys: f.keys,
		Registry: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Do(ctx, Query{Agent: "rpcutil", Action: "ping", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=ok" || out.Expected != 1 {
		t.Fatalf("got %s (expected %d), want only web1", got, out.Expected)
	}
	if !strings.Contains(logs.String(), "ignored a registry entry that does not verify") || !strings.Contains(logs.String(), "entry=web2") {
		t.Fatalf("not reported:\n%s", logs.String())
	}
}

// FuzzVerifyRegistration: a registry value is network bytes anyone with
// write access to the bucket chooses. Decoding never panics, and nothing
// but the genuine value verifies.
func FuzzVerifyRegistration(f *testing.F) {
	hk := newSigner(f)
	genuine, err := SignRegistration(hk, &Registration{Identity: "web1", Collective: "t", Agents: []string{"rpcutil"}})
	if err != nil {
		f.Fatal(err)
	}
	plain, _ := json.Marshal(&Registration{Identity: "web1"})
	f.Add(genuine)
	f.Add(plain)
	f.Add([]byte(`{"registration":{"identity":"web1"},"sig":"AAAA"}`))
	keys := hostKeys{"web1": hk.PublicKey()}
	now := time.Now()
	f.Fuzz(func(t *testing.T, value []byte) {
		reg, err := VerifyRegistration(keys, "web1", value, now)
		if err == nil && (reg == nil || reg.Identity != "web1") {
			t.Fatalf("verified %+v", reg)
		}
		if err == nil && string(value) != string(genuine) {
			// Another encoding of the same signed bytes is fine; a
			// different registration is not.
			var e signedEntry
			if json.Unmarshal(value, &e) != nil || !bytes.Equal(e.Registration, mustEntry(t, genuine).Registration) {
				t.Fatalf("a value other than the genuine one verified: %q", value)
			}
		}
	})
}

func mustEntry(t *testing.T, b []byte) signedEntry {
	var e signedEntry
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}
