package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/grammar"
	"github.com/signetbus/signet/internal/keys"
)

// controlOptions are the flags revoke, lock and unlock share.
type controlOptions struct {
	reason    string
	adminKeys string
	list      bool
}

func (o *controlOptions) register(c *cobra.Command) {
	c.Flags().StringVar(&o.adminKeys, "admin-keys", "", "authorized_keys-style file of the other admins whose documents you build on (your own key is always accepted)")
	c.Flags().BoolVar(&o.list, "list", false, "print the current document instead of changing it")
}

// controlSession is an admin's connection to the control bucket.
type controlSession struct {
	*session
	store  *control.Store
	trust  func(*control.Signed) error
	errOut io.Writer // notices for the admin
}

func (g *globalOptions) controlSession(ctx context.Context, o *controlOptions) (*controlSession, error) {
	s, err := g.connect(ctx)
	if err != nil {
		return nil, err
	}
	js, err := s.cfg.NATS.JetStream(s.nc)
	if err != nil {
		s.Close()
		return nil, err
	}
	store, err := control.OpenStoreIn(ctx, js, s.cfg.Collective, s.cfg.NATS.Replicas)
	if err != nil {
		s.Close()
		return nil, withHint(err, "revocations and locks need a broker with JetStream (signet broker has it)")
	}
	trusted := map[string]bool{string(s.signer.PublicKey().Marshal()): true}
	if o.adminKeys != "" {
		admins, err := keys.LoadAuthorizedKeys(o.adminKeys)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("admin keys: %w", err)
		}
		for _, a := range admins {
			trusted[a.KeyBlob] = true
		}
	}
	trust := func(sd *control.Signed) error {
		if !trusted[string(sd.KeyBlob)] {
			return fmt.Errorf("signed by %s, which is neither your key nor in --admin-keys", sd.Fingerprint())
		}
		return nil
	}
	return &controlSession{session: s, store: store, trust: trust, errOut: g.io.Err}, nil
}

func (cs *controlSession) update(ctx context.Context, kind string, edit func(*control.Document) error) (*control.Document, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// An operator's broker user may neither read the bucket's history
	// (a consumer) nor write it.
	bucket := control.Bucket(cs.cfg.Collective)
	// In a DR site's domain, reached through a hub, both are addressed
	// $JS.<domain>.API.… (nats.go's domain prefix).
	api := "$JS.API."
	if d := cs.cfg.NATS.JetStreamDomain; d != "" {
		api = "$JS." + d + ".API."
	}
	ctx, refused := cancelOnRefusal(ctx, cs.nc, "$KV."+bucket+".", api+"$KV."+bucket+".", api+"CONSUMER.CREATE.KV_"+bucket+".")
	d, err := cs.store.Update(ctx, control.UpdateOptions{Kind: kind, Signer: cs.signer, By: cs.cfg.User, TrustBase: cs.trust, Edit: edit,
		Hosts: cs.hosts(), Notice: func(s string) { fmt.Fprintln(cs.errOut, s) }})
	if err != nil && refused() {
		return nil, withHint(fmt.Errorf("the broker refused to store the %s document: your broker user may not write the control bucket %s", kind, bucket),
			"on a locked-down broker only admin users write revocations and locks: use an admin's nkey_file (signet broker init --admin NAME)")
	}
	return d, err
}

// hosts asks every host for the control documents it applied (the hosts
// hold the truth when a broker user flooded the bucket): the registry's
// hosts, or those a broadcast discovery finds.
func (cs *controlSession) hosts() control.HostsFunc {
	return control.AskHosts(cs.client, bus.Query{Timeout: 5 * time.Second})
}

// cancelOnRefusal returns a context that ends as soon as the broker
// refuses nc a publish on a subject starting with one of prefixes (a
// permissions violation, which nats.go reports only asynchronously: the
// publish itself would wait for its acknowledgement until ctx ends), and
// a function that says whether it did. The connection's error handler is
// called as before, and put back when ctx ends, which the caller makes
// sure of (a deadline, or its own cancel).
func cancelOnRefusal(ctx context.Context, nc *nats.Conn, prefixes ...string) (context.Context, func() bool) {
	ctx, cancel := context.WithCancel(ctx)
	var hit atomic.Bool
	prev := nc.ErrorHandler()
	nc.SetErrorHandler(func(c *nats.Conn, sub *nats.Subscription, err error) {
		if prev != nil {
			prev(c, sub, err)
		}
		if !errors.Is(err, nats.ErrPermissionViolation) {
			return
		}
		for _, p := range prefixes {
			if strings.Contains(err.Error(), `Publish to "`+p) {
				hit.Store(true)
				cancel()
			}
		}
	})
	context.AfterFunc(ctx, func() { nc.SetErrorHandler(prev) })
	return ctx, hit.Load
}

