package workflows

import (
	"strings"
	"testing"
)

func TestParseCount(t *testing.T) {
	tests := []struct {
		s      string
		n      int
		zeroOK bool
		want   int
		err    bool
	}{
		{"", 10, false, 0, false},
		{"2", 10, false, 2, false},
		{"25%", 10, false, 2, false}, // rounded down
		{"10%", 5, false, 1, false},  // at least 1
		{"10%", 5, true, 0, false},   // a budget may round to 0
		{"0", 10, true, 0, false},
		{"0", 10, false, 0, true},
		{"0%", 10, false, 0, true},
		{"101%", 10, false, 0, true},
		{"-1", 10, true, 0, true},
		{"two", 10, true, 0, true},
	}
	for _, tt := range tests {
		got, err := ParseCount("max_failures", tt.s, tt.n, tt.zeroOK)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseCount(%q, %d, %v) = %d, %v; want %d, error %v", tt.s, tt.n, tt.zeroOK, got, err, tt.want, tt.err)
		}
	}
}

func TestResolveLimits(t *testing.T) {
	batches := [][]string{{"web1", "web2", "web3"}, {"web4", "web5", "web6"}}
	zones := map[string]string{"web1": "a", "web2": "b", "web3": "c", "web4": "a", "web5": "b", "web6": "c"}
	l, err := ResolveLimits(Batching{BatchSize: "3"}, "", batches, zones)
	if err != nil || l.MaxUnavailable != 3 || l.MaxFailures != 0 || l.ZoneCaps != nil || l.OnFailure != OnFailureHold {
		t.Errorf("defaults: %+v %v; want the batch size, no budget, no zone cap, hold", l, err)
	}
	l, err = ResolveLimits(Batching{BatchSize: "3", Capacity: Capacity{MaxUnavailable: "50%", MaxUnavailablePerZone: "50%", MaxFailures: "1"}}, OnFailureStopNow, batches, zones)
	if err != nil || l.MaxUnavailable != 3 || l.MaxFailures != 1 || l.ZoneCaps["a"] != 1 {
		t.Errorf("set: %+v %v", l, err)
	}
	if s := l.String(); s != "max_unavailable 3, max_unavailable_per_zone 50% (a 1, b 1, c 1), max_failures 1, on_failure stop_now" {
		t.Errorf("String() = %q", s)
	}
	if err := (Batching{Capacity: Capacity{MaxUnavailable: "0"}}).Validate(); err == nil || !strings.Contains(err.Error(), "max_unavailable") {
		t.Errorf("max_unavailable 0: %v, want an error", err)
	}
}

func TestParseWorkflowCapacity(t *testing.T) {
	w, err := ParseWorkflow(strings.NewReader("version: 1\nname: wf\nhosts: [role=db]\nmax_unavailable: \"2\"\nmax_unavailable_per_zone: \"1\"\nmax_failures: 10%\non_failure: stop_now\nsteps:\n  - {name: s, agent: service, action: stop}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w.MaxUnavailable != "2" || w.MaxUnavailablePerZone != "1" || w.MaxFailures != "10%" || w.OnFailure != OnFailureStopNow {
		t.Errorf("parsed %+v", w.Batching)
	}
}
