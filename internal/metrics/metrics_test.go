package metrics

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestCheckListen(t *testing.T) {
	for _, c := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:9464", false, true},
		{"127.0.0.2:9464", false, true},
		{"[::1]:9464", false, true},
		{"localhost:9464", false, true},
		{"0.0.0.0:9464", false, false},
		{":9464", false, false},
		{"[::]:9464", false, false},
		{"10.0.0.5:9464", false, false},
		{"metrics.example.com:9464", false, false},
		{"0.0.0.0:9464", true, true},
		{"127.0.0.1", false, false},
		{"127.0.0.1:http", false, false},
		{"127.0.0.1:70000", false, false},
	} {
		err := CheckListen(c.addr, c.remote)
		if (err == nil) != c.ok {
			t.Errorf("CheckListen(%q, %v) = %v, want ok=%v", c.addr, c.remote, err, c.ok)
		}
		if err != nil && !c.ok && strings.Contains(c.addr, ":9464") && !c.remote && !errors.Is(err, ErrNotLoopback) {
			t.Errorf("CheckListen(%q): %v is not ErrNotLoopback", c.addr, err)
		}
	}
}

// TestOperatorCLIDoesNotLinkPrometheus: every signet command pays for the
// init of every package the binary links, and the client library's (with
// procfs and protobuf) costs about 1 ms and 225 kB; only signetd links it.
func TestOperatorCLIDoesNotLinkPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, c := range []struct {
		cmd  string
		want bool
	}{{"signet", false}, {"signetd", true}} {
		out, err := exec.Command("go", "list", "-deps", "../../cmd/"+c.cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		if got := strings.Contains(string(out), "github.com/prometheus/client_golang/prometheus\n"); got != c.want {
			t.Errorf("%s links the Prometheus client library: %v, want %v", c.cmd, got, c.want)
		}
	}
}
