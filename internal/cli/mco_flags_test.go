package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/lab"
)

// The mco flags an MCollective user types by habit work against a real
// four-host lab.
func TestMcoFlags(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	env := map[string]string{"SIGNET_CONFIG": l.ClientConfig, "USER": "tester"}
	nodes := filepath.Join(t.TempDir(), "nodes.txt")
	os.WriteFile(nodes, []byte("# from the CMDB\nweb2\n\nweb4\n"), 0o600)
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(env)})
		return code, out.String(), errb.String()
	}
	hosts := func(stdout string) []string {
		var ids []string
		for _, line := range strings.Split(stdout, "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "web") {
				ids = append(ids, f[0])
			}
		}
		return ids
	}
	for _, tc := range []struct {
		args  []string
		hosts int
	}{
		{[]string{"ping", "--limit", "50%"}, 2},
		{[]string{"ping", "--limit", "10%"}, 1}, // rounds up: never zero hosts
		{[]string{"ping", "--limit", "3"}, 3},
		{[]string{"ping", "--one"}, 1},
		{[]string{"ping", "-1"}, 1},
		{[]string{"ping", "--dt", "1", "-t", "5"}, 4}, // seconds, as mco takes them
		{[]string{"ping", "--np"}, 4},
		{[]string{"ping", "--batch", "2", "--batch-sleep", "0.01"}, 4},
		{[]string{"ping", "--nodes", nodes}, 2},
		{[]string{"find"}, 4},
		{[]string{"rpc", "rpcutil", "ping", "--nodes", nodes, "--np"}, 2},
	} {
		code, stdout, stderr := run(tc.args...)
		if got := hosts(stdout); code != ExitOK || len(got) != tc.hosts {
			t.Errorf("signet %s: exit %d, hosts %v, want %d\nstderr %s", strings.Join(tc.args, " "), code, got, tc.hosts, stderr)
		}
	}
	code, stdout, _ := run("ping", "--nodes", nodes, "-j")
	var js struct {
		Results []struct{ Identity string } `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &js); code != ExitOK || err != nil || len(js.Results) != 2 || js.Results[0].Identity != "web2" {
		t.Errorf("ping -j: exit %d, %v, %s", code, err, stdout)
	}
	// On a terminal's stderr the reply count shows while replies arrive,
	// and not with --np.
	for _, np := range []bool{false, true} {
		master, slave := openPTY(t)
		var tty bytes.Buffer
		copied := make(chan struct{})
		go func() { io.Copy(&tty, master); close(copied) }()
		args := []string{"ping"}
		if np {
			args = append(args, "--np")
		}
		var out bytes.Buffer
		code := Main(context.Background(), args, IO{In: strings.NewReader(""), Out: &out, Err: slave, Getenv: envMap(env)})
		slave.Close()
		<-copied
		shown := strings.Contains(tty.String(), "rpcutil ping: 4 of 4 replies")
		if code != ExitOK || shown == np {
			t.Errorf("ping --np=%v on a terminal: exit %d, progress shown %v; stderr %q", np, code, shown, tty.String())
		}
		if strings.Contains(out.String(), "replies") {
			t.Errorf("progress went to stdout: %q", out.String())
		}
	}
	for _, bad := range [][]string{{"ping", "--limit", "0%"}, {"ping", "--limit", "150%"}, {"ping", "--limit", "half"},
		{"ping", "--nodes", filepath.Join(t.TempDir(), "none")}, {"ping", "--dt", "soon"}} {
		if code, _, stderr := run(bad...); code != ExitUsage {
			t.Errorf("signet %s: exit %d, want %d (stderr %s)", strings.Join(bad, " "), code, ExitUsage, stderr)
		}
	}
}

// The progress line counts replies as they arrive and is erased before
// the results print; it is off with --np and when stderr is not a
// terminal.
func TestProgress(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, true, "ping")
	p.result(bus.Result{Identity: "web1", Status: bus.ResultOK})
	p.targets(3)
	p.result(bus.Result{Identity: "web2", Status: bus.ResultFailed})
	p.done()
	got := buf.String()
	if !strings.Contains(got, "\rping: 1 replies") || !strings.Contains(got, "\rping: 2 of 3 replies (1 failed)") || !strings.HasSuffix(got, "\r\x1b[K") {
		t.Errorf("progress output %q", got)
	}
	buf.Reset()
	p = newProgress(&buf, false, "ping")
	p.result(bus.Result{Identity: "web1", Status: bus.ResultOK})
	p.done()
	if buf.Len() != 0 {
		t.Errorf("progress when off: %q", buf.String())
	}
	if progressOn(IO{Err: &buf}, false) {
		t.Error("progress on for a stderr that is not a terminal")
	}
	_ = time.Second
}
