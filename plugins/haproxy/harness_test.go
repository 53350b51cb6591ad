package haproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/plugins"
)

// webServer is one real HTTP server behind HAProxy. Its body names it, its
// /health answers 200 or 503 as told, and a path ending in /slow blocks
// until released.
type webServer struct {
	name    string
	srv     *httptest.Server
	healthy atomic.Bool
	// slow receives once per slow request that has arrived.
	slow        chan struct{}
	release     chan struct{}
	releaseOnce sync.Once
}

func newWebServer(t *testing.T, name string) *webServer {
	t.Helper()
	w := &webServer{name: name, slow: make(chan struct{}, 16), release: make(chan struct{})}
	w.healthy.Store(true)
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/health":
			if !w.healthy.Load() {
				http.Error(rw, "unhealthy", http.StatusServiceUnavailable)
				return
			}
		case strings.HasSuffix(r.URL.Path, "/slow"):
			w.slow <- struct{}{}
			select {
			case <-w.release:
			case <-r.Context().Done():
			}
		}
		fmt.Fprint(rw, w.name)
	}))
	t.Cleanup(w.srv.Close)
	t.Cleanup(w.unblock) // runs before Close, which waits for requests
	return w
}

func (w *webServer) unblock() { w.releaseOnce.Do(func() { close(w.release) }) }

func (w *webServer) port() string {
	_, p, _ := net.SplitHostPort(w.srv.Listener.Addr().String())
	return p
}

// haproxyProc is a real haproxy child process.
type haproxyProc struct {
	sockPath string // UNIX stats socket
	tcpAddr  string // TCP stats socket, when asked for
	frontend string // http://127.0.0.1:port
}

// haproxyBin returns the haproxy binary, or skips the test.
func haproxyBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/haproxy"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	t.Skip("haproxy is not installed (apt-get install haproxy); these tests need a real one")
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// hpOpts shapes a test haproxy.
type hpOpts struct {
	// ghost adds backend ghost whose only server gone1 points at a closed port.
	ghost bool
	// tcpStats adds a TCP stats socket on loopback.
	tcpStats bool
	// level is the stats sockets' level; empty means admin.
	level string
}

