package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/testio"
)

// TestClientConfigProtocol: `protocol:` in the client config signs in the
// previous protocol, which this release's hosts (a lab of real responders)
// still serve; a protocol this signet does not speak is a config error
// naming both versions.
func TestClientConfigProtocol(t *testing.T) {
	l := statusLab(t)
	base, err := os.ReadFile(l.ClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	write := func(v int) string {
		p := filepath.Join(l.Dir, fmt.Sprintf("client-protocol-%d.yaml", v)) // beside the lab's key and known_hosts
		if err := os.WriteFile(p, append(base, fmt.Sprintf("\nprotocol: %d\n", v)...), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(cfg string, args ...string) (int, string, string) {
		var out, errb testio.Buffer
		code := Main(context.Background(), append([]string{"--config", cfg}, args...),
			IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(string) string { return "" }})
		return code, out.String(), errb.String()
	}
	code, out, errOut := run(write(bus.MinProtocolVersion), "ping")
	if code != ExitOK || strings.Count(out, "\tok\t") != 3 {
		t.Fatalf("protocol %d: exit %d\n%s\n%s", bus.MinProtocolVersion, code, out, errOut)
	}
	code, out, errOut = run(write(bus.ProtocolVersion+1), "ping")
	want := fmt.Sprintf("config: protocol: bus: unsupported protocol version: cannot sign in protocol %d, this signet speaks protocols %d to %d",
		bus.ProtocolVersion+1, bus.MinProtocolVersion, bus.ProtocolVersion)
	if code != ExitUsage || !strings.Contains(errOut, want) {
		t.Fatalf("protocol %d: exit %d, want %d and %q\n%s%s", bus.ProtocolVersion+1, code, ExitUsage, want, out, errOut)
	}
}
