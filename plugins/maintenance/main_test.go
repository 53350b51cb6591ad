package maintenance

import (
	"os"
	"testing"
	"time"
)

// TestMain shortens the retry backoff: tests of unreachable backends
// retry, and must stay fast.
func TestMain(m *testing.M) {
	retryBackoff = time.Millisecond
	os.Exit(m.Run())
}
