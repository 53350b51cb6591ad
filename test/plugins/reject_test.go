package plugins

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/redact"
	"github.com/signetbus/signet/internal/stage"
)

// rejection is one signed request a host must refuse before anything runs.
type rejection struct {
	name   string
	host   string
	agent  string
	action string
	params map[string]any
	// param is the parameter the refusal must name.
	param string
	// rule is the text of the broken rule the refusal must state.
	rule string
}

// haproxyName is the name grammar the haproxy DDL declares; the DDL's
// pattern check refuses a bad name before the plugin's own, more specific
// CheckName message is reached.
const haproxyName = `does not match [A-Za-z0-9][A-Za-z0-9_.:-]{0,99}`

// serviceName is the service DDL's pattern (the systemd unit grammar).
const serviceName = `does not match [A-Za-z0-9][A-Za-z0-9:_.@-]{0,254}`

func rejections(s *stage.Stage) []rejection {
	app := s.App
	appPort := strings.TrimPrefix(s.Host("web3").AppURL, "http://127.0.0.1:")
	pkg := func(name, pkgName, version, rule string) rejection {
		p := map[string]any{"package": pkgName}
		param := "package"
		if version != "" {
			p["version"], param = version, "version"
		}
		return rejection{name: name, host: "web1", agent: "package", action: "update", params: p, param: param, rule: rule}
	}
	svc := func(name string, p map[string]any, param, rule string) rejection {
		return rejection{name: name, host: "web2", agent: "service", action: "stop", params: p, param: param, rule: rule}
	}
	lb := func(name, action string, p map[string]any, param, rule string) rejection {
		return rejection{name: name, host: "web3", agent: "haproxy", action: action, params: p, param: param, rule: rule}
	}
	// Each URL check also names a 1ms timeout and one attempt: even if a
	// refusal ever failed, the test would not wait on a foreign address.
	url := func(name, u, rule string) rejection {
		return rejection{name: name, host: "web3", agent: "health", action: "http",
			params: map[string]any{"url": u, "retries": 1, "timeout": "1ms"}, param: "url", rule: rule}
	}
	hc := func(name, action string, p map[string]any, param, rule string) rejection {
		return rejection{name: name, host: "web3", agent: "health", action: action, params: p, param: param, rule: rule}
	}
	mt := func(name, action string, p map[string]any, param, rule string) rejection {
		return rejection{name: name, host: "web1", agent: "maintenance", action: action, params: p, param: param, rule: rule}
	}
	notDeb := "is not a Debian package name"
	notAllowed := "is not in this host's health allow_hosts (loopback only unless configured)"
	return []rejection{
		// package: the Debian name and version grammar, checked by the plugin's Validator.
		pkg("package shell chain", "nginx; rm -rf /", "", notDeb),
		pkg("package apt option", "-oAPT::Update::Pre-Invoke::=x", "", "a package name must not start with '-' (it would be read as an option)"),
		pkg("package path", "../x", "", notDeb),
		pkg("package command substitution", "$(id)", "", notDeb),
		pkg("package backticks", "`id`", "", notDeb),
		pkg("package glob", app+"*", "", notDeb),
		pkg("package pinned in the name", app+"=1.1", "", notDeb),
		pkg("package newline", app+"\nrm", "", "a package name must not contain control characters"),
		pkg("package empty", "", "", "a package name must not be empty"),
		pkg("package too long", strings.Repeat("a", 129), "", "longer than 128 bytes"),
		pkg("version with a space", app, "1.1 x", "is not a Debian version"),
		pkg("version with a newline", app, "1.1\n-oAPT::Update::Pre-Invoke::=x", "a version must not contain control characters"),
		pkg("version apt option", app, "-oDpkg::Pre-Invoke::=x", "a version must not start with '-'"),
		pkg("version shell chain", app, "1.1;id", "is not a Debian version"),
		pkg("version NUL", app, "1.1\x00", "not valid UTF-8 text"),
		{name: "package wrong type", host: "web1", agent: "package", action: "status",
			params: map[string]any{"package": 42}, param: "package", rule: "want a string, got a number"},
		{name: "package unknown parameter", host: "web1", agent: "package", action: "status",
			params: map[string]any{"package": app, "force": true}, param: "force", rule: "unknown parameter (accepted: package)"},
		{name: "package missing package", host: "web1", agent: "package", action: "status",
			params: map[string]any{}, param: "package", rule: "required parameter is missing"},
		{name: "check_version missing version", host: "web1", agent: "package", action: "check_version",
			params: map[string]any{"package": app}, param: "version", rule: "required parameter is missing"},

		// service: the unit name grammar (DDL pattern), the host's allow-list, the timeout bounds.
		svc("service shell chain", map[string]any{"service": "a;b"}, "service", serviceName),
		svc("service path", map[string]any{"service": "../x"}, "service", serviceName),
		svc("service option", map[string]any{"service": "-x"}, "service", serviceName),
		svc("service command substitution", map[string]any{"service": "$(id)"}, "service", serviceName),
		svc("service space", map[string]any{"service": app + " x"}, "service", serviceName),
		svc("service newline", map[string]any{"service": app + "\nx"}, "service", serviceName),
		svc("service not allowed", map[string]any{"service": "ssh"}, "service", `service "ssh" is not in this host's services list`),
		svc("service missing", map[string]any{}, "service", "required parameter is missing"),
		svc("service timeout above the cap", map[string]any{"service": app, "timeout": "11m"}, "timeout", "11m is above the maximum 600s"),
		svc("service timeout below the minimum", map[string]any{"service": app, "timeout": "0s"}, "timeout", "0s is below the minimum 1s"),
		svc("service timeout not a duration", map[string]any{"service": app, "timeout": "soon"}, "timeout", `want a duration such as 90s or 5m, got "soon"`),

		// haproxy: names that would end or chain a runtime API command.
		lb("backend with ';'", "drain", map[string]any{"backend": app + ";disable server " + app + "/web1", "server": "web3"}, "backend", haproxyName),
		lb("server with ';'", "drain", map[string]any{"backend": app, "server": "web1;set server " + app + "/web2 state maint"}, "server", haproxyName),
		lb("server with a newline", "drain", map[string]any{"backend": app, "server": "web1\nset server " + app + "/web2 state maint"}, "server", haproxyName),
		lb("server with a space", "disable", map[string]any{"backend": app, "server": "web1 web2"}, "server", haproxyName),
		lb("backend with '/'", "disable", map[string]any{"backend": app + "/web1"}, "backend", haproxyName),
		lb("server with '/'", "enable", map[string]any{"backend": app, "server": app + "/web1"}, "server", haproxyName),
		lb("server with a leading '-'", "disable", map[string]any{"backend": app, "server": "-web1"}, "server", haproxyName),
		lb("status backend with a newline", "status", map[string]any{"backend": app + "\nshow info"}, "backend", haproxyName),
		lb("drain without backend", "drain", map[string]any{"server": "web1"}, "backend", "required parameter is missing"),
		lb("weight above 256", "weight", map[string]any{"backend": app, "server": "web1", "weight": 300}, "weight", "300 is above the maximum 256"),
		lb("weight below 0", "weight", map[string]any{"backend": app, "server": "web1", "weight": -1}, "weight", "-1 is below the minimum 0"),
		lb("weight not an integer", "weight", map[string]any{"backend": app, "server": "web1", "weight": "heavy"}, "weight", `want an integer, got "heavy"`),
		lb("drain timeout above the cap", "drain", map[string]any{"backend": app, "server": "web1", "timeout": "2h"}, "timeout", "2h is above the maximum 3600s"),
		lb("wait not a boolean", "drain", map[string]any{"backend": app, "server": "web1", "wait": "maybe"}, "wait", `want true or false, got "maybe"`),

		// health: server-side request forgery and the bounds of each input.
		url("url to a foreign address", "http://192.0.2.1/", "host 192.0.2.1 "+notAllowed),
		url("url to the cloud metadata address", "http://169.254.169.254/latest/meta-data/", "host 169.254.169.254 "+notAllowed),
		url("url to 0.0.0.0", "http://0.0.0.0:"+appPort+"/version", "host 0.0.0.0 "+notAllowed),
		url("url to an IPv4-mapped foreign address", "http://[::ffff:192.0.2.1]/", "host ::ffff:192.0.2.1 "+notAllowed),
		url("url to a decimal address", "http://2130706433:"+appPort+"/version", "host 2130706433 "+notAllowed),
		url("url to a name that resolves to loopback", "http://localtest.me:"+appPort+"/version", "host localtest.me "+notAllowed),
		url("file url", "file:///etc/passwd", `want an http:// or https:// URL, got scheme "file"`),
		url("gopher url", "gopher://127.0.0.1:"+appPort+"/", `want an http:// or https:// URL, got scheme "gopher"`),
		url("url with user and password", "http://admin:hunter2@127.0.0.1:"+appPort+"/version", "credentials in the URL are refused"),
		url("url with userinfo hiding the host", "http://127.0.0.1:"+appPort+"@192.0.2.1/", "credentials in the URL are refused"),
		hc("http without url", "http", map[string]any{}, "url", "required parameter is missing"),
		hc("http status below 100", "http", map[string]any{"url": "http://127.0.0.1:" + appPort + "/", "status": 99}, "status", "99 is below the minimum 100"),
		hc("http retries above 30", "http", map[string]any{"url": "http://127.0.0.1:" + appPort + "/", "retries": 31}, "retries", "31 is above the maximum 30"),
		hc("http interval above 10s", "http", map[string]any{"url": "http://127.0.0.1:" + appPort + "/", "interval": "11s"}, "interval", "11s is above the maximum 10s"),
		hc("tcp to a foreign host", "tcp", map[string]any{"host": "192.0.2.1", "port": 80, "timeout": "1ms"}, "host", "host 192.0.2.1 "+notAllowed),
		hc("tcp port not a number", "tcp", map[string]any{"port": "abc"}, "port", `want an integer, got "abc"`),
		hc("tcp port above 65535", "tcp", map[string]any{"port": 70000}, "port", "70000 is above the maximum 65535"),
		hc("tcp port 0", "tcp", map[string]any{"port": 0}, "port", "0 is below the minimum 1"),
		hc("tcp without port", "tcp", map[string]any{}, "port", "required parameter is missing"),

		// maintenance: always time-bounded, one-line comments.
		mt("duration above the cap", "start", map[string]any{"duration": "5h"}, "duration", "5h is above the maximum 14400s"),
		mt("duration of a week", "start", map[string]any{"duration": "169h"}, "duration", "169h is above the maximum 14400s"),
		mt("duration below a minute", "start", map[string]any{"duration": "30s"}, "duration", "30s is below the minimum 60s"),
		mt("duration not a duration", "start", map[string]any{"duration": "forever"}, "duration", `want a duration such as 90s or 5m, got "forever"`),
		mt("comment with a newline", "start", map[string]any{"duration": "10m", "comment": "deploy\nsigned: someone else"}, "comment", `control character '\n' at byte 6`),
		mt("end with a parameter", "end", map[string]any{"duration": "1m"}, "duration", "unknown parameter (accepted: none)"),
	}
}