// current prints the current document of kind.
func (cs *controlSession) print(ctx context.Context, g *globalOptions, kind string) error {
	sd, _, err := cs.store.Current(ctx, kind)
	if err != nil {
		// A broker user wrote the key: the hosts have the truth.
		rc, herr := control.Newest(ctx, cs.hosts(), kind, cs.cfg.Collective, cs.trust)
		if herr != nil || rc.Base == nil {
			return errors.Join(err, herr)
		}
		fmt.Fprintf(g.io.Err, "the %s key of bucket %s is flooded (%v); showing the hosts' %s\n", kind, control.Bucket(cs.cfg.Collective), err, rc)
		sd = rc.Base
	}
	p := g.printer()
	if p.json {
		if sd == nil {
			return p.jsonValue(nil)
		}
		return p.jsonValue(sd.Doc)
	}
	if sd == nil {
		fmt.Fprintf(g.io.Err, "no %s document has been published in collective %s\n", kind, cs.cfg.Collective)
		return nil
	}
	fmt.Fprintf(g.io.Err, "%s seq %d signed by %s (%s) at %s\n", kind, sd.Doc.Seq, sd.Doc.By, sd.Fingerprint(), stampMS(sd.Doc.Issued))
	var rows [][]string
	for _, r := range sd.Doc.Revoked {
		rows = append(rows, []string{r.What(), r.By, stampMS(r.At), r.Reason})
	}
	for _, l := range sd.Doc.Locks {
		rows = append(rows, []string{l.ID, l.Scope.String(), l.By, stampMS(l.At), l.Reason})
	}
	header := []string{"REVOKED", "BY", "AT", "REASON"}
	if kind == control.KindLocks {
		header = []string{"LOCK", "SCOPE", "BY", "AT", "REASON"}
	}
	p.table(header, rows)
	return nil
}

func stampMS(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }

type revokeOptions struct {
	controlOptions
	keyID   string
	serial  string
	ca      string
	undo    bool
	refresh bool
}

