package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/signetbus/signet/internal/config"
	"github.com/signetbus/signet/internal/grammar"
	"github.com/signetbus/signet/internal/shard"
)

// Role is what a broker user may do (see PermissionsFor).
type Role string

// Broker roles.
const (
	// RoleAdmin may do anything: write the revocation list and locks,
	// create and change streams. Admins run `signet revoke` and `signet
	// lock`; the broker provisions its buckets as one.
	RoleAdmin Role = "admin"
	// RoleResponder is one host (signetd): it reads requests, replies to
	// them, and writes only its own registry entry and audit subject.
	RoleResponder Role = "responder"
	// RoleClient is one operator (signet): it publishes requests, reads
	// only its own inbox, and reads the registry, controls and audit.
	RoleClient Role = "client"
	// RoleLeaf is the DR brokers' leafnode connection to a hub whose
	// init names a collective in a JetStream domain (LeafUser): it may
	// take in only the DR collectives' subjects and their domains' API,
	// and send into the hub only replies.
	RoleLeaf Role = "leaf"
)

// LeafUser is the user DR brokers connect to the hub's leafnode listener
// as; its seed is LeafSeedPath, in the cluster/ directory every DR broker
// copies.
const LeafUser = "signet-leaf"

// LeafSeedPath is the seed of LeafUser in an auth directory.
func LeafSeedPath(dir string) string { return filepath.Join(dir, "cluster", "leaf.nk") }

// User is one broker user: an nkey and what it may do.
type User struct {
	// Name is the host identity of a responder (its registry key and
	// audit subject), and a label for a client or an admin.
	Name string
	Role Role
	// NKey is the user's public nkey ("U...").
	NKey string
}

// BrokerUser is the admin user the broker itself connects as to create
// its buckets (Provision); its seed is users/BrokerUser.nk in the auth
// directory.
const BrokerUser = "signet-broker"

// ResponseExpiry bounds how long a responder may answer a request it
// received (allow_responses): the longest action plus its queueing.
const ResponseExpiry = time.Hour

// Permissions are one user's subject permissions: what it may publish
// and subscribe to. AllowResponses lets it publish one reply to each
// request it received, within ResponseExpiry, whatever the reply subject.
type Permissions struct {
	Publish        []string
	Subscribe      []string
	AllowResponses bool
}

// Bucket and stream names a locked-down broker knows. They follow
// bus.RegistryBucket, control.Bucket, ship.Stream and the workflows
// defaults; a test checks they agree (this package sits below them).
func registryBucket(c string) string  { return "signet_registry_" + c }
func controlBucket(c string) string   { return "signet_control_" + c }
func auditStream(c string) string     { return "signet_audit_" + c }
func approvalsBucket(c string) string { return "signet_approvals_" + c }

// RunsBucket and LocksBucket are the workflow buckets (workflows.KVConfig
// defaults) clients keep deploy runs and deploy locks in.
const (
	RunsBucket  = "signet_runs"
	LocksBucket = "signet_locks"
	// ReleasesBucket holds the signed records of finished releases
	// (workflows/release.RecordsBucket).
	ReleasesBucket = "signet_releases"
)

// streamRead is what reading a stream needs: its info, an ordered or
// pull consumer of it (created, read, deleted), direct and message gets,
// and answering its flow control.
func streamRead(stream string) []string {
	return []string{
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.CONSUMER.CREATE." + stream,
		"$JS.API.CONSUMER.CREATE." + stream + ".>",
		"$JS.API.CONSUMER.INFO." + stream + ".*",
		"$JS.API.CONSUMER.DELETE." + stream + ".*",
		"$JS.API.CONSUMER.MSG.NEXT." + stream + ".*",
		"$JS.API.STREAM.MSG.GET." + stream,
		"$JS.API.DIRECT.GET." + stream,
		"$JS.API.DIRECT.GET." + stream + ".>",
		"$JS.FC." + stream + ".>",
	}
}

// kvRead is what reading and watching a key-value bucket needs.
func kvRead(bucket string) []string { return streamRead("KV_" + bucket) }

