package control_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/bus/control"
)

// TestNewestFromHosts: the base recovered from the hosts is the highest
// seq among the frames that verify and that the admin trusts; a frame of
// another key, junk, another kind or collective is skipped and named;
// of two documents with the same seq, the one more hosts hold wins (a
// host answering with the document of an admin who lost a race cannot
// make the next one drop the winner's entries).
func TestNewestFromHosts(t *testing.T) {
	admin, mallory := newSigner(t), newSigner(t)
	sign := func(t *testing.T, by string, seq uint64, kind, collective string) []byte {
		t.Helper()
		s := admin
		if by == "mallory" {
			s = mallory
		}
		f, err := control.Sign(rand.Reader, s, &control.Document{Kind: kind, Collective: collective, Seq: seq, Issued: time.Now().UnixMilli(), By: by})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	trust := func(sd *control.Signed) error {
		if string(sd.KeyBlob) != string(admin.PublicKey().Marshal()) {
			return errors.New("not an admin you trust")
		}
		return nil
	}
	winner, loser := sign(t, "winner", 5, control.KindLocks, "t"), sign(t, "loser", 5, control.KindLocks, "t")
	states := []control.HostState{
		{Identity: "h1", Frames: map[string][]byte{control.KindLocks: loser}},
		{Identity: "h2", Frames: map[string][]byte{control.KindLocks: winner}},
		{Identity: "h3", Frames: map[string][]byte{control.KindLocks: winner}},
		{Identity: "h4", Frames: map[string][]byte{control.KindLocks: sign(t, "mallory", 99, control.KindLocks, "t")}},
		{Identity: "h5", Frames: map[string][]byte{control.KindLocks: []byte(`{"junk":1}`)}},
		{Identity: "h6", Frames: map[string][]byte{control.KindLocks: sign(t, "admin", 50, control.KindLocks, "other")}},
		{Identity: "h7", Frames: map[string][]byte{control.KindLocks: sign(t, "admin", 3, control.KindLocks, "t")}},
		{Identity: "h8", Frames: map[string][]byte{}},
	}
	rc, err := control.Newest(context.Background(), func(context.Context) ([]control.HostState, int, error) { return states, 9, nil },
		control.KindLocks, "t", trust)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Base == nil || rc.Base.Doc.By != "winner" || rc.Holding != 2 || rc.Answered != 8 || rc.Asked != 9 {
		t.Fatalf("recovered %s (by %v)", rc, rc.Base)
	}
	if len(rc.Skipped) != 3 || !strings.Contains(strings.Join(rc.Skipped, "; "), "host h4: not an admin you trust") {
		t.Fatalf("skipped %q", rc.Skipped)
	}
	if want := "seq 5 signed by "; !strings.HasPrefix(rc.String(), want) || !strings.Contains(rc.String(), "held by 2 of 8 answering hosts (9 asked)") {
		t.Fatalf("String %q", rc.String())
	}
}
