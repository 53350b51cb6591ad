package release

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []Item
	}{
		{"spaces", "web 1.4.2\napi 2.0-1", []Item{{"web", "1.4.2"}, {"api", "2.0-1"}}},
		{"equals", "web=1.4.2\napi = 1:2.0~rc1-3", []Item{{"web", "1.4.2"}, {"api", "1:2.0~rc1-3"}}},
		{"comments and blanks", "# deploy order matters\n\n  web 1\n\t# db last\r\ndb   5.7\r\n", []Item{{"web", "1"}, {"db", "5.7"}}},
		{"tabs", "web\t1.0", []Item{{"web", "1.0"}}},
		{"rpm names", "Python_3.x 3.11.4^20230601", []Item{{"Python_3.x", "3.11.4^20230601"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseManifest("  Release 42 ", tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if m.Title != "Release 42" {
				t.Errorf("title %q", m.Title)
			}
			if !reflect.DeepEqual(m.Items, tt.want) {
				t.Errorf("items %v, want %v", m.Items, tt.want)
			}
		})
	}
}

func TestParseManifestRejects(t *testing.T) {
	tests := []struct {
		name, body string
		line       int // 0: not a ParseError
		want       string
	}{
		{"one word", "web 1\napi\n", 2, "found 1 word:"},
		{"three words", "\n\nweb 1.0 now", 3, "found 3 words"},
		{"duplicate app", "web 1\n# again\nweb 2", 3, `app "web" is already listed on line 1`},
		{"duplicate app mixed forms", "web=1\nweb 1", 2, "already listed on line 1"},
		{"missing version", "web=", 1, "expected a version"},
		{"missing app", "=1.0", 1, "expected an app name"},
		{"space inside equals form", "my app=1.0", 1, "without spaces"},
		{"two equals", "web=1=2", 1, "without spaces"},
		{"leading dash app", "-rf 1.0", 1, `app name "-rf" is not valid`},
		{"leading dash version", "web -1", 1, `version "-1" is not valid`},
		{"shell metacharacter app", "web;reboot 1", 1, "is not valid"},
		{"shell metacharacter version", "web 1.0$(id)", 1, "is not valid"},
		{"backtick", "web `id`", 1, "is not valid"},
		{"path in app", "../web 1", 1, "is not valid"},
		{"too long app", strings.Repeat("a", 129) + " 1", 1, "is not valid"},
		{"empty", "\n# nothing\n", 0, "lists no app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest("Release", tt.body)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			var pe *ParseError
			if tt.line == 0 {
				if !errors.Is(err, ErrEmptyManifest) {
					t.Errorf("error %v, want ErrEmptyManifest", err)
				}
				return
			}
			if !errors.As(err, &pe) {
				t.Fatalf("error %T, want *ParseError", err)
			}
			if pe.Line != tt.line {
				t.Errorf("line %d, want %d", pe.Line, tt.line)
			}
			if !strings.HasPrefix(err.Error(), "manifest line ") {
				t.Errorf("error %q does not start with the line number", err)
			}
		})
	}
}

func TestParseManifestRejectsTitle(t *testing.T) {
	for _, title := range []string{"", "  ", "two\nlines"} {
		if _, err := ParseManifest(title, "web 1"); err == nil {
			t.Errorf("title %q accepted", title)
		}
	}
}

func TestParseManifestTooMany(t *testing.T) {
	var b strings.Builder
	for i := 0; i <= MaxItems; i++ {
		b.WriteString("app" + strconv.Itoa(i) + " 1\n")
	}
	_, err := ParseManifest("big", b.String())
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != MaxItems+1 {
		t.Fatalf("error %v, want a ParseError on line %d", err, MaxItems+1)
	}
}
