package maintenance

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signetbus/signet/plugins"
)

func TestRegistered(t *testing.T) {
	info, ok := plugins.Lookup(Name)
	if !ok || info.New == nil {
		t.Fatalf("plugin %q not registered", Name)
	}
}

func TestConfigRejections(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(secret, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	am := func(fields string) string {
		return `{"backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"` + fields + `}}]}`
	}
	ic := func(fields string) string {
		return `{"backends":[{"icinga2":{"url":"https://127.0.0.1:5665"` + fields + `}}]}`
	}
	icAuth := `,"username":"signet","password_file":"` + secret + `"`
	for _, c := range []struct {
		name, config, want string
	}{
		{"no config", ``, "want at least one"},
		{"no backends", `{"backends":[]}`, "want at least one"},
		{"unknown key", `{"backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"}}],"silence":true}`, "unknown field"},
		{"unknown backend key", am(`,"matcher":[]`), "unknown field"},
		{"unknown backend type", `{"backends":[{"nagios":{}}]}`, "unknown field"},
		{"neither backend", `{"backends":[{}]}`, "got neither"},
		{"both backends in one entry", `{"backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"},"icinga2":{"url":"https://127.0.0.1:5665"}}]}`, "got both"},
		{"max_duration not a duration", `{"max_duration":"forever","backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"}}]}`, "max_duration"},
		{"max_duration above a week", `{"max_duration":"169h","backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"}}]}`, "max_duration"},
		{"max_duration below a minute", `{"max_duration":"30s","backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"}}]}`, "max_duration"},
		{"default above max", `{"max_duration":"1h","default_duration":"2h","backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"}}]}`, "default_duration"},
		{"url missing", `{"backends":[{"alertmanager":{}}]}`, "url"},
		{"url scheme", `{"backends":[{"alertmanager":{"url":"ftp://127.0.0.1"}}]}`, "url"},
		{"url userinfo", `{"backends":[{"alertmanager":{"url":"http://u:p@127.0.0.1:9093"}}]}`, "credentials in the url"},
		{"url query", `{"backends":[{"alertmanager":{"url":"http://127.0.0.1:9093/?x=1"}}]}`, "query"},
		{"timeout", am(`,"timeout":"1h"`), "timeout"},
		{"ca_file with http", am(`,"ca_file":"` + secret + `"`), "not https"},
		{"matcher label name", am(`,"matchers":[{"name":"in-stance","value":"{{identity}}"}]`), "label name"},
		{"matcher without identity", am(`,"matchers":[{"name":"env","value":"prod"}]`), "at least one value holding {{identity}}"},
		{"matcher other template", am(`,"matchers":[{"name":"instance","value":"{{identity}}{{port}}"}]`), "only the template"},
		{"matcher empty value", am(`,"matchers":[{"name":"instance","value":"{{identity}}"},{"name":"env","value":""}]`), "value is empty"},
		{"matcher bad regex", am(`,"matchers":[{"name":"instance","value":"{{identity}}(","regex":true}]`), "not a regular expression"},
		{"bearer and basic", am(`,"bearer_token_file":"` + secret + `","basic_auth":{"username":"u","password_file":"` + secret + `"}`), "not both"},
		{"relative token file", am(`,"bearer_token_file":"secret"`), "absolute path"},
		{"missing token file", am(`,"bearer_token_file":"` + filepath.Join(dir, "nope") + `"`), "no such file"},
		{"empty token file", am(`,"bearer_token_file":"` + empty + `"`), "one non-empty line"},
		{"basic auth without user", am(`,"basic_auth":{"password_file":"` + secret + `"}`), "username"},
		{"icinga without username", ic(`,"password_file":"` + secret + `"`), "username"},
		{"icinga without password file", ic(`,"username":"signet"`), "password_file"},
		{"icinga host_name without identity", ic(icAuth + `,"host_name":"web1"`), "host_name"},
		{"icinga host_name with quote", ic(icAuth + `,"host_name":"{{identity}}\""`), "host_name"},
		{"icinga ca_file not PEM", ic(icAuth + `,"ca_file":"` + secret + `"`), "want PEM certificates"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(json.RawMessage(c.config))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New(%s): err = %v, want it to say %q", c.config, err, c.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error shows a secret: %v", err)
			}
		})
	}
}

func TestDescribeCarriesCap(t *testing.T) {
	p := newTestPlugin(t, `{"max_duration":"2h","default_duration":"10m","backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"}}]}`)
	a, ok := p.Describe().Action("start")
	if !ok {
		t.Fatal("no start action")
	}
	for _, in := range a.Inputs {
		if in.Name == "duration" && (in.Default != "10m0s" || *in.Max != 7200) {
			t.Fatalf("duration input = %+v, want default 10m and max 7200s", in)
		}
	}
	if got := p.Describe().ActionNames(); strings.Join(got, ",") != "end,start,status" {
		t.Fatalf("actions = %v", got)
	}
}

func TestValidateRejections(t *testing.T) {
	p := newTestPlugin(t, `{"backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"}}]}`)
	for _, c := range []struct {
		name   string
		action string
		params plugins.Params
		rule   string
	}{
		{"above cap", "start", plugins.Params{"duration": "4h0m1s"}, "max"},
		{"below minimum", "start", plugins.Params{"duration": "59s"}, "max"},
		{"zero", "start", plugins.Params{"duration": "0s"}, "max"},
		{"negative", "start", plugins.Params{"duration": "-1h"}, "max"},
		{"not a duration", "start", plugins.Params{"duration": "soon"}, "type"},
		{"comment newline", "start", plugins.Params{"comment": "a\nb"}, "control"},
		{"comment escape", "start", plugins.Params{"comment": "a\x1b[31m"}, "control"},
		{"comment too long", "start", plugins.Params{"comment": strings.Repeat("x", 513)}, "max_length"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := p.Validate(c.action, c.params)
			var perr *plugins.ParamError
			if !errors.As(err, &perr) || perr.Rule != c.rule {
				t.Fatalf("Validate(%s, %v) = %v, want rule %s", c.action, c.params, err, c.rule)
			}
		})
	}
	if err := p.Validate("mute", nil); err == nil {
		t.Fatal("unknown action accepted")
	}
	if err := p.Validate("start", plugins.Params{"duration": "4h", "comment": "deploy 1.1 — ok"}); err != nil {
		t.Fatalf("valid start refused: %v", err)
	}
}

func TestRunRejectsBadRequest(t *testing.T) {
	// Nothing listens on port 1: a request that got past these checks
	// would fail with connection refused instead.
	p := newTestPlugin(t, `{"backends":[{"alertmanager":{"url":"http://127.0.0.1:1"}}]}`)
	for _, c := range []struct{ name, identity, caller, want string }{
		{"empty identity", "", "alice", "host identity"},
		{"identity with quote", `web1"`, "alice", "host identity"},
		{"identity with regex", "web.*", "alice", "host identity"},
		{"identity leading dash", "-web1", "alice", "host identity"},
		{"empty caller", "web1", "", "caller"},
		{"caller with newline", "web1", "alice\nbob", "caller"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := p.Run(context.Background(), &plugins.Request{Action: "status", Identity: c.identity, Caller: c.caller})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to name the %s", err, c.want)
			}
		})
	}
}
