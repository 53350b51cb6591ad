// Package promtest runs a real Prometheus server for tests and reads its
// HTTP API: the tests of signetd's and the broker's metrics scrape real
// processes with it. Only tests import it.
package promtest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// FreeAddr returns 127.0.0.1:PORT with a port free right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start runs the prometheus binary bin with config (the text of
// prometheus.yml) in dir, listening on a free loopback address; it is
// killed when the test ends. It returns that address and a function that
// reads what Prometheus logged so far.
func Start(t testing.TB, bin, dir, config string) (string, func() string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logPath := filepath.Join(dir, "prometheus.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); f.Close() })
	return addr, func() string { b, _ := os.ReadFile(logPath); return string(b) }
}

// Get decodes the JSON answer of GET http://addr+path into v.
func Get(addr, path string, v any) error {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Query is the value of an instant query with one result; "" when there
// is no result (yet).
func Query(addr, q string) string {
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if Get(addr, "/api/v1/query?query="+url.QueryEscape(q), &r) != nil || len(r.Data.Result) != 1 {
		return ""
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return s
}

// AlertState is the state (pending, firing) of alert name; "" when
// inactive.
func AlertState(addr, name string) string {
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if Get(addr, "/api/v1/alerts", &r) != nil {
		return ""
	}
	for _, a := range r.Data.Alerts {
		if a.Labels["alertname"] == name {
			return a.State
		}
	}
	return ""
}

// Rules reads the health of every loaded rule: how many there are, how
// many evaluated ok, and "NAME: ERROR" for each that failed.
func Rules(addr string) (total, ok int, bad []string, err error) {
	var r struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := Get(addr, "/api/v1/rules", &r); err != nil {
		return 0, 0, nil, err
	}
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			total++
			switch rule.Health {
			case "ok":
				ok++
			case "err":
				bad = append(bad, rule.Name+": "+rule.LastError)
			}
		}
	}
	return total, ok, bad, nil
}
