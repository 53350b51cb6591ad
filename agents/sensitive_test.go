package agents

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/testio"
	"github.com/signetbus/signet/plugins"
)

// vault is a test plugin with secret inputs. Its "login" fails with an
// error that quotes every parameter it got and logs them, as a careless
// plugin (or an external program's stderr) would: the host must still
// never echo a secret.
type vault struct{}

func (vault) Describe() plugins.DDL {
	return plugins.DDL{Name: "vault", Actions: []plugins.Action{
		{Name: "login", Inputs: []plugins.Input{
			{Name: "user", Type: plugins.TypeString},
			// Declared sensitive; the name does not look secret.
			{Name: "phrase", Type: plugins.TypeString, Sensitive: true, Pattern: `[A-Za-z0-9]{12,64}`},
			// Not declared, but the name looks secret.
			{Name: "api_key", Type: plugins.TypeString},
			{Name: "endpoint", Type: plugins.TypeString},
		}},
		{Name: "unlock", Inputs: []plugins.Input{
			{Name: "pin", Type: plugins.TypeInteger, Sensitive: true, Min: plugins.Float(1000), Max: plugins.Float(9999)},
			{Name: "code", Type: plugins.TypeString, Sensitive: true, Enum: []string{"alpha", "bravo"}},
			{Name: "hold", Type: plugins.TypeDuration, Sensitive: true},
		}},
	}}
}

func (vault) Run(_ context.Context, r *plugins.Request) (*plugins.Result, error) {
	all := fmt.Sprintf("user=%s phrase %s apikey %s at %s", r.Params.String("user"), r.Params.String("phrase"),
		r.Params.String("api_key"), r.Params.String("endpoint"))
	r.Log.Info("trying "+all, "phrase", r.Params.String("phrase"), "detail", all)
	if r.Params.String("user") == "ok" {
		return &plugins.Result{Summary: "logged in: " + all, Data: map[string]any{"echo": r.Params.String("phrase") + " " + r.Params.String("api_key")}}, nil
	}
	return nil, fmt.Errorf("login refused: %s", all)
}

// secretHost is one signetd host (Host, Serve, audit.Log, a JSON slog
// handler) on a real embedded broker, wired as Run wires them, with a
// client to send signed requests.
type secretHost struct {
	client *bus.Client
	audit  *testio.Buffer
	log    *testio.Buffer
}

