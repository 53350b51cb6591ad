package plugins

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/stage"
)

// TestMaintenance drives the maintenance plugin on web1 through the bus
// against the stage's real Alertmanager (API v2): start creates exactly one
// active silence for web1 ending about when asked, with signet's comment; a
// second start replaces it (still one); status reports it active with its
// id; end removes it, and Alertmanager then reports that silence expired
// and no active silence for web1.
func TestMaintenance(t *testing.T) {
	s, _ := sharedStage(t)
	const host = "web1"
	t.Cleanup(func() { do(t, host, "maintenance", "end", map[string]any{}) })
	if got := silencesOf(t, s, host); len(got) != 0 {
		t.Fatalf("before start: %s already has silences %+v", host, got)
	}

	before := time.Now()
	rep := mustOK(t, host, "maintenance", "start", map[string]any{"duration": "10m", "comment": "plugins test"})
	if !rep.Changed || rep.Data["active"] != true || rep.Data["backend"] != "alertmanager" {
		t.Fatalf("start: want changed, active, backend alertmanager; got changed=%v %v", rep.Changed, rep.Data)
	}
	got := silencesOf(t, s, host)
	if len(got) != 1 {
		t.Fatalf("after start: want one active silence for %s, got %+v", host, got)
	}
	first := got[0]
	if ids, _ := rep.Data["ids"].([]any); len(ids) != 1 || ids[0] != first.ID {
		t.Errorf("start: data.ids %v, Alertmanager has silence %s", rep.Data["ids"], first.ID)
	}
	if end := first.EndsAt; end.Before(before.Add(9*time.Minute)) || end.After(time.Now().Add(11*time.Minute)) {
		t.Errorf("after start: the silence ends at %s, want about 10m after %s", end, before)
	}
	if !strings.HasPrefix(first.Comment, "signet: plugins test (request ") {
		t.Errorf("after start: comment %q, want signet's mark with the request id", first.Comment)
	}

	rep = mustOK(t, host, "maintenance", "start", map[string]any{"duration": "20m", "comment": "plugins test again"})
	if rep.Data["active"] != true {
		t.Errorf("second start: want active, got %v", rep.Data)
	}
	got = silencesOf(t, s, host)
	if len(got) != 1 {
		t.Fatalf("after a second start: want still one active silence for %s, got %+v", host, got)
	}
	second := got[0]
	if !second.EndsAt.After(first.EndsAt) || !strings.Contains(second.Comment, "plugins test again") {
		t.Errorf("after a second start: want the silence replaced (later end, new comment), got %+v (was %+v)", second, first)
	}

	rep = mustOK(t, host, "maintenance", "status", map[string]any{})
	ids, _ := rep.Data["ids"].([]any)
	if rep.Changed || rep.Data["active"] != true || len(ids) != 1 || ids[0] != second.ID {
		t.Errorf("status: want active with id %s, unchanged; got changed=%v %v", second.ID, rep.Changed, rep.Data)
	}
	if until, err := time.Parse(time.RFC3339, rep.Data["until"].(string)); err != nil || until.Sub(second.EndsAt).Abs() > time.Second {
		t.Errorf("status: until %v (%v), Alertmanager says %s", rep.Data["until"], err, second.EndsAt)
	}

	rep = mustOK(t, host, "maintenance", "end", map[string]any{})
	if !rep.Changed || rep.Data["active"] != false {
		t.Errorf("end: want changed and not active, got changed=%v %v", rep.Changed, rep.Data)
	}
	if got := silencesOf(t, s, host); len(got) != 0 {
		t.Errorf("after end: want no active silence for %s, got %+v", host, got)
	}
	if st := silenceState(t, s, second.ID); st != "expired" {
		t.Errorf("after end: Alertmanager reports silence %s %q, want expired", second.ID, st)
	}
	if rep := mustOK(t, host, "maintenance", "status", map[string]any{}); rep.Data["active"] != false {
		t.Errorf("status after end: want not active, got %v", rep.Data)
	}
}

// silencesOf returns Alertmanager's active silences for host.
func silencesOf(t *testing.T, s *stage.Stage, host string) []stage.Silence {
	t.Helper()
	all, err := s.Silences(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []stage.Silence
	for _, sl := range all {
		if sl.Host == host {
			out = append(out, sl)
		}
	}
	return out
}

// silenceState asks Alertmanager for one silence's state: active, pending
// or expired.
func silenceState(t *testing.T, s *stage.Stage, id string) string {
	t.Helper()
	resp, err := http.Get(s.AlertmanagerURL + "/api/v2/silence/" + url.PathEscape(id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET silence %s: %s", id, resp.Status)
	}
	var sl struct {
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&sl); err != nil {
		t.Fatalf("GET silence %s: %v", id, err)
	}
	return sl.Status.State
}
