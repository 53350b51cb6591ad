package promtext

import (
	"bytes"
	"errors"
	"math"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestAppendValue(t *testing.T) {
	for _, c := range []struct {
		v    Value
		want string
	}{
		{Float(math.NaN()), "NaN"},
		{Float(math.Inf(1)), "+Inf"},
		{Float(math.Inf(-1)), "-Inf"},
		{Float(0), "0"},
		{Float(1.5), "1.5"},
		{Float(-2), "-2"},
		{Float(1e6), "1000000"},
		{Float(0.1), "0.1"},
		{Float(1e300), "1e+300"},
		{Float(1.25e-7), "1.25e-07"},
		{Float(1 << 60), "1.152921504606847e+18"},
		{Uint(math.MaxUint64), "18446744073709551615"},
		{Uint(1<<53 + 1), "9007199254740993"}, // not representable as a float64: kept exact
		{Int(-7), "-7"},
		{Int(math.MaxInt64), "9223372036854775807"},
		{Bool(true), "1"},
		{Bool(false), "0"},
	} {
		if got := string(AppendValue(nil, c.v)); got != c.want {
			t.Errorf("AppendValue(%+v) = %q, want %q", c.v, got, c.want)
		}
	}
}

// TestEscaping writes every character the format escapes, and bytes that
// are not UTF-8, and reads the text back with Prometheus' own parser.
func TestEscaping(t *testing.T) {
	var b bytes.Buffer
	err := Write(&b, []Family{{
		Name: "test_escapes_total", Help: "back\\slash, \"quotes\" kept,\nnew line", Type: Counter,
		Samples: []Sample{
			{Labels: []Label{{"remote", `a\b"c` + "\nd"}, {"kind", "route"}}, Value: Uint(3)},
			{Labels: []Label{{"remote", "bad\xffutf8"}, {"kind", ""}}, Value: Uint(1<<53 + 1)},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `# HELP test_escapes_total back\\slash, "quotes" kept,\nnew line
# TYPE test_escapes_total counter
test_escapes_total{remote="a\\b\"c\nd",kind="route"} 3
test_escapes_total{remote="bad` + "\uFFFD" + `utf8",kind=""} 9007199254740993
`
	if b.String() != want {
		t.Fatalf("wrote\n%s\nwant\n%s", b.String(), want)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("Prometheus' parser refuses it: %v", err)
	}
	f := fams["test_escapes_total"]
	if f.GetHelp() != "back\\slash, \"quotes\" kept,\nnew line" {
		t.Errorf("help read back as %q", f.GetHelp())
	}
	for _, l := range f.GetMetric()[0].GetLabel() {
		if l.GetName() == "remote" && l.GetValue() != `a\b"c`+"\nd" {
			t.Errorf("label read back as %q", l.GetValue())
		}
	}
}

func TestSpecialValuesParse(t *testing.T) {
	var b bytes.Buffer
	err := Write(&b, []Family{{Name: "test_gauge", Help: "h", Type: Gauge, Samples: []Sample{
		{Labels: []Label{{"v", "nan"}}, Value: Float(math.NaN())},
		{Labels: []Label{{"v", "inf"}}, Value: Float(math.Inf(1))},
		{Labels: []Label{{"v", "-inf"}}, Value: Float(math.Inf(-1))},
		{Labels: []Label{{"v", "big"}}, Value: Uint(math.MaxUint64)},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&b)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, m := range fams["test_gauge"].GetMetric() {
		got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	if !math.IsNaN(got["nan"]) || !math.IsInf(got["inf"], 1) || !math.IsInf(got["-inf"], -1) || got["big"] != math.MaxUint64 {
		t.Errorf("read back %v", got)
	}
}

func TestWriteRefusesInvalid(t *testing.T) {
	for _, f := range [][]Family{
		{{Name: "1bad", Type: Gauge, Samples: []Sample{{}}}},
		{{Name: "bad-name", Type: Gauge, Samples: []Sample{{}}}},
		{{Name: "", Type: Gauge}},
		{{Name: "x_requests", Type: Counter, Samples: []Sample{{}}}},
		{{Name: "x_total", Type: "histogram"}},
		{{Name: "x", Type: Gauge, Samples: []Sample{{Labels: []Label{{"__name__", "y"}}}}}},
		{{Name: "x", Type: Gauge, Samples: []Sample{{Labels: []Label{{"a-b", "y"}}}}}},
		{{Name: "x", Type: Gauge, Samples: []Sample{{Labels: []Label{{"a", "1"}, {"a", "2"}}}}}},
		{{Name: "x_total", Type: Counter, Samples: []Sample{{Value: Float(-1)}}}},
		{{Name: "x_total", Type: Counter, Samples: []Sample{{Value: Float(math.NaN())}}}},
		{{Name: "x", Type: Gauge}, {Name: "x", Type: Gauge}},
	} {
		var b bytes.Buffer
		if err := Write(&b, f); !errors.Is(err, ErrInvalid) || b.Len() != 0 {
			t.Errorf("Write(%+v) = %v, wrote %q; want ErrInvalid and nothing written", f, err, b.String())
		}
	}
}

func TestEmptyFamilyNotWritten(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, []Family{{Name: "x", Help: "h", Type: Gauge}}); err != nil || b.Len() != 0 {
		t.Errorf("Write = %v, %q", err, b.String())
	}
}

// TestPromtoolAcceptsOutput runs Prometheus' own linter, `promtool check
// metrics`, over a sample of everything the writer produces.
func TestPromtoolAcceptsOutput(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; CI installs it)")
	}
	var b bytes.Buffer
	err = Write(&b, []Family{
		{Name: "test_messages_received_total", Help: "Messages received.", Type: Counter, Samples: []Sample{{Value: Uint(math.MaxUint64)}}},
		{Name: "test_storage_used_bytes", Help: "Storage used, in bytes.", Type: Gauge, Samples: []Sample{
			{Labels: []Label{{"remote", `we"ird\` + "\n"}}, Value: Float(math.Inf(1))},
			{Labels: []Label{{"remote", "nan"}}, Value: Float(math.NaN())},
		}},
		{Name: "test_info", Help: "Build information.", Type: Gauge, Samples: []Sample{{Labels: []Label{{"version", "2.15.2"}}, Value: Bool(true)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &b
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
