package cli

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Every signet run pays for building its command tree before it does
// anything. Main builds only the command the arguments name, so
// `signet --version` and `signet ping` do not allocate every other
// command and its flags. Allocations, not wall clock: a loaded machine
// cannot fail this.
func TestStartBuildsOnlyTheNamedCommand(t *testing.T) {
	stdio := IO{Out: io.Discard, Err: io.Discard, Getenv: func(string) string { return "" }}
	for _, args := range [][]string{{"--version"}, {"ping", "--help"}, {"--env", "prod", "-j", "rpc", "--help"}} {
		whole := testing.AllocsPerRun(5, func() {
			c := Command(stdio)
			c.SetArgs(args)
			c.SetOut(io.Discard)
			_ = c.Execute()
		})
		got := testing.AllocsPerRun(5, func() { Main(context.Background(), args, stdio) })
		if got > whole/2 {
			t.Errorf("signet %s allocates %.0f times, the whole tree %.0f: build only the command it names",
				strings.Join(args, " "), got, whole)
		}
	}
}

// The tree Main builds for one command behaves as the whole tree: every
// command's help, and the errors of a wrong command line, are the same.
func TestLazyTreeMatchesTheWholeTree(t *testing.T) {
	getenv := func(string) string { return "" }
	whole := func(args []string) (int, string, string) {
		var out, errb bytes.Buffer
		c := Command(IO{Out: &out, Err: &errb, Getenv: getenv})
		c.SetArgs(args)
		c.SetOut(&out)
		c.SetErr(&errb)
		return exitCode(c.ExecuteContext(context.Background()), &errb, "signet"), out.String(), errb.String()
	}
	lazy := func(args []string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, IO{Out: &out, Err: &errb, Getenv: getenv})
		return code, out.String(), errb.String()
	}
	cases := [][]string{
		{}, {"--help"}, {"help"}, {"help", "ping"}, {"--version"}, {"-v"}, {"pnig"}, {"--env"},
		{"ping", "--bogus"}, {"rpc", "--help", "--env", "dev"}, {"--config", "x.yaml", "find", "--help"},
		{"-j", "--", "ping"}, {"completion", "--help"}, {"__complete", "pi"}, {"broker", "init", "--help"},
		{"--config=x.yaml", "ping", "--help"}, {"--env", "ping", "status", "--help"}, {"-jv"}, {"-I", "web1", "ping"},
	}
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, s := range c.Commands() {
			p := append(slices.Clone(path), s.Name())
			cases = append(cases, append(slices.Clone(p), "--help"))
			for _, a := range s.Aliases {
				cases = append(cases, append(append(slices.Clone(path), a), "--help"))
			}
			walk(s, p)
		}
	}
	walk(Command(IO{Out: io.Discard, Err: io.Discard, Getenv: getenv}), nil)
	for _, args := range cases {
		wc, wout, werr := whole(args)
		lc, lout, lerr := lazy(args)
		if wc != lc || wout != lout || werr != lerr {
			t.Errorf("signet %q: the whole tree gives exit %d\n%s%s\nMain gives exit %d\n%s%s", args, wc, wout, werr, lc, lout, lerr)
		}
	}
}

// The command list names each command as the command itself does, so that
// Main finds it by name or alias without building the others.
func TestCommandListNamesItsCommands(t *testing.T) {
	g := &globalOptions{io: &IO{Out: io.Discard, Err: io.Discard, Getenv: func(string) string { return "" }}}
	for _, e := range commandList {
		c := e.build(g)
		if c.Name() != e.name || !slices.Equal(c.Aliases, e.aliases) {
			t.Errorf("commandList entry %q %v builds %q %v", e.name, e.aliases, c.Name(), c.Aliases)
		}
	}
}
