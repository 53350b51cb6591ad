package control_test

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/signetbus/signet/bus/control"
)

// FuzzOpen: control documents arrive from the broker; Open must never
// panic, and whatever it accepts must be a valid document.
func FuzzOpen(f *testing.F) {
	s := newSigner(&testing.T{})
	frame, err := control.Sign(rand.Reader, s, &control.Document{Kind: control.KindLocks, Collective: "t", Seq: 1, Issued: time.Now().UnixMilli(),
		Locks: []control.Lock{{ID: "L1", Scope: control.Scope{Fact: "env=prod"}, Reason: "r"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(frame)
	f.Add([]byte(`{"payload":"","sig":""}`))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, err := control.Open(b)
		if err != nil {
			return
		}
		if err := sd.Doc.Check(); err != nil {
			t.Fatalf("Open accepted an invalid document: %v", err)
		}
	})
}
