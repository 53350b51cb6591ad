package haproxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/plugins"
)

// cluster is backend app with web1..web3 behind one real haproxy.
type cluster struct {
	web map[string]*webServer
	hp  *haproxyProc
	h   *Haproxy
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	haproxyBin(t)
	c := &cluster{web: map[string]*webServer{}}
	var ws []*webServer
	for _, n := range []string{"web1", "web2", "web3"} {
		w := newWebServer(t, n)
		c.web[n] = w
		ws = append(ws, w)
	}
	c.hp = startHAProxy(t, ws, hpOpts{ghost: true})
	c.hp.waitUp(t, "app", "web1", "web2", "web3")
	c.h = pluginFor(t, "main=unix:"+c.hp.sockPath)
	return c
}

// slowRequest opens a request pinned to server that stays open until the
// server is released, and returns once the server has it.
func (c *cluster) slowRequest(t *testing.T, server string) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
		resp, err := cl.Get(c.hp.frontend + "/pin/" + server + "/slow")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-c.web[server].slow:
	case <-time.After(10 * time.Second):
		t.Fatalf("slow request did not reach %s", server)
	}
	return done
}

func TestStatus(t *testing.T) {
	c := newCluster(t)
	// ghost/gone1 points at a closed port: DOWN after its checks fail.
	c.hp.waitStat(t, "ghost", "gone1", "DOWN", func(s statServer) bool { return s.status == "DOWN" })

	res := mustRun(t, c.h, "web2", "status", map[string]any{})
	got := serversOf(t, res)
	if len(got) != 4 || res.Data["matched"] != 1 || res.Changed {
		t.Fatalf("status = %+v", res)
	}
	for _, s := range got[:3] {
		if s.Instance != "main" || s.Backend != "app" || s.Status != "UP" || s.CheckStatus != "L7OK" ||
			s.Weight != 1 || s.Sessions != 0 || s.AdminState != "ready" {
			t.Errorf("server %+v", s)
		}
	}
	if g := got[3]; g.Backend != "ghost" || g.Server != "gone1" || g.Status != "DOWN" || g.CheckStatus != "L4CON" || g.describeStatus() != "DOWN (L4CON)" {
		t.Errorf("ghost = %+v", g)
	}

	res = mustRun(t, c.h, "web2", "status", map[string]any{"backend": "app", "server": "web2"})
	if got := serversOf(t, res); len(got) != 1 || got[0].Server != "web2" {
		t.Fatalf("filtered status = %+v", got)
	}
	if res.Summary != "app/web2 on main: UP, weight 1, 0 sessions" {
		t.Errorf("summary = %q", res.Summary)
	}
	// A session held open shows in sessions.
	held := c.slowRequest(t, "web3")
	res = mustRun(t, c.h, "web2", "status", map[string]any{"server": "web3"})
	if got := serversOf(t, res); len(got) != 1 || got[0].Sessions != 1 {
		t.Fatalf("web3 with a held request = %+v", got)
	}
	c.web["web3"].unblock()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// Drain stops new sessions to web2 while traffic flows (its stot counter
// does not move), and waits for the session it already had to end.
func TestDrain(t *testing.T) {
	c := newCluster(t)
	get(t, c.hp.frontend+"/", 6) // every server has served some traffic
	held := c.slowRequest(t, "web2")
	before := c.hp.stat(t, "app", "web2")
	if before.sessions != 1 || before.total < 2 {
		t.Fatalf("web2 before drain: %+v", before)
	}

	type outcome struct {
		res *plugins.Result
		err error
	}
	drained := make(chan outcome, 1)
	go func() {
		// The server comes from the host identity.
		res, err := run(t, c.h, "web2", "drain", map[string]any{"backend": "app", "timeout": "20s"})
		drained <- outcome{res, err}
	}()
	c.hp.waitStat(t, "app", "web2", "DRAIN", func(s statServer) bool { return s.status == "DRAIN" })

	others := c.hp.stat(t, "app", "web1").total + c.hp.stat(t, "app", "web3").total
	got := get(t, c.hp.frontend+"/", 30)
	if got["web2"] != 0 || got["web1"]+got["web3"] != 30 {
		t.Errorf("answers while draining: %v", got)
	}
	during := c.hp.stat(t, "app", "web2")
	if during.total != before.total || during.sessions != 1 {
		t.Errorf("web2 while draining: stot %d -> %d, scur %d; want stot unchanged and the held session open", before.total, during.total, during.sessions)
	}
	if n := c.hp.stat(t, "app", "web1").total + c.hp.stat(t, "app", "web3").total; n < others+30 {
		t.Errorf("web1+web3 stot %d -> %d, want at least 30 more", others, n)
	}
	// web2 still has its session: drain must still be waiting.
	select {
	case o := <-drained:
		t.Fatalf("drain returned while a session was open: %+v %v", o.res, o.err)
	default:
	}

	c.web["web2"].unblock()
	if err := <-held; err != nil {
		t.Fatalf("held request: %v", err)
	}
	o := <-drained
	if o.err != nil {
		t.Fatal(o.err)
	}
	s := serversOf(t, o.res)
	if !o.res.Changed || o.res.Data["matched"] != 1 || len(s) != 1 || s[0].Sessions != 0 || s[0].AdminState != "drain" || s[0].Status != "DRAIN" {
		t.Fatalf("drain result = %+v %+v", o.res, s)
	}
	if o.res.Summary != "app/web2 draining on main, no sessions left" {
		t.Errorf("summary = %q", o.res.Summary)
	}

	// Idempotent: draining again changes nothing.
	res := mustRun(t, c.h, "web2", "drain", map[string]any{"backend": "app", "server": "web2"})
	if res.Changed || res.Data["matched"] != 1 || res.Summary != "app/web2 already draining on main, no sessions left" {
		t.Errorf("second drain = %+v", res)
	}
	if after := c.hp.stat(t, "app", "web2"); after.total != before.total {
		t.Errorf("web2 stot moved after drain: %d -> %d", before.total, after.total)
	}
}

func TestDrainTimeoutReportsSessions(t *testing.T) {
	c := newCluster(t)
	held := c.slowRequest(t, "web1")
	_, err := run(t, c.h, "web1", "drain", map[string]any{"backend": "app", "timeout": "1s"})
	if err == nil || !strings.Contains(err.Error(), "1 sessions still open after 1s (main: 1)") {
		t.Fatalf("drain with a held session = %v", err)
	}
	// It stays drained, and without wait the drain answers at once.
	res := mustRun(t, c.h, "web1", "drain", map[string]any{"backend": "app", "wait": false})
	if res.Changed || serversOf(t, res)[0].Sessions != 1 || !strings.Contains(res.Summary, "1 sessions open (not waiting)") {
		t.Errorf("drain wait=false = %+v", res)
	}
	c.web["web1"].unblock()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

func TestDisable(t *testing.T) {
	c := newCluster(t)
	res := mustRun(t, c.h, "web3", "disable", map[string]any{"backend": "app"})
	s := serversOf(t, res)
	if !res.Changed || len(s) != 1 || s[0].Status != "MAINT" || s[0].AdminState != "maint" {
		t.Fatalf("disable = %+v %+v", res, s)
	}
	if st := c.hp.raw(t, "show servers state app"); !strings.Contains(st, " app 3 web3 ") {
		t.Fatalf("show servers state: %s", st)
	}
	before := c.hp.stat(t, "app", "web3").total
	if got := get(t, c.hp.frontend+"/", 20); got["web3"] != 0 {
		t.Errorf("web3 answered while in maintenance: %v", got)
	}
	if after := c.hp.stat(t, "app", "web3").total; after != before {
		t.Errorf("web3 stot %d -> %d while in maintenance", before, after)
	}
	res = mustRun(t, c.h, "web3", "disable", map[string]any{"backend": "app", "server": "web3"})
	if res.Changed || res.Summary != "app/web3 already in maintenance on main" {
		t.Errorf("second disable = %+v", res)
	}
	// A drained server can be put in maintenance, and back.
	mustRun(t, c.h, "web1", "drain", map[string]any{"backend": "app"})
	if res := mustRun(t, c.h, "web1", "disable", map[string]any{"backend": "app"}); !res.Changed || serversOf(t, res)[0].AdminState != "maint" {
		t.Errorf("disable a drained server = %+v", res)
	}
}

// Enable puts web1 back and waits: while its health check fails it stays
// waiting, and answers once the check passes and HAProxy says UP.
func TestEnableWaitsForUP(t *testing.T) {
	c := newCluster(t)
	mustRun(t, c.h, "web1", "disable", map[string]any{"backend": "app"})
	c.web["web1"].healthy.Store(false)

	type outcome struct {
		res *plugins.Result
		err error
	}
	enabled := make(chan outcome, 1)
	go func() {
		res, err := run(t, c.h, "web1", "enable", map[string]any{"backend": "app", "timeout": "20s"})
		enabled <- outcome{res, err}
	}()
	// enable has sent "state ready" once web1 leaves MAINT; the failing
	// check then takes it DOWN.
	c.hp.waitStat(t, "app", "web1", "DOWN after ready", func(s statServer) bool { return s.status == "DOWN" })
	select {
	case o := <-enabled:
		t.Fatalf("enable returned while web1 was DOWN: %+v %v", o.res, o.err)
	default:
	}
	c.web["web1"].healthy.Store(true)
	o := <-enabled
	if o.err != nil {
		t.Fatal(o.err)
	}
	s := serversOf(t, o.res)
	if !o.res.Changed || len(s) != 1 || s[0].Status != "UP" || s[0].AdminState != "ready" || o.res.Summary != "app/web1 ready and UP on main" {
		t.Fatalf("enable = %+v %+v", o.res, s)
	}
	if got := get(t, c.hp.frontend+"/", 9); got["web1"] == 0 {
		t.Errorf("web1 gets no traffic after enable: %v", got)
	}
	res := mustRun(t, c.h, "web1", "enable", map[string]any{"backend": "app"})
	if res.Changed || res.Summary != "app/web1 already ready and UP on main" {
		t.Errorf("second enable = %+v", res)
	}
	// Enable also takes a server out of drain.
	mustRun(t, c.h, "web2", "drain", map[string]any{"backend": "app"})
	if res := mustRun(t, c.h, "web2", "enable", map[string]any{"backend": "app"}); !res.Changed || serversOf(t, res)[0].Status != "UP" {
		t.Errorf("enable a drained server = %+v", res)
	}
}

func TestEnableTimeoutReportsStatus(t *testing.T) {
	c := newCluster(t)
	mustRun(t, c.h, "gone1", "disable", map[string]any{"backend": "ghost"})
	_, err := run(t, c.h, "gone1", "enable", map[string]any{"backend": "ghost", "timeout": "2s"})
	if err == nil || !strings.Contains(err.Error(), "haproxy enable ghost/gone1: not UP after 2s, found main: DOWN (L4CON)") {
		t.Fatalf("enable of a server nothing listens for = %v", err)
	}
	// Without wait it answers at once with what it found.
	res := mustRun(t, c.h, "gone1", "enable", map[string]any{"backend": "ghost", "wait": false})
	if res.Changed || !strings.Contains(res.Summary, "DOWN (L4CON), not waiting") {
		t.Errorf("enable wait=false = %+v", res)
	}
}

func TestWeight(t *testing.T) {
	c := newCluster(t)
	res := mustRun(t, c.h, "web2", "weight", map[string]any{"backend": "app", "weight": "7"})
	if !res.Changed || serversOf(t, res)[0].Weight != 7 || res.Summary != "app/web2 weight set to 7 on main" {
		t.Fatalf("weight 7 = %+v", res)
	}
	if w := strings.TrimSpace(c.hp.raw(t, "get weight app/web2")); w != "7 (initial 1)" {
		t.Errorf("get weight = %q", w)
	}
	res = mustRun(t, c.h, "web2", "weight", map[string]any{"backend": "app", "weight": float64(7)})
	if res.Changed || res.Summary != "app/web2 weight already 7 on main" {
		t.Errorf("second weight 7 = %+v", res)
	}
	// Weight 0: no new traffic for web2.
	mustRun(t, c.h, "web2", "weight", map[string]any{"backend": "app", "weight": "0"})
	if got := get(t, c.hp.frontend+"/", 12); got["web2"] != 0 {
		t.Errorf("web2 answered at weight 0: %v", got)
	}
	if _, err := run(t, c.h, "web2", "weight", map[string]any{"backend": "app", "weight": "300"}); err == nil {
		t.Error("weight 300 accepted")
	}
}

// A broadcast reaches hosts without that backend or server: they answer
// ok, unchanged, matched 0.
func TestUnknownBackendOrServer(t *testing.T) {
	c := newCluster(t)
	for _, tt := range []struct {
		action string
		params map[string]any
		want   string
	}{
		{"drain", map[string]any{"backend": "payments"}, "no server payments/web9 on this host's haproxy (main): nothing to drain"},
		{"drain", map[string]any{"backend": "app"}, "no server app/web9 on this host's haproxy (main): nothing to drain"},
		{"disable", map[string]any{"backend": "app", "server": "web7"}, "no server app/web7 on this host's haproxy (main): nothing to disable"},
		{"enable", map[string]any{"backend": "ghost", "server": "web1"}, "no server ghost/web1 on this host's haproxy (main): nothing to enable"},
		{"weight", map[string]any{"backend": "app", "weight": "3"}, "no server app/web9 on this host's haproxy (main): nothing to weight"},
	} {
		res := mustRun(t, c.h, "web9", tt.action, tt.params)
		if res.Changed || res.Data["matched"] != 0 || len(serversOf(t, res)) != 0 || res.Summary != tt.want {
			t.Errorf("%s %v = %+v", tt.action, tt.params, res)
		}
	}
	res := mustRun(t, c.h, "web9", "status", map[string]any{"backend": "payments"})
	if len(serversOf(t, res)) != 0 || res.Data["matched"] != 0 || res.Summary != "no servers of backend payments on this host's haproxy (main)" {
		t.Errorf("status of an unknown backend = %+v", res)
	}
	for _, n := range []string{"web1", "web2", "web3"} {
		if s := c.hp.stat(t, "app", n); s.status != "UP" {
			t.Errorf("%s is %s after actions for other servers", n, s.status)
		}
	}
}

// One host, two HAProxy instances: main over UNIX, edge over TCP. Actions
// act on each instance that has the server.
func TestTwoInstances(t *testing.T) {
	haproxyBin(t)
	web := []*webServer{newWebServer(t, "web1"), newWebServer(t, "web2")}
	main := startHAProxy(t, web, hpOpts{ghost: true})
	edge := startHAProxy(t, web, hpOpts{tcpStats: true})
	main.waitUp(t, "app", "web1", "web2")
	edge.waitUp(t, "app", "web1", "web2")
	h := pluginFor(t, "main=unix:"+main.sockPath, "edge=tcp:"+edge.tcpAddr)

	res := mustRun(t, h, "web2", "status", map[string]any{"server": "web2"})
	s := serversOf(t, res)
	if len(s) != 2 || s[0].Instance != "main" || s[1].Instance != "edge" || res.Data["matched"] != 2 {
		t.Fatalf("status = %+v", s)
	}
	res = mustRun(t, h, "web2", "drain", map[string]any{"backend": "app"})
	if !res.Changed || res.Data["matched"] != 2 || res.Summary != "app/web2 draining on main, edge, no sessions left" {
		t.Fatalf("drain = %+v", res)
	}
	for name, hp := range map[string]*haproxyProc{"main": main, "edge": edge} {
		if st := hp.stat(t, "app", "web2").status; st != "DRAIN" {
			t.Errorf("%s: web2 is %s, want DRAIN", name, st)
		}
	}
	// Only main has backend ghost.
	res = mustRun(t, h, "gone1", "disable", map[string]any{"backend": "ghost"})
	if !res.Changed || res.Data["matched"] != 1 || serversOf(t, res)[0].Instance != "main" {
		t.Errorf("disable ghost/gone1 = %+v", res)
	}
	// Instance state is independent: edge can already be ready while main is not.
	if err := edgeSet(edge, "set server app/web2 state ready"); err != nil {
		t.Fatal(err)
	}
	res = mustRun(t, h, "web2", "enable", map[string]any{"backend": "app"})
	if !res.Changed || res.Data["matched"] != 2 {
		t.Errorf("enable = %+v", res)
	}
	for name, hp := range map[string]*haproxyProc{"main": main, "edge": edge} {
		if st := hp.stat(t, "app", "web2").status; st != "UP" {
			t.Errorf("%s: web2 is %s, want UP", name, st)
		}
	}
}

func edgeSet(hp *haproxyProc, cmd string) error {
	out, err := socket{network: "tcp", address: hp.tcpAddr, timeout: 5 * time.Second}.do(context.Background(), cmd)
	if err == nil && strings.TrimSpace(out) != "" {
		err = errors.New(out)
	}
	return err
}

// A dead socket is a clear error naming the instance, and when one of two
// instances is dead nothing changes on the other.
func TestDeadSocket(t *testing.T) {
	dir := t.TempDir()
	closed := freePort(t)
	for _, tt := range []struct {
		sock string
		want []string
	}{
		{"unix:" + dir + "/admin.sock", []string{"haproxy status: haproxy instance main (unix:" + dir + "/admin.sock)", "no such file or directory", "is haproxy running"}},
		{"tcp:127.0.0.1:" + closed, []string{"haproxy instance main (tcp:127.0.0.1:" + closed + ")", "connection refused", "level admin"}},
	} {
		h := pluginFor(t, "main="+tt.sock)
		_, err := run(t, h, "web1", "status", map[string]any{})
		if err == nil {
			t.Fatalf("%s: status succeeded", tt.sock)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: err = %q, want it to contain %q", tt.sock, err, w)
			}
		}
	}

	c := newCluster(t)
	h := pluginFor(t, "main=unix:"+c.hp.sockPath, "backup=unix:"+dir+"/gone.sock")
	h.poll = 10 * time.Millisecond
	_, err := run(t, h, "web1", "disable", map[string]any{"backend": "app"})
	if err == nil || !strings.Contains(err.Error(), "haproxy disable app/web1: haproxy instance backup") {
		t.Fatalf("disable with a dead second instance = %v", err)
	}
	if st := c.hp.stat(t, "app", "web1").status; st != "UP" {
		t.Errorf("web1 on the live instance is %s: an action that failed must not have changed it", st)
	}
}

// Every socket operation has a deadline: a peer that accepts and never
// answers costs socket_timeout, not forever.
func TestSocketDeadline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		l.Close()
		<-accepted
		for _, c := range conns {
			c.Close()
		}
	}()
	p, err := New([]byte(`{"instances":[{"name":"stuck","socket":"tcp:` + l.Addr().String() + `"}],"socket_timeout":"200ms"}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Run(context.Background(), &plugins.Request{Action: "status", Params: plugins.Params{}})
	if err == nil || !strings.Contains(err.Error(), "read answer to \"show stat\"") || !strings.Contains(err.Error(), "no answer within the socket timeout of 200ms") {
		t.Fatalf("status against a silent peer = %v", err)
	}
}

// Names that would chain a second command never reach a real HAProxy,
// even when Run is called without Validate.
func TestInjectionRefusedByRealHAProxy(t *testing.T) {
	c := newCluster(t)
	for _, bad := range []string{"web1;set server app/web2 state maint", "web1\nset server app/web2 state maint", "web1 state maint;set server app/web2"} {
		_, err := c.h.Run(context.Background(), &plugins.Request{Action: "disable", Identity: "web1",
			Params: plugins.Params{"backend": "app", "server": bad}})
		if err == nil {
			t.Errorf("Run accepted server %q", bad)
		}
	}
	for _, n := range []string{"web1", "web2", "web3"} {
		if s := c.hp.stat(t, "app", n); s.status != "UP" {
			t.Errorf("%s is %s after refused injections", n, s.status)
		}
	}
}

// A socket below level admin reads but cannot change: the error says what
// the socket needs.
func TestSocketNotAdmin(t *testing.T) {
	haproxyBin(t)
	hp := startHAProxy(t, []*webServer{newWebServer(t, "web1")}, hpOpts{level: "operator"})
	hp.waitUp(t, "app", "web1")
	h := pluginFor(t, "main=unix:"+hp.sockPath)
	if res := mustRun(t, h, "web1", "status", map[string]any{}); len(serversOf(t, res)) != 1 {
		t.Fatalf("status = %+v", res)
	}
	_, err := run(t, h, "web1", "drain", map[string]any{"backend": "app"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Message != "Permission denied" ||
		!strings.Contains(err.Error(), `haproxy instance main refused "set server app/web1 state drain": Permission denied (the stats socket needs "level admin")`) {
		t.Fatalf("drain through an operator socket = %v", err)
	}
}