// kvGetPut is what getting and writing the keys of a bucket needs, without
// a consumer or a direct get: opening it, message gets, and writes (puts,
// creates, updates, deletes and purges are all publishes to $KV.BUCKET.KEY).
// The broker provisions these buckets without direct gets (nats.go then
// gets keys with $JS.API.STREAM.MSG.GET).
//
// No consumer and no direct get, on purpose: nats-server checks neither a
// push consumer's deliver subject nor a request's reply subject against
// the requester's permissions, so whoever may both write a stream and read
// it raw can have the broker publish any bytes on any subject (a probe put
// a bucket value into another client's inbox, the control bucket and a
// host's audit subject: TestReplySubjectGap). A message get answers in the
// broker's JSON, which no reader takes for anything else.
func kvGetPut(bucket string) []string {
	return append(kvGet(bucket), "$KV."+bucket+".>")
}

// kvGet is opening a bucket and getting its keys by message gets, as
// kvGetPut without writes.
func kvGet(bucket string) []string {
	s := "KV_" + bucket
	return []string{"$JS.API.STREAM.INFO." + s, "$JS.API.STREAM.MSG.GET." + s}
}

// Env is a collective a broker's users reach, and where its buckets live:
// on this broker (Domain empty), or on another broker that joins this one
// as a leafnode in its own JetStream domain (a DR site's --domain), whose
// API this broker forwards as $JS.<Domain>.API.
type Env struct {
	Collective string
	Domain     string
}

// PermissionsFor returns the subject permissions of u in collective; nil for
// an admin, who is not restricted. Everything not listed is denied.
//
// Both roles subscribe only to their own inbox prefix (InboxPrefix of
// their nkey), where the broker and JetStream answer them. Neither may
// create, change or delete a stream: the broker creates the buckets in
// advance (Provision), since a user allowed to change a stream could
// point it at other subjects and read them through a consumer.
func PermissionsFor(collective string, u User) *Permissions {
	return PermissionsForEnvs([]Env{{Collective: collective}}, u)
}

// PermissionsForEnvs returns the subject permissions of u on a broker
// whose users reach envs; envs[0] is the broker's own collective (no
// domain), whose hosts connect to it. A responder answers in envs[0]
// only: a DR host is a user of the DR broker, not of the hub. A client
// gets, for every env, what PermissionsFor gives it in that collective,
// with the JetStream API and key-value writes of an env in a domain
// addressed as nats.go does for a domain ($JS.API.X as $JS.D.API.X,
// $KV.B.K as $JS.D.API.$KV.B.K): the same least privilege, enforced by
// this broker, since what it forwards over a leafnode is not checked
// again against the other broker's users.
func PermissionsForEnvs(envs []Env, u User) *Permissions {
	if len(envs) == 0 {
		return nil
	}
	inbox := config.InboxPrefix(u.NKey) + ".>"
	switch u.Role {
	case RoleResponder:
		collective := envs[0].Collective
		pub := []string{
			// Its own registry entry, and opening the bucket.
			"$KV." + registryBucket(collective) + "." + u.Name,
			"$JS.API.STREAM.INFO.KV_" + registryBucket(collective),
			// Its own audit subject, and finding the stream.
			collective + ".audit." + u.Name,
			"$JS.API.STREAM.INFO." + auditStream(collective),
		}
		// Watching the revocation list and locks.
		pub = append(pub, kvRead(controlBucket(collective))...)
		sub := []string{
			collective + ".agent.*",
			collective + ".node." + u.Name,
			inbox,
		}
		// Its own shard subjects only (bus.ShardSubject).
		for _, size := range shard.Sizes {
			sub = append(sub, shard.Subject(collective, size, u.Name))
		}
		return &Permissions{
			Publish:        pub,
			Subscribe:      sub,
			AllowResponses: true,
		}
	case RoleClient:
		var pub []string
		seen := map[string]bool{}
		for _, e := range envs {
			for _, s := range clientPublish(e.Collective) {
				s = inDomain(e.Domain, s)
				if !seen[s] {
					seen[s] = true
					pub = append(pub, s)
				}
			}
		}
		return &Permissions{Publish: pub, Subscribe: []string{inbox}}
	case RoleLeaf:
		// For a leafnode, publish is what the DR broker sends into the
		// hub and subscribe what the hub sends it (nats-server applies a
		// leafnode user's permissions that way round). In: replies to
		// the operators' inboxes (hosts' answers, the DR JetStream's
		// answers and consumer deliveries). Out: each DR collective's
		// subjects and its domain's API, flow control replies, and the
		// leafnodes' loop detection.
		sub := []string{"$JS.FC.>", "$LDS.>"}
		for _, e := range envs {
			if e.Domain != "" {
				sub = append(sub, e.Collective+".>", "$JS."+e.Domain+".API.>")
			}
		}
		return &Permissions{Publish: []string{"_INBOX.>", "$LDS.>"}, Subscribe: sub}
	}
	return nil
}

