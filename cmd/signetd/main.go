// Command signetd is the host responder. See internal/cli and agents.
package main

import (
	"context"
	"os"

	"github.com/signetbus/signet/internal/cli"
)

func main() {
	os.Exit(cli.DaemonMain(context.Background(), os.Args[1:], cli.StdIO()))
}
