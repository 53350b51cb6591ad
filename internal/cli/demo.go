package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/signetbus/signet/internal/lazyre"
	"github.com/signetbus/signet/internal/stage"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/gatelab"
)

// demoOptions are the flags of `signet demo`.
type demoOptions struct {
	hosts   int
	dir     string
	brk     string
	sandbox bool
	keep    bool
	canary  bool
	ca      bool
}

// The demo rolls its app from the first version to the second.
const (
	demoFrom = "1.0"
	demoTo   = "1.1"
)

func newDemoCmd(g *globalOptions) *cobra.Command {
	o := &demoOptions{}
	c := &cobra.Command{
		Use:   "demo",
		Short: "Roll an app out across a local fleet with real backends, and show it worked",
		Long: `demo brings up a fleet on this machine: an embedded NATS broker and signed responders
web1..webN in zones a/b/c, each with a demo web app 1.0 installed as a real .deb (in an
isolated dpkg/apt root) and supervised by runit, behind one HAProxy, with Alertmanager
for maintenance silences. It then rolls the app to 1.1 with the rolling deploy over the
signed bus, and checks that every host (and HAProxy) serves 1.1.

A backend that is not installed (haproxy, prometheus-alertmanager, runit, dpkg/apt, or
not running as root for dpkg) is replaced by a sandbox stand-in with the same actions;
the demo says which and why. See docs/demo.md.`,
		Example: `  signet demo
  signet demo --break web3      # the 1.1 package fails on web3: the rollout stops there
  signet demo --keep            # keep the fleet running afterwards to try signet on it
  signet demo --canary          # web1 first, baked with a health check and metric gates, then the rest
  signet demo --ca              # the demo on SSH certificates (ssh-keygen CAs, as signet lab --ca)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demoRun(cmd.Context(), g, o)
		},
	}
	c.AddCommand(newDemoAppCmd())
	f := c.Flags()
	f.IntVar(&o.hosts, "hosts", 6, "number of hosts (web1..webN)")
	f.StringVar(&o.dir, "dir", "", "directory for the fleet (default: a temporary one, removed at the end unless --keep)")
	f.StringVar(&o.brk, "break", "", "make the 1.1 package fail to install on this host (webN)")
	f.BoolVar(&o.sandbox, "sandbox", false, "use sandbox backends even where real ones are installed")
	f.BoolVar(&o.ca, "ca", false, "certificate mode, as signet lab --ca: the operator signs with a user certificate, hosts present host certificates")
	f.BoolVar(&o.keep, "keep", false, "keep the fleet running after the demo, until Ctrl-C")
	f.BoolVar(&o.canary, "canary", false, "deploy web1 first as a canary, bake it with metric gates (a Prometheus the demo starts, if installed), then promote")
	return c
}

// newDemoAppCmd is `signet demo app CONFIG`, hidden: the demo's runit
// services run it to serve the demo web app (stage.AppMain). It is part of
// the demo, an explicit command of the operator CLI, never of signetd.
func newDemoAppCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "app CONFIG",
		Short:  "Serve the demo web app (run by the demo's runit services)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := stage.AppMain(args[0]); code != 0 {
				return &partialFailure{} // AppMain printed why; exit 1
			}
			return nil
		},
	}
}

var demoHostRE = lazyre.New(`^web([1-9][0-9]*)$`)

func (o *demoOptions) check() error {
	if o.hosts < 1 || o.hosts > 50 {
		return usageErrorf("--hosts must be between 1 and 50, not %d", o.hosts)
	}
	if o.canary && o.hosts < 2 {
		return usageErrorf("--canary needs at least 2 hosts: web1 is the canary, the others follow")
	}
	if o.brk != "" {
		m := demoHostRE.FindStringSubmatch(o.brk)
		if m == nil {
			return usageErrorf("--break: want a host such as web3, not %q", o.brk)
		}
		if n, _ := strconv.Atoi(m[1]); n > o.hosts {
			return usageErrorf("--break %s: the demo has only web1..web%d", o.brk, o.hosts)
		}
	}
	return nil
}

func demoRun(ctx context.Context, g *globalOptions, o *demoOptions) (err error) {
	if err := o.check(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := g.io.Out
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "signet-demo-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	}
	log := slog.New(slog.DiscardHandler)
	if g.io.Getenv("SIGNET_DEBUG") != "" {
		log = g.logger()
	}

	fmt.Fprintf(out, "signet demo: %d hosts (web1..web%d, zones a/b/c), app demo %s -> %s\n", o.hosts, o.hosts, demoFrom, demoTo)
	start := time.Now()
	// runit runs the demo app as `signet demo app CONFIG`: this very program.
	var appCmd []string
	if exe, err := os.Executable(); err == nil {
		appCmd = []string{exe, "demo", "app"}
	}
	st, err := stage.Start(ctx, stage.Options{Dir: dir, Hosts: o.hosts, Versions: []string{demoFrom, demoTo}, Logger: log, Sandbox: o.sandbox, AppCommand: appCmd, CA: o.ca})
	if err != nil {
		return withHint(err, "run with --sandbox to use stand-ins for the real backends; SIGNET_DEBUG=1 shows the responders' logs")
	}
	defer func() {
		if serr := st.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	writeBackends(out, st)
	if o.ca {
		fmt.Fprintf(out, "  %-12s real: ssh-keygen user CA and host CA in %s/ca; the operator signs with a user certificate, each host presents a host certificate\n", "trust", dir)
	}
	fmt.Fprintf(out, "fleet ready in %s: %d signed responders on %s, every host serves demo %s\n",
		time.Since(start).Round(100*time.Millisecond), o.hosts, st.Lab.Broker.ClientURL(), demoFrom)
	if st.FrontendURL != "" {
		fmt.Fprintf(out, "haproxy frontend: %s (backend demo: web1..web%d)\n", st.FrontendURL, o.hosts)
	}
	if o.brk != "" {
		if err := st.BreakPackage(o.brk, demoTo); err != nil {
			return err
		}
		fmt.Fprintf(out, "\n--break %s: the demo %s package will fail to install on %s (its preinst exits 1)\n", o.brk, demoTo, o.brk)
	}

	if o.canary {
		stopMon, err := demoCanary(ctx, out, st, filepath.Join(dir, "monitoring"))
		if err != nil {
			return err
		}
		defer stopMon()
	}
	op, err := st.Operator(ctx)
	if err != nil {
		return err
	}
	defer op.Close()
	fmt.Fprintf(out, "\n$ signet deploy %s %s --env %s --yes    # app file %s\n", st.App, demoTo, st.Env, st.AppFile)
	recap, derr := st.Deploy(ctx, nil, op, demoTo, out)

	if ctx.Err() != nil {
		return fmt.Errorf("demo interrupted, stopping the fleet: %w", derr)
	}
	fmt.Fprintln(out)
	verified := demoVerify(ctx, out, st, recap)
	switch {
	case derr != nil:
		if o.keep {
			fmt.Fprintf(out, "\nto finish the rollout by hand: rm %s, then run the deploy below\n", st.BreakMarker(o.brk, demoTo))
			demoKeep(ctx, out, st, demoTo)
		}
		hint := "the deploy stopped at the first failure; the failed host stays out of rotation for a person to look at"
		if o.brk != "" {
			hint = fmt.Sprintf("--break %s broke it on purpose: the rollout halted there; the other hosts of its batch finished and are back in rotation, later batches were not touched", o.brk)
		}
		return withHint(fmt.Errorf("demo: deploy failed: %w", derr), hint)
	case !verified:
		return errors.New("demo: the deploy reported success but not every host serves " + demoTo)
	}
	fmt.Fprintf(out, "every host serves %s\n", demoTo)
	if o.keep {
		demoKeep(ctx, out, st, demoFrom)
	}
	return nil
}

func writeBackends(out io.Writer, st *stage.Stage) {
	names := make([]string, 0, len(st.Backends))
	for k := range st.Backends {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Fprintln(out, "backends:")
	for _, k := range names {
		fmt.Fprintf(out, "  %-12s %s\n", k, st.Backends[k])
	}
	fmt.Fprintf(out, "  %-12s real: embedded NATS, ed25519-signed requests and replies, policy, audit\n", "bus")
}

// demoVerify asks every app (and HAProxy) what it serves, prints it, and
// reports whether every host serves demoTo.
func demoVerify(ctx context.Context, out io.Writer, st *stage.Stage, recap *workflows.Recap) bool {
	fmt.Fprintln(out, "verify: GET /version on every host")
	status := map[string]string{}
	if stats, err := st.ShowStat(ctx); err == nil {
		for _, s := range stats {
			status[s.Server] = s.Status
		}
	}
	ok := true
	for _, h := range st.Hosts {
		v, err := st.Serves(ctx, h.Identity)
		mark := "ok"
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			v, mark, ok = "-", "NOT "+demoTo+" (app not running)", false
		case err != nil:
			v, mark, ok = "-", "NOT "+demoTo+" ("+err.Error()+")", false
		case v != demoTo:
			mark, ok = "NOT "+demoTo, false
		}
		line := fmt.Sprintf("  %-6s serves %-4s %s", h.Identity, v, mark)
		if s := haproxyState(status[h.Identity]); s != "" {
			line = fmt.Sprintf("%-48s haproxy: %s", line, s)
		}
		fmt.Fprintln(out, line)
	}
	if st.FrontendURL != "" {
		seen, err := st.ThroughFrontend(ctx, 2*len(st.Hosts))
		if err != nil {
			fmt.Fprintf(out, "  %v\n", err)
			ok = false
		} else {
			answers := make([]string, 0, len(seen))
			for body, n := range seen {
				answers = append(answers, fmt.Sprintf("%q x%d", body, n))
				if !strings.Contains(body, "demo "+demoTo+" ") {
					ok = false
				}
			}
			sort.Strings(answers)
			fmt.Fprintf(out, "  through haproxy (%d requests): %s\n", 2*len(st.Hosts), strings.Join(answers, ", "))
		}
	}
	if recap != nil && len(recap.OutOfRotation) > 0 {
		left := make([]string, len(recap.OutOfRotation))
		for i, m := range recap.OutOfRotation {
			left[i] = m.String()
		}
		fmt.Fprintf(out, "left out of rotation: %s\n", strings.Join(left, ", "))
	}
	return ok
}

// demoKeep waits for Ctrl-C with the fleet up, saying how to reach it.
func demoKeep(ctx context.Context, out io.Writer, st *stage.Stage, version string) {
	exe, _ := os.Executable()
	wd, _ := os.Getwd()
	self := selfCommand(exe, wd, exec.LookPath)
	fmt.Fprintf(out, `
The fleet keeps running (--keep). In another terminal:
  export SIGNET_CONFIG=%s
  %s ping
  %s rpc haproxy status backend=demo -I web1
  %s rpc package status package=demo -I web2
  %s deploy %s %s --env %s --yes
Files: %s (removed only if you remove them). Ctrl-C stops the fleet.
`, st.Lab.ClientConfig, self, self, self, self, st.App, version, st.Env, st.Lab.Dir)
	<-ctx.Done()
}

// selfCommand is how the operator runs this signet again from another
// terminal: "signet" when that is what the PATH finds; "go run ./cmd/signet"
// (from the module's directory) for a binary `go run` built in its cache;
// else the binary's absolute path.
func selfCommand(exe, wd string, lookPath func(string) (string, error)) string {
	if exe == "" {
		return "signet"
	}
	if p, err := lookPath("signet"); err == nil {
		if a, err := filepath.EvalSymlinks(p); err == nil {
			if b, err := filepath.EvalSymlinks(exe); err == nil && a == b {
				return "signet"
			}
		}
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		for d := wd; d != ""; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				if _, err := os.Stat(filepath.Join(d, "cmd", "signet")); err == nil {
					if d == wd {
						return "go run ./cmd/signet"
					}
					return "go run " + filepath.Join(d, "cmd", "signet")
				}
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	// `go run` from elsewhere: its binary lives as long as the demo does.
	return exe
}

// haproxyState is the administrative and health state of a server as
// HAProxy's "show stat" gives it, without the counter of a health check
// in transition ("DRAIN 1/2", "UP 1/3"): that counter moves from one
// second to the next, the state is what an operator reads.
func haproxyState(s string) string {
	if i := strings.LastIndexByte(s, ' '); i > 0 {
		if a, b, ok := strings.Cut(s[i+1:], "/"); ok && a != "" && b != "" && strings.Trim(a+b, "0123456789") == "" {
			return s[:i]
		}
	}
	return s
}

// demoCanaryBake is how long the demo's canary bakes.
const demoCanaryBake = 5 * time.Second

// demoCanary adds a canary (web1, baked 5s, checked every second) and
// metric gates to the demo's app file, and starts what the gates ask: a
// real Prometheus scraping a metrics endpoint of the demo's own (the app
// itself exports none), when Prometheus is installed; the gate on
// Alertmanager uses the stage's. It says what it could not start. The
// returned function stops what it started.
func demoCanary(ctx context.Context, out io.Writer, st *stage.Stage, dir string) (func(), error) {
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	var checks []string
	if gatelab.PrometheusBin() == "" {
		fmt.Fprintln(out, "\n--canary: prometheus is not installed (apt install prometheus): no Prometheus gate, the canary bakes on its health check")
	} else {
		m, err := gatelab.ServeMetrics()
		if err != nil {
			return stop, err
		}
		stops = append(stops, func() { m.Close() })
		m.Set("demo_http_error_ratio", map[string]string{"app": st.App}, 0.002)
		p, err := gatelab.StartPrometheus(ctx, gatelab.PrometheusOptions{Dir: filepath.Join(dir, "prometheus"), Targets: []string{m.Addr}})
		if err != nil {
			stop()
			return func() {}, fmt.Errorf("demo --canary: %w", err)
		}
		stops = append(stops, func() { p.Stop() })
		if err := p.WaitValue(ctx, "demo_http_error_ratio", "0.002"); err != nil {
			stop()
			return func() {}, fmt.Errorf("demo --canary: %w", err)
		}
		fmt.Fprintf(out, "\n--canary: prometheus %s (real: %s) scrapes %s every second: demo_http_error_ratio{app=%q} = 0.002\n", p.URL, gatelab.PrometheusBin(), m.Addr, st.App)
		checks = append(checks, fmt.Sprintf("    - name: error-rate\n      prometheus:\n        url: %s\n        query: 'demo_http_error_ratio{app=\"%s\"}'\n        condition: \"< 0.05\"\n", p.URL, st.App))
	}
	if st.AlertmanagerURL != "" {
		checks = append(checks, fmt.Sprintf("    - name: no-page\n      alertmanager:\n        url: %s\n        labels: {app: %s, severity: page}\n", st.AlertmanagerURL, st.App))
	} else {
		fmt.Fprintln(out, "--canary: alertmanager is sandboxed: no Alertmanager gate")
	}
	section := fmt.Sprintf("canary:\n  hosts: [web1]\n  bake: %s\n  interval: 1s\n  promote: auto\n", demoCanaryBake)
	if len(checks) > 0 {
		section += "gates:\n  interval: 1s\n  timeout: 3s\n  inconclusive_for: 30s\n  checks:\n" + strings.Join(checks, "")
	}
	f, err := os.OpenFile(st.AppFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		stop()
		return func() {}, err
	}
	_, err = io.WriteString(f, section)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		stop()
		return func() {}, err
	}
	fmt.Fprintf(out, "--canary: added to the app file %s:\n%s", st.AppFile, section)
	return stop, nil
}
