package cli

import (
	"context"

	"github.com/signetbus/signet/internal/signetd"
)

// DaemonMain runs signetd (package signetd) with args and returns the exit
// code, for tests that drive both commands through this package. The
// signetd binary calls signetd.Main directly and does not link this
// package.
func DaemonMain(ctx context.Context, args []string, stdio IO) int {
	return signetd.Main(ctx, args, signetd.IO{Out: stdio.Out, Err: stdio.Err, Getenv: stdio.Getenv})
}
