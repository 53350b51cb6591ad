package broker

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// TestGenerateAuth: a bad or duplicate name writes nothing; running it
// again with more users keeps every existing seed; the file it writes is
// one nats-server loads, with each user's permissions.
func TestGenerateAuth(t *testing.T) {
	dir := t.TempDir()
	for _, spec := range []AuthSpec{
		{Collective: "prod", Hosts: []string{"web1"}, Clients: []string{"web1"}},
		{Collective: "prod", Hosts: []string{"-web1"}},
		{Collective: "prod", Clients: []string{"a b"}},
		{Collective: "a.b", Clients: []string{"alice"}},
	} {
		if _, err := GenerateAuth(dir, spec); !errors.Is(err, ErrAuth) {
			t.Errorf("%+v: %v, want ErrAuth", spec, err)
		}
	}
	if seeds, _ := filepath.Glob(filepath.Join(dir, "users", "*")); len(seeds) != 0 {
		t.Fatalf("a refused spec wrote %v", seeds)
	}
	first, err := GenerateAuth(dir, AuthSpec{Collective: "prod", Clients: []string{"alice"}, Hosts: []string{"web1.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	second, err := GenerateAuth(dir, AuthSpec{Collective: "prod", Admins: []string{"root"}, Clients: []string{"alice"}, Hosts: []string{"web1.example.com", "web2"}})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, u := range second {
		keys[u.Name] = u.NKey
	}
	for _, u := range first {
		if keys[u.Name] != u.NKey {
			t.Errorf("%s got a new key on the second run", u.Name)
		}
	}
	opts, err := server.ProcessConfigFile(AuthConfigPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Nkeys) != 5 {
		t.Fatalf("%d users loaded, want 5", len(opts.Nkeys))
	}
	for _, nk := range opts.Nkeys {
		switch nk.Nkey {
		case keys["web1.example.com"]:
			p := nk.Permissions
			if p == nil || p.Response == nil || p.Response.MaxMsgs != 1 || p.Response.Expires != ResponseExpiry ||
				!contains(p.Publish.Allow, "$KV.signet_registry_prod.web1.example.com") || !contains(p.Subscribe.Allow, "prod.node.web1.example.com") {
				t.Errorf("web1's permissions: %+v", p)
			}
		case keys["alice"]:
			if p := nk.Permissions; p == nil || p.Response != nil || !contains(p.Subscribe.Allow, "_INBOX."+keys["alice"]+".>") || len(p.Subscribe.Allow) != 1 {
				t.Errorf("alice's permissions: %+v", p)
			}
		case keys["root"], keys[BrokerUser]:
			if nk.Permissions != nil {
				t.Errorf("an admin is restricted: %+v", nk.Permissions)
			}
		}
	}
	conf, _ := os.ReadFile(AuthConfigPath(dir))
	for name := range keys {
		seed, err := os.ReadFile(SeedPath(dir, name))
		if err != nil || !strings.HasPrefix(string(seed), "SU") {
			t.Fatalf("seed of %s: %v", name, err)
		}
		if strings.Contains(string(conf), strings.TrimSpace(string(seed))) {
			t.Fatalf("auth.conf holds the seed of %s", name)
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestPermissionsForEnvs: a client of a hub gets, for a collective in a
// DR domain, the same subjects as on its own broker with the JetStream
// API and key-value writes in that domain; a host answers in the broker's
// own collective only; names are checked before anything is written.
func TestPermissionsForEnvs(t *testing.T) {
	envs := []Env{{Collective: "prod"}, {Collective: "dr", Domain: "dr"}}
	client := PermissionsForEnvs(envs, User{Name: "alice", Role: RoleClient, NKey: "UA"})
	pub := strings.Join(client.Publish, " ")
	for _, want := range []string{"prod.agent.*", "dr.agent.*", "dr.node.>", "dr.shard.>",
		"$JS.API.STREAM.INFO.KV_signet_registry_prod", "$JS.dr.API.STREAM.INFO.KV_signet_registry_dr",
		"$JS.dr.API.CONSUMER.CREATE.KV_signet_registry_dr", "$JS.dr.API.STREAM.MSG.GET.KV_signet_control_dr",
		"$JS.dr.API.$KV.signet_locks.>", "$JS.dr.API.$KV.signet_approvals_dr.>", "$JS.FC.KV_signet_registry_dr.>"} {
		if !slices.Contains(client.Publish, want) {
			t.Errorf("client may not publish %s: %s", want, pub)
		}
	}
	for _, not := range []string{"$JS.API.STREAM.INFO.KV_signet_registry_dr", "$KV.signet_approvals_dr.>",
		"$JS.dr.API.CONSUMER.CREATE.KV_signet_locks", "$JS.dr.API.$KV.signet_control_dr.>", "$JS.dr.API.DIRECT.GET.KV_signet_control_dr"} {
		if slices.Contains(client.Publish, not) {
			t.Errorf("client may publish %s", not)
		}
	}
	if got := len(client.Publish); got != len(slices.Compact(slices.Sorted(slices.Values(client.Publish)))) {
		t.Errorf("client permissions list a subject twice: %s", pub)
	}
	if !slices.Equal(client.Subscribe, []string{"_INBOX.UA.>"}) {
		t.Errorf("client subscribes to %v, want only its inbox", client.Subscribe)
	}
	host := PermissionsForEnvs(envs, User{Name: "web1", Role: RoleResponder, NKey: "UH"})
	if all := strings.Join(append(host.Publish, host.Subscribe...), " "); strings.Contains(all, "dr") {
		t.Errorf("a hub's host has permissions in the DR collective: %s", all)
	}
	if !slices.Equal(host.Publish, PermissionsFor("prod", User{Name: "web1", Role: RoleResponder, NKey: "UH"}).Publish) {
		t.Error("a host's permissions depend on the other collectives")
	}
	// The DR brokers' leafnode user: replies in, DR's subjects out.
	leaf := PermissionsForEnvs(envs, User{Name: LeafUser, Role: RoleLeaf, NKey: "UL"})
	if !slices.Equal(leaf.Publish, []string{"_INBOX.>", "$LDS.>"}) ||
		!slices.Equal(leaf.Subscribe, []string{"$JS.FC.>", "$LDS.>", "dr.>", "$JS.dr.API.>"}) || leaf.AllowResponses {
		t.Errorf("leafnode user: %+v", leaf)
	}
	dir := t.TempDir()
	users, err := GenerateAuth(dir, AuthSpec{Collective: "prod", Also: envs[1:], Clients: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	if u := users[len(users)-1]; u.Name != LeafUser || u.Role != RoleLeaf {
		t.Errorf("GenerateAuth with a DR domain made no leafnode user: %+v", users)
	}
	if fi, err := os.Stat(LeafSeedPath(dir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("leafnode seed %s: %v %v, want mode 0600", LeafSeedPath(dir), fi, err)
	}
	if _, err := GenerateAuth(t.TempDir(), AuthSpec{Collective: "prod", Also: []Env{{Collective: "stage"}}, Clients: []string{"alice"}}); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []AuthSpec{
		{Collective: "prod", Also: []Env{{Collective: "prod", Domain: "dr"}}},
		{Collective: "prod", Also: []Env{{Collective: "dr", Domain: "d.r"}}},
		{Collective: "prod", Also: []Env{{Collective: "d r"}}},
	} {
		dir := t.TempDir()
		if _, err := GenerateAuth(dir, spec); !errors.Is(err, ErrAuth) {
			t.Errorf("GenerateAuth(%+v): %v, want ErrAuth", spec, err)
		}
		if _, err := os.Stat(AuthConfigPath(dir)); err == nil {
			t.Errorf("GenerateAuth(%+v) wrote auth.conf", spec)
		}
	}
}
