package wire

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	e := &Envelope{Kind: KindRequest, Payload: []byte(`{"v":1}`), Sig: []byte("sig")}
	b := e.Marshal()
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != e.Kind || !bytes.Equal(got.Payload, e.Payload) || !bytes.Equal(got.Sig, e.Sig) {
		t.Fatalf("got %+v", got)
	}
}

func TestParseErrors(t *testing.T) {
	good := (&Envelope{Kind: KindReply, Payload: []byte("abc"), Sig: []byte("de")}).Marshal()
	cases := []struct {
		name string
		b    []byte
		off  int
	}{
		{"empty", nil, 0},
		{"bad magic", append([]byte("XGNT"), good[4:]...), 0},
		{"bad version", append(append([]byte("SGNT"), 9), good[5:]...), 4},
		{"bad kind", append(append([]byte("SGNT"), 1, 'Z'), good[6:]...), 5},
		{"payload overrun", append(good[:6:6], 0, 0, 1, 0), 6},
		{"truncated", good[:len(good)-1], 13},
		{"trailing", append(append([]byte{}, good...), 0), len(good)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.b)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ParseError", err)
			}
			if pe.Offset != c.off {
				t.Errorf("offset = %d, want %d (%v)", pe.Offset, c.off, err)
			}
		})
	}
}

// FuzzParse requires that any frame Parse accepts marshals back to exactly
// the same bytes: there is one encoding of each envelope, so a signature
// cannot be carried by two different frames.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.bin")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add((&Envelope{Kind: KindRequest, Payload: []byte(`{}`), Sig: []byte{1, 2}}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			return
		}
		if !bytes.Equal(e.Marshal(), b) {
			t.Fatalf("parse/marshal is not the identity for %x", b)
		}
	})
}