func newSecretHost(t *testing.T) *secretHost {
	f := newFixture(t, "admin", "rules:\n  - roles: [admin]\n    allow: [\"*\"]\n")
	sh := &secretHost{audit: &testio.Buffer{}, log: &testio.Buffer{}}
	log := slog.New(slog.NewJSONHandler(sh.log, nil))
	h, err := NewHost(HostOptions{Identity: "web1", Collective: "t", Plugins: map[string]plugins.Plugin{"vault": vault{}},
		AuthorizedKeys: f.cfg.AuthorizedKeys, Policy: f.cfg.Policy, ActionTimeout: time.Minute, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	aud := audit.New(sh.audit)
	srv := brokertest.Start(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, ServeOptions{Conn: nc, Host: h, HostKey: f.hostKey, Audit: aud, Config: f.cfg, Logger: log})
	}()
	t.Cleanup(func() { cancel(); <-served })
	sh.client, err = bus.NewClient(bus.ClientConfig{Conn: nc, Collective: "t", Signer: f.op, User: "alice",
		HostKeys: keyMap{"web1": f.hostKey.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		_, err := sh.do(t, "rpcutil", "ping", nil)
		return err
	})
	return sh
}

func (sh *secretHost) do(t *testing.T, agent, action string, params map[string]any) (*bus.Result, error) {
	out, err := sh.client.Do(context.Background(), bus.Query{Agent: agent, Action: action, Params: params,
		Targets: []string{"web1"}, Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	if len(out.Results) != 1 || out.Results[0].Reply == nil {
		return nil, fmt.Errorf("no verified reply: %+v", out.Results)
	}
	return &out.Results[0], nil
}

// TestSensitiveNeverEchoed sends signed requests whose parameters hold
// secrets of each kind (an input declared sensitive, an input whose name
// looks secret, a token in a URL's query string) through a real broker to
// a real responder, and proves that no secret appears in the verified
// reply (error, summary, data), the host's audit log or its daemon log,
// whether the request is refused by validation or the plugin runs and
// quotes its parameters in its error, summary and logs.
func TestSensitiveNeverEchoed(t *testing.T) {
	sh := newSecretHost(t)
	const (
		badPhrase  = "hunter2 hunter2!"
		goodPhrase = "Tr0ub4dor3xyzzy"
		apiKey     = "AKIAIOSFODNN7EXAMPLE"
		urlToken   = "s3cr3tQueryT0ken"
	)
	endpoint := "https://vault.example:8200/v1/login?token=" + urlToken + "&access_token=" + urlToken + "x"
	cases := []struct {
		name    string
		action  string
		params  map[string]any
		status  bus.Status
		rule    string // what the refusal must still say
		secrets []string
	}{
		{"sensitive input breaks its pattern", "login", map[string]any{"phrase": badPhrase}, bus.StatusRefused,
			`invalid parameter "phrase" for login: the value (not shown: the input is sensitive) does not match [A-Za-z0-9]{12,64}`, []string{badPhrase, "hunter2"}},
		{"sensitive input too long", "login", map[string]any{"phrase": strings.Repeat("hunter2", 200)}, bus.StatusRefused,
			"longer than 1024 bytes", []string{"hunter2"}},
		{"sensitive input of the wrong type", "unlock", map[string]any{"pin": "hunter2"}, bus.StatusRefused,
			"want an integer", []string{"hunter2"}},
		{"sensitive input out of range", "unlock", map[string]any{"pin": 31337}, bus.StatusRefused,
			"above the maximum 9999", []string{"31337"}},
		{"sensitive input not in its enum", "unlock", map[string]any{"code": "hunter2"}, bus.StatusRefused,
			"is not one of", []string{"hunter2"}},
		{"sensitive duration not a duration", "unlock", map[string]any{"hold": "hunter2"}, bus.StatusRefused,
			"want a duration", []string{"hunter2"}},
		{"plugin quotes the secrets in its error", "login", map[string]any{"user": "bob", "phrase": goodPhrase, "api_key": apiKey, "endpoint": endpoint},
			bus.StatusFailed, "login refused", []string{goodPhrase, apiKey, urlToken}},
		{"plugin quotes the secrets in its summary", "login", map[string]any{"user": "ok", "phrase": goodPhrase, "api_key": apiKey, "endpoint": endpoint},
			bus.StatusOK, "", []string{goodPhrase, apiKey, urlToken}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := sh.do(t, "vault", tc.action, tc.params)
			if err != nil {
				t.Fatal(err)
			}
			rep := res.Reply
			if rep.Status != tc.status || !strings.Contains(rep.Error, tc.rule) {
				t.Fatalf("want %s stating %q, got %s: %q", tc.status, tc.rule, rep.Status, rep.Error)
			}
			replyJSON, _ := json.Marshal(rep)
			rec := auditLine(t, sh.audit.String(), rep.RequestID)
			for _, s := range tc.secrets {
				if strings.Contains(string(replyJSON), s) {
					t.Errorf("the signed reply echoes %q: %s", s, replyJSON)
				}
				if strings.Contains(rec, s) {
					t.Errorf("the audit record holds %q: %s", s, rec)
				}
				if strings.Contains(sh.log.String(), s) {
					t.Errorf("the daemon log holds %q:\n%s", s, sh.log.String())
				}
			}
			if tc.params["endpoint"] != nil && !strings.Contains(rec, "https://vault.example:8200/v1/login?token=") {
				t.Errorf("the audit record lost the endpoint's host and path: %s", rec)
			}
		})
	}
}

// auditLine returns the audit log line of a request.
func auditLine(t *testing.T, log, id string) string {
	t.Helper()
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"request_id":"`+id+`"`) {
			return l
		}
	}
	t.Fatalf("no audit record of %s in:\n%s", id, log)
	return ""
}