// clientPublish is what an operator publishes in collective, on the
// broker that holds its buckets.
func clientPublish(collective string) []string {
	pub := []string{collective + ".agent.*", collective + ".node.>", collective + ".shard.>"}
	pub = append(pub, kvRead(registryBucket(collective))...)
	// The revocation list and locks: message gets only (signet lock
	// --list). A raw read (consumer, direct get) of an older
	// admin-signed document could name the bucket's key as its reply
	// subject and make that document current again.
	pub = append(pub, kvGet(controlBucket(collective))...)
	pub = append(pub, streamRead(auditStream(collective))...)
	// Deploy runs and locks: get and write, no consumer (kvGetPut).
	pub = append(pub, kvGetPut(RunsBucket)...)
	pub = append(pub, kvGetPut(LocksBucket)...)
	pub = append(pub, kvGetPut(ReleasesBucket)...)
	// Pending requests and approvals: written, and listed by message
	// gets (bus.ApprovalStore uses no consumer).
	return append(pub, kvGetPut(approvalsBucket(collective))...)
}

// inDomain addresses subject s of the JetStream API or of a key-value
// write in domain d, as nats.go does with a domain (jetstream.WithDomain):
// the domain's broker takes $JS.d.API.> off the leafnode as its own
// $JS.API.>. Request subjects and flow control replies keep their names.
func inDomain(d, s string) string {
	switch {
	case d == "":
		return s
	case strings.HasPrefix(s, "$JS.API."):
		return "$JS." + d + ".API." + strings.TrimPrefix(s, "$JS.API.")
	case strings.HasPrefix(s, "$KV."):
		return "$JS." + d + ".API." + s
	}
	return s
}

// ErrAuth is wrapped by errors in an auth spec.
var ErrAuth = errors.New("broker: auth")

