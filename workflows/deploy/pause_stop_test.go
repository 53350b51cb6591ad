package deploy

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

// stopAfterFirstBatch closes soft a little after the run reports its
// first batch done: while the run waits out the pause before the next.
type stopAfterFirstBatch struct {
	soft chan struct{}
	once sync.Once
}

func (w *stopAfterFirstBatch) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`"type":"batch_done"`)) {
		w.once.Do(func() { time.AfterFunc(300*time.Millisecond, func() { close(w.soft) }) })
	}
	return len(p), nil
}

// A soft stop (the first Ctrl-C) during the pause before the last batch
// stops the run resumably; it used to end the loop with the run "done"
// and the last batch never deployed, so --resume refused it as done.
// (Found by test/e2e approval_release.txtar.)
func TestSoftStopDuringThePauseBeforeTheLastBatch(t *testing.T) {
	f := fleettest.New([]string{"web1", "web2"}, []string{"a", "b"})
	store := workflows.NewMemStore()
	o := opts(t, f, store, nil)
	o.App.Pause, o.App.BatchSize = time.Hour, "1"
	w := &stopAfterFirstBatch{soft: make(chan struct{})}
	o.Output = w
	recap, err := Run(context.Background(), w.soft, o)
	if !errors.Is(err, workflows.ErrStopped) || recap == nil || recap.Status != workflows.StatusStopped {
		t.Fatalf("soft stop in the pause: %v, recap %+v", err, recap)
	}
	if f.Node("web1").Installed != "1.4.2" || f.Node("web2").Installed == "1.4.2" {
		t.Fatalf("web1 %s, web2 %s: want only the first batch deployed", f.Node("web1").Installed, f.Node("web2").Installed)
	}
	o.Output, o.App.Pause = &bytes.Buffer{}, 0
	if recap, err = Resume(context.Background(), nil, recap.Run, o); err != nil || recap.Status != workflows.StatusDone {
		t.Fatalf("resume: %v", err)
	}
	if f.Node("web2").Installed != "1.4.2" {
		t.Fatal("the resumed run did not deploy the last batch")
	}
}
