package stage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// appConfig is what one host's app needs, written next to its run script.
type appConfig struct {
	Identity string `json:"identity"`
	// Listen is 127.0.0.1:PORT.
	Listen string `json:"listen"`
	// VersionFile is the file the package installs; its content is the
	// version served.
	VersionFile string `json:"version_file"`
	// BrokenFile, when it exists, makes the app answer 500 (BreakHealth).
	BrokenFile string `json:"broken_file"`
}

// AppMain runs the demo web app with the config file the stage wrote at
// path, until SIGTERM or an interrupt, and returns an exit code. It is
// what Options.AppCommand must run: `signet demo app PATH` calls it, and
// stagetest makes a test binary call it.
func AppMain(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "signet stage app: %v\n", err)
		return 1
	}
	var cfg appConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "signet stage app: %s: %v\n", path, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := serveApp(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "signet stage app: %v\n", err)
		return 1
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return 0
}

// serveApp starts the demo app on cfg.Listen and returns once it listens.
func serveApp(cfg appConfig) (*http.Server, error) {
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("app %s: %w", cfg.Identity, err)
	}
	srv := &http.Server{Handler: appHandler(cfg), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	return srv, nil
}

// appHandler serves the installed version on /version ("1.1") and a line
// naming app version and host on / ("demo 1.1 on web2"); 500 when the
// host's health is broken, 503 when the package is not installed.
func appHandler(cfg appConfig) http.Handler {
	version := func(w http.ResponseWriter) (string, bool) {
		if _, err := os.Stat(cfg.BrokenFile); err == nil {
			http.Error(w, "broken on purpose (signet stage BreakHealth)", http.StatusInternalServerError)
			return "", false
		}
		b, err := os.ReadFile(cfg.VersionFile)
		if err != nil {
			http.Error(w, "not installed: "+err.Error(), http.StatusServiceUnavailable)
			return "", false
		}
		return strings.TrimSpace(string(b)), true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		if v, ok := version(w); ok {
			fmt.Fprintln(w, v)
		}
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if v, ok := version(w); ok {
			fmt.Fprintf(w, "demo %s on %s\n", v, cfg.Identity)
		}
	})
	return mux
}

// router serves /IDENTITY/PATH by forwarding PATH to that host's app. The
// deploy's health URL may template only {{identity}}, and each app has its
// own port, so the health check reaches its host's app through here:
// http://127.0.0.1:PORT/{{identity}}/version.
type router struct {
	srv  *http.Server
	addr string
	mu   sync.Mutex
	apps map[string]string // identity -> 127.0.0.1:port
}

func startRouter(apps map[string]string) (*router, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	r := &router{addr: l.Addr().String(), apps: apps}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			id, rest, _ := strings.Cut(strings.TrimPrefix(pr.In.URL.Path, "/"), "/")
			r.mu.Lock()
			addr := r.apps[id]
			r.mu.Unlock()
			pr.SetURL(&url.URL{Scheme: "http", Host: addr})
			pr.Out.URL.Path, pr.Out.URL.RawPath = "/"+rest, ""
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			http.Error(w, "app unreachable: "+err.Error(), http.StatusBadGateway)
		},
	}
	r.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id, _, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
		r.mu.Lock()
		_, ok := r.apps[id]
		r.mu.Unlock()
		if !ok {
			http.Error(w, fmt.Sprintf("no host %q on this stage", id), http.StatusNotFound)
			return
		}
		proxy.ServeHTTP(w, req)
	})}
	go r.srv.Serve(l)
	return r, nil
}

func (r *router) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return r.srv.Close()
	}
	return nil
}

// appPort returns a free loopback port outside the kernel's ephemeral
// range. An app's port is free while the deploy stops and starts it; a port
// from the ephemeral range could meanwhile become the source port of some
// outgoing connection (an HAProxy check, a keep-alive to another app), and
// the app would fail to bind it until that connection closes.
func appPort(taken map[int]bool) (int, error) {
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if a, err := strconv.Atoi(f[0]); err == nil {
				lo = a
			}
			if z, err := strconv.Atoi(f[1]); err == nil {
				hi = z
			}
		}
	}
	from, to := 10000, lo-1
	if to-from < 1000 {
		from, to = hi+1, 65535
	}
	if to-from < 100 {
		return freePort() // no room outside the ephemeral range: take the risk
	}
	for range 200 {
		p := from + rand.IntN(to-from+1)
		if taken[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free loopback port in %d-%d", from, to)
}

// freePort returns a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
