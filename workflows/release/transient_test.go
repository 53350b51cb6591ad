package release

import (
	"context"
	"strings"
	"testing"
	"time"
)

func shortBackoff(t *testing.T) {
	old := retryBackoff
	retryBackoff = time.Millisecond
	t.Cleanup(func() { retryBackoff = old })
}

// A Jira behind a restarting proxy (502 twice on reading the ticket) and a
// rate-limited chat (429 on the first post) no longer abort the release:
// the reads are retried, and the refused post is sent again, once.
func TestRunRidesOverTransientHTTPErrors(t *testing.T) {
	shortBackoff(t)
	f := newFixture(t, threeApps)
	f.jira.FailGets(2, 502)
	f.chat.FailNext(1, 429)
	if err := Run(context.Background(), f.opts); err != nil {
		t.Fatalf("release aborted by a transient error: %v", err)
	}
	if got := f.deploy.Calls(); len(got) != 4 {
		t.Errorf("deployer calls %q, want refresh and 3 deploys", got)
	}
	texts := f.chat.Texts()
	if len(texts) != 8 || !strings.HasPrefix(texts[0], "release started") || strings.HasPrefix(texts[1], "release started") {
		t.Errorf("chat messages (the first must be posted exactly once):\n%s", strings.Join(texts, "\n"))
	}
	if got := f.jira.Transitions(); len(got) != 1 {
		t.Errorf("transitions %q, want the ticket closed", got)
	}
}

// A 502 from the chat webhook may come after the message went through, so
// it is not posted again: the release stops before touching hosts, as for
// any chat failure, and says it tried once.
func TestRunDoesNotRepostAfterChat502(t *testing.T) {
	shortBackoff(t)
	f := newFixture(t, threeApps)
	f.chat.FailNext(1, 502)
	err := Run(context.Background(), f.opts)
	if err == nil || !strings.Contains(err.Error(), "unexpected status 502") || strings.Contains(err.Error(), "attempts") {
		t.Fatalf("err = %v, want the 502 after a single attempt", err)
	}
	if c := f.deploy.Calls(); len(c) != 0 {
		t.Errorf("deployer called %q", c)
	}
}
