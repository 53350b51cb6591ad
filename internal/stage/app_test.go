package stage

import (
	"os"
	"testing"
)

// TestMain makes this test binary the demo app when the stage's run
// script starts it as `BINARY demo app PATH` (what stagetest does for
// other packages; this one cannot import stagetest).
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "demo" && os.Args[2] == "app" {
		os.Exit(AppMain(os.Args[3]))
	}
	os.Exit(m.Run())
}

// testAppCommand is Options.AppCommand for this test binary.
func testAppCommand(t *testing.T) []string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe, "demo", "app"}
}

// TestNoAppCommandSandboxesService: without a program to run the app,
// the stage does not guess one (it used to re-run whatever binary it was
// in, through an environment variable).
func TestNoAppCommandSandboxesService(t *testing.T) {
	s := &Stage{Backends: map[string]string{BackendService: "real: runit"}}
	if err := s.useAppCommand(nil); err != nil {
		t.Fatal(err)
	}
	if got := s.Backends[BackendService]; got != "sandbox: no program to run the demo app under runit (Options.AppCommand)" {
		t.Fatalf("service backend %q, want sandboxed", got)
	}
	s = &Stage{Backends: map[string]string{BackendService: "real: runit"}}
	if err := s.useAppCommand([]string{"/bin/signet", "demo", "app"}); err != nil || s.runScript == "" || !s.Real(BackendService) {
		t.Fatalf("with an app command: %v, %q, %v", err, s.runScript, s.Backends)
	}
}

func TestAppRunScriptQuotes(t *testing.T) {
	got, err := appRunScript([]string{"/opt/it's here/signet", "demo", "app"})
	if err != nil {
		t.Fatal(err)
	}
	want := "#!/bin/sh\nexec 2>&1\nexec '/opt/it'\\''s here/signet' 'demo' 'app' ./app.json\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := appRunScript([]string{"a\nb"}); err == nil {
		t.Fatal("accepted a newline")
	}
}