func newRevokeCmd(g *globalOptions) *cobra.Command {
	o := &revokeOptions{}
	c := &cobra.Command{
		Use:   "revoke [KEY|FINGERPRINT] --reason TEXT",
		Short: "Revoke a key or certificate on every host (admin)",
		Long: `revoke adds a key (a .pub file, an authorized_keys line or its SHA256: fingerprint), a
certificate key id (--key-id) or a certificate serial (--serial, optionally --ca) to the
revocation list, signs the list with your key and publishes it on the broker. Every
signetd applies it within moments and refuses the key's requests, naming you and the
reason. Hosts accept the list only from keys their policy's admin_roles mark.

--refresh re-signs the list and the lock set unchanged: hosts refuse callers whose
roles the policy lists in fresh_revocation_roles once either is older than their
revocation_max_age, so run it from cron well within that age.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return revokeRun(cmd.Context(), g, o, args)
		},
	}
	c.Flags().StringVar(&o.reason, "reason", "", "why (shown to the refused operator and audited); required")
	c.Flags().StringVar(&o.keyID, "key-id", "", "revoke certificates with this key id")
	c.Flags().StringVar(&o.serial, "serial", "", "revoke the certificate with this serial")
	c.Flags().StringVar(&o.ca, "ca", "", "with --serial: the fingerprint of the CA that issued it")
	c.Flags().BoolVar(&o.undo, "undo", false, "take the entry off the list again")
	c.Flags().BoolVar(&o.refresh, "refresh", false, "re-sign the revocation list and the lock set unchanged, so hosts keep them fresh")
	o.controlOptions.register(c)
	return c
}

// revocationOf builds the entry the arguments name.
func (o *revokeOptions) revocationOf(args []string) (control.Revocation, error) {
	var r control.Revocation
	n := len(args)
	if o.keyID != "" {
		n++
		r.KeyID = o.keyID
	}
	if o.serial != "" {
		n++
		v, err := strconv.ParseUint(o.serial, 10, 64)
		if err != nil {
			return r, usageErrorf("--serial %q: want a decimal certificate serial", o.serial)
		}
		r.Serial, r.CA = &v, o.ca
	}
	if n != 1 {
		return r, usageErrorf("name exactly one of KEY|FINGERPRINT, --key-id and --serial")
	}
	if len(args) == 1 {
		fp, err := fingerprintOf(args[0])
		if err != nil {
			return r, err
		}
		r.Key = fp
	}
	return r, nil
}

// fingerprintOf reads a fingerprint, a public key file or a key line.
func fingerprintOf(arg string) (string, error) {
	if strings.HasPrefix(arg, "SHA256:") {
		return arg, nil
	}
	b := []byte(arg)
	if data, err := os.ReadFile(arg); err == nil {
		b = data
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(bytes.TrimSpace(b))
	if err != nil {
		return "", usageErrorf("%q is neither a SHA256: fingerprint, a public key file nor a public key line", arg)
	}
	if c, ok := pub.(*ssh.Certificate); ok {
		pub = c.Key
	}
	return keys.Fingerprint(pub), nil
}

func revokeRun(ctx context.Context, g *globalOptions, o *revokeOptions, args []string) error {
	var entry control.Revocation
	switch {
	case o.list || o.refresh:
		if len(args) > 0 || o.keyID != "" || o.serial != "" {
			return usageErrorf("--list and --refresh take no key")
		}
	default:
		var err error
		if entry, err = o.revocationOf(args); err != nil {
			return err
		}
		if strings.TrimSpace(o.reason) == "" && !o.undo {
			return usageErrorf("--reason is required: the refused operator and the audit see it")
		}
	}
	cs, err := g.controlSession(ctx, &o.controlOptions)
	if err != nil {
		return err
	}
	defer cs.Close()
	if o.list {
		return cs.print(ctx, g, control.KindRevocations)
	}
	if o.refresh {
		// Hosts need both documents fresh for the roles the policy marks.
		for _, kind := range []string{control.KindRevocations, control.KindLocks} {
			d, err := cs.update(ctx, kind, func(*control.Document) error { return nil })
			if err != nil {
				return err
			}
			if kind == control.KindRevocations {
				fmt.Fprintf(g.io.Out, "revocation list re-signed: seq %d, %d entries\n", d.Seq, len(d.Revoked))
			} else {
				fmt.Fprintf(g.io.Out, "lock set re-signed: seq %d, %d locks\n", d.Seq, len(d.Locks))
			}
		}
		return nil
	}
	d, err := cs.update(ctx, control.KindRevocations, func(d *control.Document) error {
		i := slices.IndexFunc(d.Revoked, func(r control.Revocation) bool { return r.What() == entry.What() })
		switch {
		case o.undo && i < 0:
			return fmt.Errorf("%s is not on the revocation list", entry.What())
		case o.undo:
			d.Revoked = slices.Delete(d.Revoked, i, i+1)
		case i >= 0:
			return fmt.Errorf("%s is already revoked (by %s at %s: %s)", entry.What(), d.Revoked[i].By, stampMS(d.Revoked[i].At), d.Revoked[i].Reason)
		default:
			entry.Reason, entry.By, entry.At = o.reason, cs.cfg.User, d.Issued
			d.Revoked = append(d.Revoked, entry)
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case o.undo:
		fmt.Fprintf(g.io.Out, "%s taken off the revocation list (seq %d)\n", entry.What(), d.Seq)
	default:
		fmt.Fprintf(g.io.Out, "revoked %s (seq %d)\n", entry.What(), d.Seq)
	}
	return nil
}

type lockOptions struct {
	controlOptions
	all   bool
	agent string
	app   string
	fact  string
}

func newLockCmd(g *globalOptions) *cobra.Command {
	o := &lockOptions{}
	c := &cobra.Command{
		Use:   "lock (--all | --agent NAME | --app NAME | --fact KEY=VALUE) --reason TEXT",
		Short: "Make every host refuse new actions in a scope (admin)",
		Long: `lock publishes an admin-signed lock: every signetd refuses new requests within its scope
(every action, one agent's actions, or every action on hosts with a fact; --app NAME is the
fact app=NAME) and tells the operator the reason. Actions already running finish.
Hosts audit the lock. It prints the lock's id, which signet unlock takes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return lockRun(cmd.Context(), g, o)
		},
	}
	c.Flags().StringVar(&o.reason, "reason", "", "why (shown to refused operators and audited); required")
	c.Flags().BoolVar(&o.all, "all", false, "lock every action on every host")
	c.Flags().StringVar(&o.agent, "agent", "", "lock every action of this agent")
	c.Flags().StringVar(&o.app, "app", "", "lock every action on hosts with the fact app=NAME")
	c.Flags().StringVar(&o.fact, "fact", "", "lock every action on hosts with this fact, KEY=VALUE")
	o.controlOptions.register(c)
	return c
}

