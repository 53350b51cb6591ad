// Package promtext writes the Prometheus text exposition format, version
// 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/):
// one "# HELP" and one "# TYPE" line per metric family, then its samples,
// with label values and help text escaped.
//
// It exists so that `signet broker` can serve Prometheus metrics without
// linking the official client library into the operator CLI, whose every
// command pays for the init of every package the binary links (package
// metrics). It has no dependency beyond the standard library and no init
// work. It writes counters, gauges and untyped samples; no histograms.
package promtext

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ContentType is the HTTP Content-Type of the format this package writes.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Type is a metric family's type, as the TYPE line names it.
type Type string

const (
	Counter Type = "counter"
	Gauge   Type = "gauge"
	Untyped Type = "untyped"
)

// ErrInvalid is returned for a family that cannot be written as it is: a
// bad metric or label name, an unknown type, a name written twice or a
// counter whose name does not end in _total.
var ErrInvalid = errors.New("promtext: invalid metric")

// Label is one label of a sample.
type Label struct{ Name, Value string }

// Value is a sample's value: a float, or an exact unsigned integer (a
// counter beyond 2^53 keeps its every digit in the text).
type Value struct {
	f    float64
	u    uint64
	uint bool
}

// Float is a floating-point value; NaN and ±Inf are written as Prometheus
// spells them.
func Float(f float64) Value { return Value{f: f} }

// Uint is an exact unsigned integer value.
func Uint(u uint64) Value { return Value{u: u, uint: true} }

// Int is an integer value; a negative one is written as a float.
func Int(i int64) Value {
	if i < 0 {
		return Value{f: float64(i)}
	}
	return Uint(uint64(i))
}

// Bool is 1 for true and 0 for false.
func Bool(b bool) Value {
	if b {
		return Uint(1)
	}
	return Uint(0)
}

// Sample is one series of a family: its labels and value.
type Sample struct {
	Labels []Label
	Value  Value
}

// Family is one metric family: name, help text, type and samples. A
// family without samples is not written at all.
type Family struct {
	Name    string
	Help    string
	Type    Type
	Samples []Sample
}

// Write writes the families in the order given. Every family is checked
// before anything is written, so an invalid one writes nothing.
func Write(w io.Writer, fams []Family) error {
	seen := make(map[string]bool, len(fams))
	for i := range fams {
		if err := check(&fams[i]); err != nil {
			return err
		}
		if seen[fams[i].Name] {
			return fmt.Errorf("%w: family %q written twice", ErrInvalid, fams[i].Name)
		}
		seen[fams[i].Name] = true
	}
	bw := bufio.NewWriter(w)
	var buf []byte
	for _, f := range fams {
		if len(f.Samples) == 0 {
			continue
		}
		buf = append(buf[:0], "# HELP "...)
		buf = append(buf, f.Name...)
		buf = append(buf, ' ')
		buf = appendHelp(buf, f.Help)
		buf = append(buf, "\n# TYPE "...)
		buf = append(buf, f.Name...)
		buf = append(buf, ' ')
		buf = append(buf, f.Type...)
		buf = append(buf, '\n')
		for _, s := range f.Samples {
			buf = append(buf, f.Name...)
			if len(s.Labels) > 0 {
				buf = append(buf, '{')
				for j, l := range s.Labels {
					if j > 0 {
						buf = append(buf, ',')
					}
					buf = append(buf, l.Name...)
					buf = append(buf, `="`...)
					buf = appendLabelValue(buf, l.Value)
					buf = append(buf, '"')
				}
				buf = append(buf, '}')
			}
			buf = append(buf, ' ')
			buf = AppendValue(buf, s.Value)
			buf = append(buf, '\n')
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func check(f *Family) error {
	if !validMetricName(f.Name) {
		return fmt.Errorf("%w: metric name %q", ErrInvalid, f.Name)
	}
	switch f.Type {
	case Counter:
		if !strings.HasSuffix(f.Name, "_total") {
			return fmt.Errorf("%w: counter %q does not end in _total", ErrInvalid, f.Name)
		}
	case Gauge, Untyped:
	default:
		return fmt.Errorf("%w: %q has type %q (want counter, gauge or untyped)", ErrInvalid, f.Name, f.Type)
	}
	for _, s := range f.Samples {
		for j, l := range s.Labels {
			if !validLabelName(l.Name) {
				return fmt.Errorf("%w: %q has label name %q", ErrInvalid, f.Name, l.Name)
			}
			for _, k := range s.Labels[:j] {
				if k.Name == l.Name {
					return fmt.Errorf("%w: %q has label %q twice", ErrInvalid, f.Name, l.Name)
				}
			}
		}
		if f.Type == Counter && !s.Value.uint && (s.Value.f < 0 || math.IsNaN(s.Value.f)) {
			return fmt.Errorf("%w: counter %q has value %v", ErrInvalid, f.Name, s.Value.f)
		}
	}
	return nil
}

// validMetricName: [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// validLabelName: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved
// for Prometheus' own use).
func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// appendHelp escapes help text: backslash and line feed.
func appendHelp(b []byte, s string) []byte {
	for _, r := range toValidUTF8(s) {
		switch r {
		case '\\':
			b = append(b, `\\`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return b
}

// appendLabelValue escapes a label value: backslash, double quote and line
// feed. Bytes that are not UTF-8 (a remote server's name can hold any)
// become U+FFFD, which Prometheus accepts.
func appendLabelValue(b []byte, s string) []byte {
	for _, r := range toValidUTF8(s) {
		switch r {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return b
}

func toValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// AppendValue appends v as the format spells numbers: an exact integer,
// the shortest float that reads back the same, NaN, +Inf or -Inf.
func AppendValue(b []byte, v Value) []byte {
	if v.uint {
		return strconv.AppendUint(b, v.u, 10)
	}
	f := v.f
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	case f == math.Trunc(f) && math.Abs(f) < 1e15:
		return strconv.AppendFloat(b, f, 'f', -1, 64) // 1000000, not 1e+06
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
