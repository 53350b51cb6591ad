package maintenance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeIcinga implements the part of the Icinga 2 REST API the plugin uses,
// following the documented request and response formats
// (https://icinga.com/docs/icinga-2/latest/doc/12-icinga2-api/):
// POST /v1/actions/schedule-downtime, POST /v1/actions/remove-downtime and
// GET /v1/objects/downtimes (sent as POST with X-HTTP-Method-Override: GET),
// behind HTTP basic auth and TLS.
//
// Icinga 2 itself cannot run in CI here (it needs a configured master,
// its own CA and a database of host objects), so these tests prove the
// plugin's requests, marks and choices against this documented format, not
// against a real Icinga 2.
type fakeIcinga struct {
	t          *testing.T
	user, pass string

	mu        sync.Mutex
	hosts     map[string][]string // host name -> its services
	downtimes map[string]fakeDowntime
	seq       int
}

type fakeDowntime struct {
	host, service, author, comment string
	start, end                     float64
	parent                         string
}

func newFakeIcinga(t *testing.T, hosts map[string][]string) (*fakeIcinga, *httptest.Server) {
	f := &fakeIcinga{t: t, user: "signet", pass: "pw", hosts: hosts, downtimes: map[string]fakeDowntime{}}
	srv := httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv
}

func icingaError(w http.ResponseWriter, code int, status string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": code, "status": status})
}

func (f *fakeIcinga) serve(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(u+":"+p), []byte(f.user+":"+f.pass)) != 1 {
		icingaError(w, http.StatusUnauthorized, "Unauthorized. Please check your user credentials.")
		return
	}
	if r.Header.Get("Accept") != "application/json" {
		icingaError(w, http.StatusBadRequest, "Accept header is missing or not set to 'application/json'.")
		return
	}
	method := r.Method
	if o := r.Header.Get("X-HTTP-Method-Override"); o != "" {
		method = o
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		icingaError(w, http.StatusBadRequest, "Invalid request body: "+err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var (
		results []map[string]any
		code    int
		msg     string
	)
	switch {
	case method == http.MethodPost && r.URL.Path == "/v1/actions/schedule-downtime":
		results, code, msg = f.schedule(body)
	case method == http.MethodPost && r.URL.Path == "/v1/actions/remove-downtime":
		results, code, msg = f.remove(body)
	case method == http.MethodGet && r.URL.Path == "/v1/objects/downtimes":
		results, code, msg = f.list(body)
	default:
		icingaError(w, http.StatusNotFound, "Object not found.")
		return
	}
	if code != 0 {
		icingaError(w, code, msg)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"results": results})
}

// filterVar checks the filter expression and returns its host_name
// variable.
func filterVar(body map[string]any, wantFilter string) (string, bool) {
	if body["filter"] != wantFilter {
		return "", false
	}
	vars, _ := body["filter_vars"].(map[string]any)
	h, ok := vars["host_name"].(string)
	return h, ok
}

func (f *fakeIcinga) schedule(body map[string]any) ([]map[string]any, int, string) {
	if body["type"] != "Host" {
		return nil, http.StatusBadRequest, "Invalid type specified."
	}
	host, ok := filterVar(body, "host.name==host_name")
	if !ok {
		return nil, http.StatusBadRequest, "Invalid filter specified."
	}
	author, _ := body["author"].(string)
	comment, _ := body["comment"].(string)
	start, ok1 := body["start_time"].(float64)
	end, ok2 := body["end_time"].(float64)
	if author == "" || comment == "" || !ok1 || !ok2 || end <= start || body["fixed"] != true {
		return nil, http.StatusBadRequest, "Invalid parameters: author, comment, start_time < end_time and fixed are required."
	}
	services, exists := f.hosts[host]
	if !exists {
		return nil, http.StatusNotFound, "No objects found."
	}
	f.seq++
	name := fmt.Sprintf("%s!fake-%d", host, f.seq)
	f.downtimes[name] = fakeDowntime{host: host, author: author, comment: comment, start: start, end: end}
	svc := []string{}
	if body["all_services"] == true {
		for _, s := range services {
			f.seq++
			sn := fmt.Sprintf("%s!%s!fake-%d", host, s, f.seq)
			f.downtimes[sn] = fakeDowntime{host: host, service: s, author: author, comment: comment, start: start, end: end, parent: name}
			svc = append(svc, sn)
		}
	}
	return []map[string]any{{"code": 200.0, "legacy_id": f.seq, "name": name, "service_downtimes": svc,
		"status": fmt.Sprintf("Successfully scheduled downtime '%s' for object '%s'.", name, host)}}, 0, ""
}