// hostState is what a refused request must leave untouched.
type hostState struct {
	dpkgStatus string // web1's dpkg database
	pkgVersion string
	servicePID int64 // web2's app
	haproxy    string
	silences   int
}

func snapshot(t *testing.T, s *stage.Stage) hostState {
	t.Helper()
	var st hostState
	b, err := os.ReadFile(filepath.Join(s.Host("web1").Root, "var/lib/dpkg/status"))
	if err != nil {
		t.Fatal(err)
	}
	st.dpkgStatus = string(b)
	st.pkgVersion, _ = mustOK(t, "web1", "package", "status", map[string]any{"package": s.App}).Data["version"].(string)
	st.servicePID = num(mustOK(t, "web2", "service", "status", map[string]any{"service": s.App}).Data["pid"])
	stats, err := s.ShowStat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range stats {
		st.haproxy += fmt.Sprintf("%s=%s/w%d ", x.Server, x.Status, x.Weight)
	}
	sil, err := s.Silences(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.silences = len(sil)
	return st
}

// TestRejections sends every input the plugins must refuse through the
// whole signed bus, one table on one stage. For each it proves that the
// verified reply is status refused with code invalid_params and an error
// naming the parameter and the rule; that the target host's audit log
// holds one record of that request with decision refused, the same code and
// reason, the operator as principal and the parameter as sent; and that
// the host never logged "running action" for it (the plugin's Run was not
// called). A control request, accepted, shows that the log and audit checks
// do see a request that runs. Around the table it proves nothing changed on
// the real backends: web1's dpkg database byte for byte and its package
// version, web2's app pid, HAProxy's status and weight of every server, and
// Alertmanager's silences.
func TestRejections(t *testing.T) {
	s, _ := sharedStage(t)
	waitAllUp(t)
	before := snapshot(t, s)

	control := do(t, "web1", "package", "status", map[string]any{"package": s.App})
	if control.Result.Status != bus.ResultOK || !ranAction(control.ID) {
		t.Fatalf("control: an accepted package status must run and log \"running action\": %s %q ran=%v", control.Result.Status, control.Result.Error, ranAction(control.ID))
	}
	if rec := auditRecord(t, "web1", control.ID); rec == nil || rec.Decision != "accepted" || rec.Status != bus.StatusOK {
		t.Fatalf("control: want an accepted audit record, got %+v", rec)
	}

	for _, tc := range rejections(s) {
		t.Run(tc.name, func(t *testing.T) {
			c := do(t, tc.host, tc.agent, tc.action, tc.params)
			rep := c.Reply()
			if c.Result.Status != bus.ResultRefused || rep.Status != bus.StatusRefused || rep.Code != bus.CodeInvalidParams {
				t.Fatalf("want refused with code %s, got %s (code %q): %s", bus.CodeInvalidParams, c.Result.Status, rep.Code, rep.Error)
			}
			prefix := fmt.Sprintf("invalid parameter %q for %s: ", tc.param, tc.action)
			if !strings.HasPrefix(rep.Error, prefix) || !strings.Contains(rep.Error, tc.rule) {
				t.Errorf("error %q: want it to start %q and state the rule %q", rep.Error, prefix, tc.rule)
			}
			if rep.Changed || len(rep.Data) != 0 {
				t.Errorf("a refusal carries no result: changed=%v data=%v", rep.Changed, rep.Data)
			}

			rec := auditRecord(t, tc.host, c.ID)
			if rec == nil {
				t.Fatalf("no audit record of request %s in %s's audit log", c.ID, tc.host)
			}
			// The audit log keeps what was sent, less any credentials in URLs.
			if rec.Decision != "refused" || rec.Status != bus.StatusRefused || rec.Code != bus.CodeInvalidParams || rec.Reason != redact.String(rep.Error) {
				t.Errorf("audit: want decision refused, code %s, reason %q; got %s, %s, %q", bus.CodeInvalidParams, redact.String(rep.Error), rec.Decision, rec.Code, rec.Reason)
			}
			if rec.Identity != tc.host || rec.Agent != tc.agent || rec.Action != tc.action || rec.Principal != "operator" || rec.User != "operator" {
				t.Errorf("audit: want %s %s.%s by operator, got %+v", tc.host, tc.agent, tc.action, rec)
			}
			if sent, ok := tc.params[tc.param]; ok && fmt.Sprint(rec.Params[tc.param]) != fmt.Sprint(redact.Value(sent)) {
				t.Errorf("audit: %s recorded as %q, sent %q", tc.param, fmt.Sprint(rec.Params[tc.param]), fmt.Sprint(sent))
			}
			if strings.Contains(fmt.Sprint(rec.Params), "hunter2") || strings.Contains(rec.Reason, "hunter2") {
				t.Errorf("audit: a password from the request was written: %v %q", rec.Params, rec.Reason)
			}
			if ranAction(c.ID) {
				t.Errorf("the host logged \"running action\" for a refused request")
			}
		})
	}

	after := snapshot(t, s)
	if after.dpkgStatus != before.dpkgStatus {
		t.Errorf("web1's dpkg database changed during the refused requests")
	}
	if after.pkgVersion != before.pkgVersion {
		t.Errorf("web1's %s went from %q to %q during the refused requests", s.App, before.pkgVersion, after.pkgVersion)
	}
	if after.servicePID != before.servicePID || after.servicePID <= 0 {
		t.Errorf("web2's app pid went from %d to %d during the refused requests", before.servicePID, after.servicePID)
	}
	if after.haproxy != before.haproxy || strings.Count(after.haproxy, "=UP/w1 ") != len(s.Hosts) {
		t.Errorf("haproxy servers went from %q to %q during the refused requests", before.haproxy, after.haproxy)
	}
	if after.silences != before.silences {
		t.Errorf("Alertmanager silences went from %d to %d during the refused requests", before.silences, after.silences)
	}
}