func (o *lockOptions) scope() (control.Scope, error) {
	s := control.Scope{All: o.all, Agent: o.agent, Fact: o.fact}
	if o.app != "" {
		if s.Fact != "" {
			return s, usageErrorf("--app and --fact are two scopes: give one")
		}
		if err := grammar.CheckName("app", o.app); err != nil {
			return s, usageErrorf("--app: %v", err)
		}
		s.Fact = "app=" + o.app
	}
	if s.Agent != "" {
		if err := bus.CheckName("agent", s.Agent); err != nil {
			return s, usageErrorf("--agent: %v", err)
		}
	}
	if s.Fact != "" {
		k, _, _ := strings.Cut(s.Fact, "=")
		if err := grammar.CheckFactKey(k); err != nil {
			return s, usageErrorf("--fact: %v", err)
		}
	}
	if err := s.Check(); err != nil {
		return s, usageErrorf("%v", strings.TrimPrefix(err.Error(), "control: "))
	}
	return s, nil
}

func lockRun(ctx context.Context, g *globalOptions, o *lockOptions) error {
	var scope control.Scope
	if !o.list {
		var err error
		if scope, err = o.scope(); err != nil {
			return err
		}
		if strings.TrimSpace(o.reason) == "" {
			return usageErrorf("--reason is required: refused operators and the audit see it")
		}
	}
	cs, err := g.controlSession(ctx, &o.controlOptions)
	if err != nil {
		return err
	}
	defer cs.Close()
	if o.list {
		return cs.print(ctx, g, control.KindLocks)
	}
	var id string
	d, err := cs.update(ctx, control.KindLocks, func(d *control.Document) error {
		id = fmt.Sprintf("L%d", d.Seq)
		d.Locks = append(d.Locks, control.Lock{ID: id, Scope: scope, Reason: o.reason, By: cs.cfg.User, At: d.Issued})
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(g.io.Out, id)
	fmt.Fprintf(g.io.Err, "locked %s (seq %d, %d locks active); lift it with `signet unlock %s`\n", scope, d.Seq, len(d.Locks), id)
	return nil
}

type unlockOptions struct {
	controlOptions
	all bool
}

func newUnlockCmd(g *globalOptions) *cobra.Command {
	o := &unlockOptions{}
	c := &cobra.Command{
		Use:   "unlock (LOCK-ID... | --all)",
		Short: "Lift locks (admin)",
		Long:  "unlock publishes the lock set without the named locks, signed by your key. Hosts audit each lock lifted.",
		RunE: func(cmd *cobra.Command, args []string) error {
			return unlockRun(cmd.Context(), g, o, args)
		},
	}
	c.Flags().BoolVar(&o.all, "all", false, "lift every lock")
	c.Flags().StringVar(&o.adminKeys, "admin-keys", "", "authorized_keys-style file of the other admins whose documents you build on (your own key is always accepted)")
	return c
}

func unlockRun(ctx context.Context, g *globalOptions, o *unlockOptions, args []string) error {
	if o.all == (len(args) > 0) {
		return usageErrorf("name the locks to lift, or --all")
	}
	cs, err := g.controlSession(ctx, &o.controlOptions)
	if err != nil {
		return err
	}
	defer cs.Close()
	d, err := cs.update(ctx, control.KindLocks, func(d *control.Document) error {
		if o.all {
			d.Locks = nil
			return nil
		}
		for _, id := range args {
			i := slices.IndexFunc(d.Locks, func(l control.Lock) bool { return l.ID == id })
			if i < 0 {
				return fmt.Errorf("no lock %s (active: %s)", id, strings.Join(d.LockIDs(), ", "))
			}
			d.Locks = slices.Delete(d.Locks, i, i+1)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(g.io.Out, "unlocked (seq %d, %d locks active)\n", d.Seq, len(d.Locks))
	return nil
}
