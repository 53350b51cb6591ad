package deploy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/workflows"
)

// TestResumeRefusesForeignState: a broker user rewrites a stopped run's
// state (another version) or writes one signed with their own key.
// `signet deploy --resume` must refuse both, say why with a hint, and
// send nothing to any host. Before run state was signed, the resume
// signed package updates to the attacker's version.
func TestResumeRefusesForeignState(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	ctx := testCtx(t)
	batches := plan(t, s, op, "1.1")
	st := workflows.NewRunState("deploy", batches, map[string]string{"version": "1.1", "env": s.Env, "app": s.App})
	st.App, st.Env, st.Version, st.User, st.Status = s.App, s.Env, "1.1", deployUser, workflows.StatusStopped
	if err := op.Store.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(op.Conn)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "signet_runs")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	mallory, _ := ssh.NewSignerFromKey(priv)
	foreign, err := workflows.SealRunState(mallory, st)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		value []byte
		want  string
	}{
		"tampered":          {bytes.ReplaceAll(e.Value(), []byte(`"version":"1.1"`), []byte(`"version":"6.6"`)), "changed after it was written"},
		"signed by mallory": {foreign, "not allowed to resume"},
	} {
		t.Run(name, func(t *testing.T) {
			if bytes.Equal(tc.value, e.Value()) {
				t.Fatal("the test did not change the state")
			}
			if _, err := kv.Put(ctx, st.ID, tc.value); err != nil {
				t.Fatal(err)
			}
			before := auditSizes(t, s)
			code, stdout, stderr := signet(t, s, nil, "deploy", "--resume", st.ID, "--yes", "--env", s.Env)
			if code == 0 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "hint:") {
				t.Fatalf("resume of a %s state: exit %d, stderr %q, stdout %q: want refused saying %q with a hint", name, code, stderr, stdout, tc.want)
			}
			if after := auditSizes(t, s); !equalSizes(before, after) {
				t.Errorf("audit logs grew on a refused resume: %v -> %v", before, after)
			}
		})
	}
}

func equalSizes(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
