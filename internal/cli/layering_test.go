package cli

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

const agentsPkg = "github.com/signetbus/signet/agents"

// TestClientSideDoesNotImportHostSide: the client side (the bus client, the
// workflows engine and its bus adapter, keys) must not depend on agents,
// the host side. The signet binary itself still links agents, because
// `signet lab` and `signet demo` start signetd hosts in-process and
// internal/cli also holds signetd's command; so this checks the packages,
// and the client files of internal/cli, not the binary.
func TestClientSideDoesNotImportHostSide(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is needed to list package dependencies: %v", err)
	}
	client := []string{"./workflows/...", "./bus/...", "./internal/keys", "./internal/grammar", "./internal/config"}
	cmd := exec.Command(goBin, append([]string{"list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`}, client...)...)
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		for _, imp := range strings.Fields(imports) {
			if imp == agentsPkg || strings.HasPrefix(imp, agentsPkg+"/") {
				t.Errorf("%s (a dependency of the client side %v) imports %s, the host side", pkg, client, imp)
			}
		}
	}

	// In internal/cli only signetd's command and the in-process fleets
	// (lab, demo) may use the host side.
	hostFiles := map[string]bool{"daemon.go": true, "lab.go": true, "demo.go": true}
	hostSide := map[string]bool{agentsPkg: true, "github.com/signetbus/signet/internal/lab": true,
		"github.com/signetbus/signet/internal/stage": true, "github.com/signetbus/signet/plugins/all": true}
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || hostFiles[name] {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); hostSide[p] {
				t.Errorf("internal/cli/%s (client side) imports %s", name, p)
			}
		}
	}

	// The client's config types come from below the host side.
	var walk func(typ reflect.Type, path string)
	seen := map[reflect.Type]bool{}
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if seen[typ] {
			return
		}
		seen[typ] = true
		if typ.PkgPath() == agentsPkg {
			t.Errorf("ClientConfig%s has the host-side type %s", path, typ)
		}
		if typ.Kind() == reflect.Struct {
			for i := 0; i < typ.NumField(); i++ {
				walk(typ.Field(i).Type, path+"."+typ.Field(i).Name)
			}
		}
	}
	walk(reflect.TypeOf(ClientConfig{}), "")
}
