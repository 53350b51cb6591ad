package packages_test

import (
	"errors"
	"fmt"

	"github.com/signetbus/signet/plugins/packages"
)

// A failed check_version is a *VersionError: workflows can read what was
// wanted and found, and operators read the message.
func ExampleVersionError() {
	var err error = &packages.VersionError{Package: "middleware", Want: "1.4.2", Installed: "1.4.1", Reason: "apt: held package"}
	var ve *packages.VersionError
	if errors.As(err, &ve) {
		fmt.Println(ve.Installed)
	}
	fmt.Println(err)
	// Output:
	// 1.4.1
	// package middleware: want 1.4.2, installed 1.4.1 (apt: held package)
}
