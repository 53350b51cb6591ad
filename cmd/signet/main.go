// Command signet is the operator's CLI: it signs requests and collects
// verified replies. See internal/cli.
package main

import (
	"context"
	"os"

	"github.com/signetbus/signet/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], cli.StdIO()))
}
