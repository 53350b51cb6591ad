package facts

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestBuiltin(t *testing.T) {
	f := Builtin("1.2.3")
	if f["arch"] != runtime.GOARCH || f["signetd_version"] != "1.2.3" || f["kernel"] == "" || f["hostname"] == "" {
		t.Fatalf("builtin facts %v", f)
	}
}

func TestFromFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("zone: a\nenv: prod\nweight: 3\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"env":"dev","rack":"r1"}`), 0o644)
	f, err := FromFiles([]string{filepath.Join(dir, "*")})
	if err != nil {
		t.Fatal(err)
	}
	if f["zone"] != "a" || f["env"] != "dev" || f["weight"] != "3" || f["rack"] != "r1" {
		t.Fatalf("facts %v", f)
	}
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("nested: {a: 1}\n"), 0o644)
	if _, err := FromFiles([]string{filepath.Join(dir, "*")}); err == nil {
		t.Fatal("a nested fact was accepted")
	}
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("\"bad key\": 1\n"), 0o644)
	if _, err := FromFiles([]string{filepath.Join(dir, "*")}); err == nil {
		t.Fatal("an invalid fact name was accepted")
	}
}
