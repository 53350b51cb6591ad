package workflows

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func zoned(n int, zones ...string) []Host {
	var hs []Host
	for i := 1; i <= n; i++ {
		f := map[string]string{}
		if len(zones) > 0 {
			f["zone"] = zones[(i-1)%len(zones)]
		}
		hs = append(hs, Host{Identity: fmt.Sprintf("web%d", i), Facts: f})
	}
	return hs
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name  string
		hosts []Host
		b     Batching
		want  [][]string
	}{
		{"one zone per batch slot", zoned(9, "a", "b", "c"), Batching{BatchSize: "3"},
			[][]string{{"web1", "web2", "web3"}, {"web4", "web5", "web6"}, {"web7", "web8", "web9"}}},
		{"percent rounds up", zoned(9, "a", "b", "c"), Batching{BatchSize: "25%"},
			[][]string{{"web1", "web2", "web3"}, {"web4", "web5", "web6"}, {"web7", "web8", "web9"}}},
		{"batch larger than zones is capped by the zone rule", zoned(9, "a", "b", "c"), Batching{BatchSize: "5"},
			[][]string{{"web1", "web2", "web3"}, {"web4", "web5", "web6"}, {"web7", "web8", "web9"}}},
		{"default batch size is one, natural order", zoned(3, "a", "b", "c"), Batching{},
			[][]string{{"web1"}, {"web2"}, {"web3"}}},
		{"biggest zone first so it does not trail", append(zoned(2, "b"), Host{Identity: "db1", Facts: map[string]string{"zone": "a"}}), Batching{BatchSize: "2"},
			[][]string{{"db1", "web1"}, {"web2"}}},
		{"hosts without a zone share one", zoned(3), Batching{BatchSize: "3"},
			[][]string{{"web1"}, {"web2"}, {"web3"}}},
		{"allow_same_zone fills batches, spread across zones", zoned(9, "a", "b", "c"), Batching{BatchSize: "4", AllowSameZone: true},
			[][]string{{"web1", "web2", "web3", "web4"}, {"web5", "web6", "web7", "web8"}, {"web9"}}},
		{"custom zone fact", []Host{{Identity: "a1", Facts: map[string]string{"rack": "r1"}}, {Identity: "a2", Facts: map[string]string{"rack": "r1"}}, {Identity: "a3", Facts: map[string]string{"rack": "r2"}}},
			Batching{BatchSize: "2", ZoneFact: "rack"}, [][]string{{"a1", "a3"}, {"a2"}}},
		{"web10 sorts after web9", zoned(10, "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"), Batching{BatchSize: "10"},
			[][]string{{"web1", "web2", "web3", "web4", "web5", "web6", "web7", "web8", "web9", "web10"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Plan(tt.hosts, tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Plan = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPlanNeverTwoOfAZone checks the zone rule on many sizes: web1, web4
// and web7 (zone a) are never in one batch, and every host is planned once.
func TestPlanNeverTwoOfAZone(t *testing.T) {
	for _, size := range []string{"1", "2", "3", "4", "9", "50%", "100%"} {
		hosts := zoned(9, "a", "b", "c")
		batches, err := Plan(hosts, Batching{BatchSize: size})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, b := range batches {
			zones := map[string]bool{}
			for _, h := range b {
				seen[h]++
				var z string
				for _, x := range hosts {
					if x.Identity == h {
						z = x.Facts["zone"]
					}
				}
				if zones[z] {
					t.Errorf("size %s: batch %v holds two hosts of zone %s", size, b, z)
				}
				zones[z] = true
			}
		}
		if len(seen) != 9 {
			t.Errorf("size %s: planned %d hosts, want 9", size, len(seen))
		}
		for h, n := range seen {
			if n != 1 {
				t.Errorf("size %s: %s planned %d times", size, h, n)
			}
		}
	}
}

func TestPlanRejects(t *testing.T) {
	tests := []struct {
		name  string
		hosts []Host
		b     Batching
		want  string
	}{
		{"no hosts", nil, Batching{}, "plan: no hosts matched"},
		{"zero", zoned(2), Batching{BatchSize: "0"}, `batch_size: want a number of hosts or 1% to 100%, found "0"`},
		{"word", zoned(2), Batching{BatchSize: "all"}, `found "all"`},
		{"zero percent", zoned(2), Batching{BatchSize: "0%"}, `found "0%"`},
		{"over 100 percent", zoned(2), Batching{BatchSize: "101%"}, `found "101%"`},
		{"negative", zoned(2), Batching{BatchSize: "-1"}, `found "-1"`},
		{"bad zone fact", zoned(2), Batching{ZoneFact: "zone;rm"}, "zone_fact"},
		{"duplicate host", append(zoned(1), zoned(1)...), Batching{}, "plan: host web1 discovered twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(tt.hosts, tt.b)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Plan error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
