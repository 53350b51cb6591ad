package bus

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/wire"
)

func seedFrames(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.frame")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseRequest feeds arbitrary bytes to the request decoder a responder
// runs on everything it receives: it must never panic, and any frame it
// accepts must re-frame to the same bytes.
func FuzzParseRequest(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		req, o, err := ParseRequest(b)
		if req == nil {
			return
		}
		if !bytes.Equal(o.Envelope.Marshal(), b) {
			t.Fatal("envelope does not re-frame to the same bytes")
		}
		if err == nil {
			// The decoded request must survive a JSON round trip.
			if _, err := json.Marshal(req); err != nil {
				t.Fatal(err)
			}
			req.Filter.Compile()
		}
	})
}

// FuzzParseReply does the same for the client's reply decoder.
func FuzzParseReply(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, o, _ := ParseReply(b)
		if rep == nil {
			return
		}
		if !bytes.Equal(o.Envelope.Marshal(), b) {
			t.Fatal("envelope does not re-frame to the same bytes")
		}
	})
}

// FuzzFilter compiles and matches filters taken from requests.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{"zone=a", "n>=3", "os=~^deb", "zone=a and (env=dev or not web)", "((", "a=/[/", "x<y"} {
		f.Add(s)
	}
	node := &Node{Identity: "web1", Facts: map[string]string{"zone": "a", "n": "3"}, Classes: []string{"web"}, Agents: []string{"rpcutil"}}
	f.Fuzz(func(t *testing.T, s string) {
		for _, flt := range []Filter{{Compound: s}, {Fact: []string{s}}, {Identity: []string{s}}, {Class: []string{s}}} {
			if m, err := flt.Compile(); err == nil {
				m.Match(node)
			}
		}
	})
}

var update = flag.Bool("update", false, "rewrite testdata/*.frame")

// TestSeedFrames keeps testdata/*.frame, the fuzz seeds, in step with the
// codec: go test ./bus -run TestSeedFrames -update rewrites them.
func TestSeedFrames(t *testing.T) {
	if !*update {
		files, _ := filepath.Glob("testdata/*.frame")
		if len(files) < 2 {
			t.Fatal("fuzz seeds missing: run go test ./bus -run TestSeedFrames -update")
		}
		for _, p := range files {
			b, _ := os.ReadFile(p)
			if _, err := wire.Parse(b); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
		}
		return
	}
	op := newSigner(t)
	req := baseRequest(nil, op)
	req.Filter = Filter{Fact: []string{"zone=a"}, Compound: "env=prod and not db"}
	req.Created = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).UnixMilli()
	b, _ := SignRequest(op, req)
	os.WriteFile("testdata/request.frame", b, 0o644)
	b, _ = SignReply(op, &Reply{Version: 1, RequestID: req.ID, Identity: "web1", Status: StatusOK, Summary: "pong", Data: map[string]any{"n": 1}})
	os.WriteFile("testdata/reply.frame", b, 0o644)
}
