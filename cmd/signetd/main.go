// Command signetd is the host responder. See internal/signetd and agents.
package main

import (
	"context"
	"os"

	"github.com/signetbus/signet/internal/signetd"
)

func main() {
	os.Exit(signetd.Main(context.Background(), os.Args[1:], signetd.StdIO()))
}