func (f *fakeIcinga) remove(body map[string]any) ([]map[string]any, int, string) {
	if body["type"] != "Downtime" {
		return nil, http.StatusBadRequest, "Invalid type specified."
	}
	name, _ := body["downtime"].(string)
	if _, ok := f.downtimes[name]; !ok {
		return nil, http.StatusNotFound, "No objects found."
	}
	delete(f.downtimes, name)
	// Icinga 2.13 and later remove child downtimes with their parent.
	for n, d := range f.downtimes {
		if d.parent == name {
			delete(f.downtimes, n)
		}
	}
	return []map[string]any{{"code": 200.0, "status": "Successfully removed downtime '" + name + "' and 0 child downtimes."}}, 0, ""
}

func (f *fakeIcinga) list(body map[string]any) ([]map[string]any, int, string) {
	host, ok := filterVar(body, "downtime.host_name==host_name")
	if !ok {
		return nil, http.StatusBadRequest, "Invalid filter specified."
	}
	out := []map[string]any{}
	for n, d := range f.downtimes {
		if d.host != host {
			continue
		}
		out = append(out, map[string]any{"name": n, "type": "Downtime", "joins": map[string]any{}, "meta": map[string]any{},
			"attrs": map[string]any{"host_name": d.host, "service_name": d.service, "author": d.author, "comment": d.comment,
				"start_time": d.start, "end_time": d.end}})
	}
	return out, 0, ""
}

// add records a downtime made outside signet.
func (f *fakeIcinga) add(name string, d fakeDowntime) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.downtimes[name] = d
}

