package bus

import (
	"errors"
	"strings"
	"testing"
)

func TestProvenanceCheck(t *testing.T) {
	cases := []struct {
		name string
		p    *Provenance
		ok   bool
	}{
		{"nil", nil, true},
		{"full", &Provenance{Run: "7f3a09c1", Ticket: "CHG-1234", BuildURL: "https://jenkins.example.com/job/app/42/", Reason: "rollback of run 7f3a09c1 after web3: health: 500"}, true},
		{"run with a space", &Provenance{Run: "7f3a 09c1"}, false},
		{"ticket newline", &Provenance{Ticket: "CHG-1\nforged: line"}, false},
		{"reason escape", &Provenance{Reason: "ok\x1b[2J"}, false},
		{"ticket too long", &Provenance{Ticket: strings.Repeat("x", 129)}, false},
		{"reason too long", &Provenance{Reason: strings.Repeat("x", 1025)}, false},
		{"build url not http", &Provenance{BuildURL: "javascript:alert(1)"}, false},
		{"build url no host", &Provenance{BuildURL: "https:///job/1"}, false},
		{"invalid utf-8", &Provenance{Ticket: "CHG-\xff"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.p.Check()
			if c.ok != (err == nil) || !c.ok && !errors.Is(err, ErrProvenance) {
				t.Errorf("Check() = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

// TestProvenanceAudited: a request's provenance lands in the host's audit
// records of it; a signed request with a malformed provenance (a newline
// that would forge an audit line in a text view) is refused as malformed
// and nothing runs.
func TestProvenanceAudited(t *testing.T) {
	f := startFleet(t, 1)
	c := f.client(t, f.operator, nil)
	want := &Provenance{Run: "7f3a09c1", Ticket: "CHG-1234", BuildURL: "https://jenkins.example.com/job/app/42/", Reason: "rollback of run 7f3a09c1"}
	out, err := c.Do(t.Context(), Query{Agent: "test", Action: "echo", Targets: []string{"web1"}, Provenance: want, Params: map[string]any{"x": "1"}})
	if err != nil || len(out.Results) != 1 || out.Results[0].Status != ResultOK {
		t.Fatalf("request with provenance: %v %+v", err, out)
	}
	recs := f.audits["web1"].all()
	if len(recs) == 0 {
		t.Fatal("no audit record")
	}
	for _, r := range recs {
		if r.Provenance == nil || *r.Provenance != *want {
			t.Errorf("audit %s: provenance %+v, want %+v", r.Decision, r.Provenance, want)
		}
	}

	r := baseRequest(f, f.operator)
	r.Provenance = &Provenance{Ticket: "CHG-1\n{\"decision\":\"accepted\"}"}
	frame, err := SignRequest(f.operator, r)
	if err != nil {
		t.Fatal(err)
	}
	rs := rawSend(t, f, NodeSubject("test", "web1"), frame)
	if len(rs) != 1 || rs[0].Reply == nil || rs[0].Reply.Code != CodeMalformed || !strings.Contains(rs[0].Reply.Error, "ticket holds a control character") {
		t.Fatalf("malformed provenance: %+v", rs)
	}
}
