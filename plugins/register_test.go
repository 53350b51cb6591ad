package plugins

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRegisterRefusesNamesTheHostRefuses: a built-in plugin whose name
// breaks the agent name grammar would register and then stop every signetd
// that links it; it is a bug found at start-up instead, like a duplicate.
func TestRegisterRefusesNamesTheHostRefuses(t *testing.T) {
	for _, name := range []string{"db-restore", "Package", "9lives", "a.b"} {
		func() {
			defer func() {
				r := recover()
				if r == nil {
					t.Errorf("Register(%q) accepted a name the host refuses", name)
					regMu.Lock()
					delete(registry, name)
					regMu.Unlock()
					return
				}
				if !strings.Contains(r.(string), name) {
					t.Errorf("Register(%q) panic %q does not name it", name, r)
				}
			}()
			Register(Info{Name: name, New: func(json.RawMessage) (Plugin, error) { return nil, nil }})
		}()
	}
}