// names returns the downtimes of host whose author starts with prefix.
func (f *fakeIcinga) names(host, authorPrefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n, d := range f.downtimes {
		if d.host == host && strings.HasPrefix(d.author, authorPrefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func (f *fakeIcinga) get(name string) (fakeDowntime, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.downtimes[name]
	return d, ok
}

// icingaFiles writes the server's CA certificate and the password file.
func icingaFiles(t *testing.T, srv *httptest.Server, password string) (caFile, pwFile string) {
	dir := t.TempDir()
	caFile, pwFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "icinga.pass")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, pwFile
}

// selfSignedCA writes a CA certificate that signed nothing the test server
// presents. (Every httptest TLS server shares one certificate, so another
// server's would not do.)
func selfSignedCA(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func icingaConfig(url, caFile, pwFile, extra string) string {
	return `{"backends":[{"icinga2":{"url":"` + url + `","username":"signet","password_file":"` + pwFile + `","ca_file":"` + caFile + `"` + extra + `}}]}`
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func TestIcingaLifecycle(t *testing.T) {
	f, srv := newFakeIcinga(t, map[string][]string{"web1.example.com": {"ssh", "http"}, "web2.example.com": {"ssh"}})
	caFile, pwFile := icingaFiles(t, srv, "pw")
	p := newTestPlugin(t, icingaConfig(srv.URL, caFile, pwFile, `,"host_name":"{{identity}}.example.com"`))

	now := float64(time.Now().Unix())
	f.add("web1.example.com!human-1", fakeDowntime{host: "web1.example.com", author: "carol", comment: "disk replacement", start: now, end: now + 7200})
	f.add("web1.example.com!ssh!signet-lookalike", fakeDowntime{host: "web1.example.com", service: "ssh", author: "signet/x", comment: "not signet's comment", start: now, end: now + 7200})

	if st := mustRun(t, p, "web1", "alice", "status", nil); st.Data["active"] != false {
		t.Fatalf("status before start = %+v", st)
	}
	before := time.Now()
	res := mustRun(t, p, "web1", "alice", "start", map[string]any{"duration": "1h", "comment": "deploy"})
	ids := res.Data["ids"].([]string)
	if !res.Changed || res.Data["active"] != true || res.Data["backend"] != "icinga2" || len(ids) != 3 {
		t.Fatalf("start = %+v, want a host and two service downtimes", res)
	}
	for _, id := range ids {
		d, ok := f.get(id)
		if !ok || d.author != "signet/alice" || d.comment != "signet: deploy (request req-1)" {
			t.Fatalf("downtime %s = %+v, want signet's marks", id, d)
		}
		if end := time.Unix(int64(d.end), 0); end.Sub(before) < 59*time.Minute || end.Sub(before) > 61*time.Minute {
			t.Fatalf("downtime %s ends %v after start, want 1h", id, end.Sub(before))
		}
	}
	until, _ := time.Parse(time.RFC3339, res.Data["until"].(string))
	if d, _ := f.get(ids[0]); !until.Equal(time.Unix(int64(d.end), 0)) {
		t.Fatalf("until %v, downtime ends %v", until, d.end)
	}
	web2 := mustRun(t, p, "web2", "alice", "start", nil)

	// Starting again replaces: the old downtimes go, three new ones stay.
	res2 := mustRun(t, p, "web1", "bob", "start", map[string]any{"duration": "2h"})
	ids2 := res2.Data["ids"].([]string)
	if !strings.Contains(res2.Summary, "replaced") {
		t.Fatalf("second start summary %q, want replaced", res2.Summary)
	}
	if got := f.names("web1.example.com", "signet/b"); fmt.Sprint(got) != fmt.Sprint(sorted(ids2)) {
		t.Fatalf("bob's downtimes %v, want %v", got, sorted(ids2))
	}
	if got := f.names("web1.example.com", "signet/alice"); len(got) != 0 {
		t.Fatalf("alice's downtimes survived the second start: %v", got)
	}

	st := mustRun(t, p, "web1", "alice", "status", nil)
	if st.Data["active"] != true || fmt.Sprint(sorted(st.Data["ids"].([]string))) != fmt.Sprint(sorted(ids2)) {
		t.Fatalf("status = %+v, want active with %v", st, ids2)
	}

	// end removes signet's downtimes for web1 and nothing else.
	e := mustRun(t, p, "web1", "carol", "end", nil)
	if !e.Changed || fmt.Sprint(sorted(e.Data["ids"].([]string))) != fmt.Sprint(sorted(ids2)) {
		t.Fatalf("end = %+v, want %v removed", e, ids2)
	}
	if got := f.names("web1.example.com", "signet/b"); len(got) != 0 {
		t.Fatalf("signet downtimes after end: %v", got)
	}
	for _, keep := range []string{"web1.example.com!human-1", "web1.example.com!ssh!signet-lookalike", web2.Data["ids"].([]string)[0]} {
		if _, ok := f.get(keep); !ok {
			t.Errorf("downtime %s was removed by web1's end", keep)
		}
	}
	if e2 := mustRun(t, p, "web1", "carol", "end", nil); e2.Changed {
		t.Fatalf("second end = %+v, want unchanged", e2)
	}
}

func TestIcingaErrors(t *testing.T) {
	_, srv := newFakeIcinga(t, map[string][]string{"web1": nil})
	caFile, pwFile := icingaFiles(t, srv, "pw")
	_, wrongPw := icingaFiles(t, srv, "wrong")
	otherCA := selfSignedCA(t)

	t.Run("wrong password", func(t *testing.T) {
		p := newTestPlugin(t, icingaConfig(srv.URL, caFile, wrongPw, ""))
		_, err := run(t, p, "web1", "alice", "status", nil)
		var aerr *APIError
		if !errors.As(err, &aerr) || aerr.Status != http.StatusUnauthorized {
			t.Fatalf("err = %v, want APIError 401", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Fatalf("error %q shows the password", err)
		}
	})
	t.Run("unknown host", func(t *testing.T) {
		p := newTestPlugin(t, icingaConfig(srv.URL, caFile, pwFile, ""))
		_, err := run(t, p, "db9", "alice", "start", nil)
		if err == nil || !strings.Contains(err.Error(), `no host object named "db9"`) {
			t.Fatalf("err = %v, want no host object named db9", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		p := newTestPlugin(t, icingaConfig(srv.URL, otherCA, pwFile, ""))
		_, err := run(t, p, "web1", "alice", "status", nil)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate error", err)
		}
	})
}

// TestBothBackends runs the real Alertmanager beside the Icinga test server.
func TestBothBackends(t *testing.T) {
	base := startAlertmanager(t)
	am := amAPI{t: t, base: base}
	f, srv := newFakeIcinga(t, map[string][]string{"web1": {"ssh"}})
	caFile, pwFile := icingaFiles(t, srv, "pw")
	cfg := `{"backends":[{"alertmanager":{"url":"` + base + `"}},{"icinga2":{"url":"` + srv.URL +
		`","username":"signet","password_file":"` + pwFile + `","ca_file":"` + caFile + `"}}]}`
	p := newTestPlugin(t, cfg)
	res := mustRun(t, p, "web1", "alice", "start", nil)
	if res.Data["backend"] != "alertmanager,icinga2" || len(res.Data["ids"].([]string)) != 3 {
		t.Fatalf("start = %+v, want a silence and two downtimes", res)
	}
	if len(am.active("signet/")) != 1 || len(f.names("web1", "signet/")) != 2 {
		t.Fatalf("after start: silences %+v, downtimes %v", am.active("signet/"), f.names("web1", "signet/"))
	}
	mustRun(t, p, "web1", "alice", "end", nil)
	if len(am.active("signet/")) != 0 || len(f.names("web1", "signet/")) != 0 {
		t.Fatalf("after end: silences %+v, downtimes %v", am.active("signet/"), f.names("web1", "signet/"))
	}

	// One backend down: the error names it; the other still acted.
	srv.Close()
	_, err := run(t, p, "web1", "alice", "start", nil)
	if err == nil || !strings.Contains(err.Error(), "icinga2 at "+srv.URL) {
		t.Fatalf("err = %v, want the icinga2 backend named", err)
	}
	if len(am.active("signet/")) != 1 {
		t.Fatalf("alertmanager silence missing after a partial start")
	}
}
