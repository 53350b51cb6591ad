package packaging

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// unitLine returns the words of the first KEY= line of a unit file.
func unitLine(t *testing.T, unit, key string) []string {
	t.Helper()
	for _, l := range strings.Split(string(readFile(t, unit)), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("%s has no %s= line", unit, key)
	return nil
}

// envValue returns VAR's value in an EnvironmentFile (one VAR="..." line).
func envValue(t *testing.T, file, name string) string {
	t.Helper()
	for _, l := range strings.Split(string(readFile(t, file)), "\n") {
		if v, ok := strings.CutPrefix(l, name+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	t.Fatalf("%s sets no %s", file, name)
	return ""
}

// startBrokerAsUnit runs the signet-broker unit's ExecStart as systemd
// would expand it, with the packaged broker.env (on a free port instead of
// 4222): the flags in both files must be ones `signet broker` takes, and
// the broker must serve JetStream from the state directory.
func startBrokerAsUnit(t *testing.T, root string) {
	argv := unitLine(t, filepath.Join(root, "usr/lib/systemd/system/signet-broker.service"), "ExecStart")
	args := strings.Fields(envValue(t, filepath.Join(root, "etc/signet/broker.env"), "SIGNET_BROKER_ARGS"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	for i := 1; i < len(args); i++ {
		if args[i-1] == "--port" {
			args[i] = port
		}
	}
	state := t.TempDir()
	var cmdline []string
	for _, w := range argv {
		switch {
		case w == "$SIGNET_BROKER_ARGS": // unbraced: systemd splits it into words
			cmdline = append(cmdline, args...)
		case strings.HasPrefix(w, "/usr/bin/"):
			cmdline = append(cmdline, filepath.Join(root, w))
		default:
			cmdline = append(cmdline, strings.ReplaceAll(w, "%S", state)) // %S: /var/lib
		}
	}
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no HOME: a DynamicUser has none
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var seen strings.Builder
		for sc.Scan() {
			seen.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "broker listening") {
				ready <- ""
				return
			}
		}
		ready <- seen.String()
	}()
	select {
	case out := <-ready:
		if out != "" {
			t.Fatalf("%v did not start:\n%s", cmdline, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%v: no \"broker listening\" within 30s", cmdline)
	}
	nc, err := nats.Connect("nats://127.0.0.1:" + port)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(); err != nil {
		t.Errorf("the broker started by the unit's command line has no JetStream: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "signet-broker")); err != nil {
		t.Errorf("the JetStream store is not in the state directory: %v", err)
	}
}