// startHAProxy runs "haproxy -f cfg -db" with backend app over the given
// web servers. It returns once the stats socket answers.
func startHAProxy(t *testing.T, web []*webServer, o hpOpts) *haproxyProc {
	t.Helper()
	bin := haproxyBin(t)
	// A short directory: UNIX socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "hx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &haproxyProc{sockPath: filepath.Join(dir, "admin.sock")}
	fePort := freePort(t)
	p.frontend = "http://127.0.0.1:" + fePort

	var cfg strings.Builder
	level := o.level
	if level == "" {
		level = "admin"
	}
	fmt.Fprintf(&cfg, "global\n    stats socket %s mode 600 level %s\n", p.sockPath, level)
	if o.tcpStats {
		p.tcpAddr = "127.0.0.1:" + freePort(t)
		fmt.Fprintf(&cfg, "    stats socket ipv4@%s level %s\n", p.tcpAddr, level)
	}
	cfg.WriteString("defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n")
	fmt.Fprintf(&cfg, "frontend fe\n    bind 127.0.0.1:%s\n    default_backend app\n", fePort)
	cfg.WriteString("backend app\n    balance roundrobin\n    option httpchk GET /health\n")
	for _, w := range web {
		fmt.Fprintf(&cfg, "    use-server %s if { path_beg /pin/%s/ }\n", w.name, w.name)
	}
	for _, w := range web {
		fmt.Fprintf(&cfg, "    server %s 127.0.0.1:%s check inter 100ms\n", w.name, w.port())
	}
	if o.ghost {
		fmt.Fprintf(&cfg, "backend ghost\n    option httpchk GET /health\n    server gone1 127.0.0.1:%s check inter 100ms\n", freePort(t))
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := command.Run(ctx, command.Spec{Argv: []string{bin, "-c", "-f", cfgPath}}); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, cfg.String())
	}

	runCtx, stop := context.WithCancel(context.Background())
	exited := make(chan struct{})
	var (
		res    *command.Result
		runErr error
	)
	go func() {
		defer close(exited)
		res, runErr = command.Run(runCtx, command.Spec{Argv: []string{bin, "-f", cfgPath, "-db"}})
	}()
	t.Cleanup(func() { stop(); <-exited })

	s := socket{network: "unix", address: p.sockPath, timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			out := ""
			if res != nil {
				out = res.Stderr
			}
			t.Fatalf("haproxy exited early: %v\n%s", runErr, out)
		default:
		}
		if out, err := s.do(context.Background(), "show info"); err == nil && strings.Contains(out, "Name: HAProxy") {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatal("haproxy stats socket did not answer within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// raw sends one command to the instance's UNIX socket, for assertions that
// must not go through the plugin.
func (p *haproxyProc) raw(t *testing.T, cmd string) string {
	t.Helper()
	out, err := socket{network: "unix", address: p.sockPath, timeout: 5 * time.Second}.do(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// stat returns the "show stat" server record, read directly.
func (p *haproxyProc) stat(t *testing.T, backend, server string) statServer {
	t.Helper()
	tbl, err := parseStat([]byte(p.raw(t, "show stat")))
	if err != nil {
		t.Fatal(err)
	}
	servers, err := tbl.servers()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.backend == backend && s.server == server {
			return s
		}
	}
	t.Fatalf("no %s/%s in show stat", backend, server)
	return statServer{}
}

// waitStat polls show stat until cond holds, for up to 10s.
func (p *haproxyProc) waitStat(t *testing.T, backend, server, what string, cond func(statServer) bool) statServer {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := p.stat(t, backend, server)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s: %s not reached within 10s, last %+v", backend, server, what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *haproxyProc) waitUp(t *testing.T, backend string, servers ...string) {
	t.Helper()
	for _, s := range servers {
		p.waitStat(t, backend, s, "UP", func(s statServer) bool { return s.status == "UP" })
	}
}

// pluginFor builds the plugin over the given instances ("name=socket").
func pluginFor(t *testing.T, instances ...string) *Haproxy {
	t.Helper()
	var cfg Config
	for _, in := range instances {
		name, sock, _ := strings.Cut(in, "=")
		cfg.Instances = append(cfg.Instances, InstanceConfig{Name: name, Socket: sock})
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(raw)
	if err != nil {
		t.Fatal(err)
	}
	h := p.(*Haproxy)
	h.poll = 20 * time.Millisecond
	return h
}

// run validates raw parameters through the DDL and Validate, as signetd
// does, then runs the action as host identity.
func run(t *testing.T, h *Haproxy, identity, action string, raw map[string]any) (*plugins.Result, error) {
	t.Helper()
	params, err := plugins.Prepare(h, action, raw)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	return h.Run(ctx, &plugins.Request{Action: action, Params: params, Identity: identity, Caller: "alice", Log: log})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func mustRun(t *testing.T, h *Haproxy, identity, action string, raw map[string]any) *plugins.Result {
	t.Helper()
	res, err := run(t, h, identity, action, raw)
	if err != nil {
		t.Fatalf("%s %v: %v", action, raw, err)
	}
	return res
}

func serversOf(t *testing.T, res *plugins.Result) []ServerStatus {
	t.Helper()
	s, ok := res.Data["servers"].([]ServerStatus)
	if !ok {
		t.Fatalf("data.servers is %T", res.Data["servers"])
	}
	return s
}

// get sends n requests through the frontend, one connection each, and
// counts the answers by server name.
func get(t *testing.T, url string, n int) map[string]int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	got := map[string]int{}
	for range n {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s %s", url, resp.Status, b)
		}
		got[string(b)]++
	}
	return got
}
