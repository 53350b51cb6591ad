package command

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRunArgvIsNotAShell(t *testing.T) {
	// The metacharacters reach the program as one literal argument.
	res, err := Run(context.Background(), Spec{Argv: []string{"echo", "a; rm -rf / $(id) `id` | cat"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(res.Stdout), "a; rm -rf / $(id) `id` | cat"; got != want {
		t.Fatalf("stdout = %q, want %q", got, want)
	}
}

func TestRunCleanEnvironment(t *testing.T) {
	t.Setenv("SIGNET_SECRET_TEST", "hunter2")
	res, err := Run(context.Background(), Spec{Argv: []string{"env"}, ExtraEnv: []string{"EXTRA=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(res.Stdout, "hunter2") {
		t.Fatal("the caller's environment leaked into the program")
	}
	for _, want := range []string{"LC_ALL=C", "EXTRA=1", "PATH="} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("environment lacks %s:\n%s", want, res.Stdout)
		}
	}
}

func TestRunExitError(t *testing.T) {
	res, err := Run(context.Background(), Spec{Argv: []string{"sh", "-c", "echo boom >&2; exit 3"}})
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want *ExitError", err)
	}
	if res.ExitCode != 3 || err.Error() != "sh exited with status 3: boom" {
		t.Fatalf("exit %d, err %q", res.ExitCode, err)
	}
}

func TestRunTruncatesOutput(t *testing.T) {
	res, err := Run(context.Background(), Spec{Argv: []string{"head", "-c", "10000", "/dev/zero"}, MaxOutput: 100})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Truncated || !strings.HasSuffix(res.Stdout, "[output truncated]") || len(res.Stdout) > 100+len("\n[output truncated]") {
		t.Fatalf("truncated=%v len=%d", res.Truncated, len(res.Stdout))
	}
}

func TestRunDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Run(ctx, Spec{Argv: []string{"sleep", "30"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestRunMissingProgram(t *testing.T) {
	if _, err := Run(context.Background(), Spec{Argv: []string{"no-such-program-signet"}}); err == nil {
		t.Fatal("want an error for a missing program")
	}
	if _, err := Run(context.Background(), Spec{}); !errors.Is(err, ErrEmptyArgv) {
		t.Fatalf("err = %v", err)
	}
}