// WriteAuthConfig renders users as a nats-server authorization block:
// the file `signet broker --auth` loads, and that an operator includes in
// an existing nats-server.conf to apply the same permissions.
func WriteAuthConfig(path string, envs []Env, users []User) error {
	var b strings.Builder
	var names []string
	for _, e := range envs {
		if e.Domain != "" {
			names = append(names, e.Collective+" (JetStream domain "+e.Domain+", over a leafnode)")
		} else {
			names = append(names, e.Collective)
		}
	}
	fmt.Fprintf(&b, "# signet broker users and permissions of collective %s.\n", strings.Join(names, ", "))
	b.WriteString("# Generated by `signet broker init`; include it in nats-server.conf or pass the\n")
	b.WriteString("# directory to `signet broker --auth`. Everything not allowed is denied.\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		fmt.Fprintf(&b, "    # %s (%s)\n    {\n      nkey: %s\n", u.Name, u.Role, strconv.Quote(u.NKey))
		if p := PermissionsForEnvs(envs, u); p != nil {
			b.WriteString("      permissions: {\n")
			fmt.Fprintf(&b, "        publish: { allow: %s }\n", quoteList(p.Publish))
			fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", quoteList(p.Subscribe))
			if p.AllowResponses {
				fmt.Fprintf(&b, "        allow_responses: { max: 1, expires: %q }\n", ResponseExpiry.String())
			}
			b.WriteString("      }\n")
		}
		b.WriteString("    }\n")
	}
	b.WriteString("  ]\n}\n")
	return writeFileAtomic(path, []byte(b.String()), 0o644)
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// AuthSpec names the users `signet broker init` makes.
type AuthSpec struct {
	// Collective is the broker's own: its hosts answer in it, and the
	// broker provisions its buckets.
	Collective string
	// Also are more collectives its clients reach: on this broker (no
	// Domain), or on a DR broker joined as a leafnode in Domain.
	Also []Env
	// Admins and Clients are operator names; Hosts are host identities.
	Admins, Clients, Hosts []string
}

// Envs returns the broker's own collective first, then Also, after
// checking every name: a collective appears once, and a domain is a
// valid JetStream domain name.
func (s AuthSpec) Envs() ([]Env, error) {
	envs := append([]Env{{Collective: s.Collective}}, s.Also...)
	seen := map[string]bool{}
	for i, e := range envs {
		if err := checkCollective(e.Collective); err != nil {
			return nil, err
		}
		if seen[e.Collective] {
			return nil, fmt.Errorf("%w: collective %s is named twice", ErrAuth, e.Collective)
		}
		seen[e.Collective] = true
		if i == 0 && e.Domain != "" {
			return nil, fmt.Errorf("%w: the broker's own collective %s has no domain: its hosts connect to this broker", ErrAuth, e.Collective)
		}
		if e.Domain != "" {
			if err := checkName(e.Domain); err != nil {
				return nil, fmt.Errorf("%w: JetStream domain of %s: %w", ErrAuth, e.Collective, err)
			}
		}
	}
	return envs, nil
}

// SeedPath is where GenerateAuth keeps the nkey seed of user name.
func SeedPath(dir, name string) string { return filepath.Join(dir, "users", name+".nk") }

// AuthConfigPath is the generated authorization file in dir.
func AuthConfigPath(dir string) string { return filepath.Join(dir, "auth.conf") }

// GenerateAuth writes, in dir, an nkey seed per user (users/NAME.nk, mode
// 0600; an existing seed is kept, so running it again with more users
// adds them) and auth.conf, the authorization block with every user's
// permissions. The broker's own admin user (BrokerUser) is always added.
// It returns the users written.
func GenerateAuth(dir string, spec AuthSpec) ([]User, error) {
	envs, err := spec.Envs()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "users"), 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuth, err)
	}
	// Check every name before writing anything.
	type named struct {
		name string
		role Role
	}
	all := []named{{BrokerUser, RoleAdmin}}
	for _, g := range []struct {
		names []string
		role  Role
	}{{spec.Admins, RoleAdmin}, {spec.Clients, RoleClient}, {spec.Hosts, RoleResponder}} {
		for _, n := range g.names {
			all = append(all, named{n, g.role})
		}
	}
	seen := map[string]Role{}
	for _, u := range all {
		check := grammar.CheckOperator
		if u.role == RoleResponder {
			check = grammar.CheckIdentity
		}
		if err := check(u.name); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrAuth, u.role, err)
		}
		if r, dup := seen[u.name]; dup {
			return nil, fmt.Errorf("%w: user %s is named twice (as %s and %s): every user needs its own name", ErrAuth, u.name, r, u.role)
		}
		seen[u.name] = u.role
	}
	var users []User
	for _, u := range all {
		pub, err := loadOrCreateSeed(SeedPath(dir, u.name))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrAuth, u.name, err)
		}
		users = append(users, User{Name: u.name, Role: u.role, NKey: pub})
	}
	// DR brokers connect to this hub as LeafUser when it names a DR
	// domain; its seed travels with cluster/.
	for _, e := range envs {
		if e.Domain == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(LeafSeedPath(dir)), 0o700); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAuth, err)
		}
		pub, err := loadOrCreateSeed(LeafSeedPath(dir))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrAuth, LeafUser, err)
		}
		users = append(users, User{Name: LeafUser, Role: RoleLeaf, NKey: pub})
		break
	}
	if err := WriteAuthConfig(AuthConfigPath(dir), envs, users); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuth, err)
	}
	return users, nil
}

// loadOrCreateSeed returns the public key of the user nkey seed at path,
// creating the seed (mode 0600) when it does not exist.
func loadOrCreateSeed(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
		if err != nil {
			return "", fmt.Errorf("seed %s: %w", path, err)
		}
		return kp.PublicKey()
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, append(seed, '\n'), 0o600); err != nil {
		return "", err
	}
	return kp.PublicKey()
}

// writeFileAtomic writes data to a temporary file in path's directory
// with mode perm and renames it over path.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// checkCollective is bus.CheckCollective's grammar (1-64 of A-Z a-z 0-9 _
// -), which this package cannot import; a test checks they agree.
func checkCollective(c string) error {
	if checkName(c) != nil {
		return fmt.Errorf("%w: invalid collective %q: want 1-64 of A-Z a-z 0-9 _ -", ErrAuth, c)
	}
	return nil
}

// checkName accepts 1-64 of A-Z a-z 0-9 _ -: a collective, or a
// JetStream domain (one subject token).
func checkName(c string) error {
	ok := len(c) >= 1 && len(c) <= 64
	for i := 0; ok && i < len(c); i++ {
		b := c[i]
		ok = b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-'
	}
	if !ok {
		return fmt.Errorf("invalid name %q: want 1-64 of A-Z a-z 0-9 _ -", c)
	}
	return nil
}
