package facts

import (
	"fmt"
	"os"
	"strings"
)

// BootIDFile is where Linux keeps the random id of the current boot: it
// changes on every boot and only then.
const BootIDFile = "/proc/sys/kernel/random/boot_id"

// BootID reads a boot id file (BootIDFile on Linux). signetd publishes the
// id in its registry entry, so that a client can tell a host that came
// back from a reboot from one that only reconnected.
func BootID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" || len(id) > 64 || strings.ContainsAny(id, " \t\n") {
		return "", fmt.Errorf("read boot id: %s holds no boot id", path)
	}
	return id, nil
}
