package release_test

import (
	"errors"
	"fmt"

	"github.com/signetbus/signet/workflows/release"
)

func ExampleParseManifest() {
	m, err := release.ParseManifest("Spring release", `
# deploy in this order
web 1.4.2
api=2.0.1-3
`)
	if err != nil {
		panic(err)
	}
	for _, it := range m.Items {
		fmt.Println(it.App, it.Version)
	}

	_, err = release.ParseManifest("Broken", "web 1.0\napi\n")
	var pe *release.ParseError
	if errors.As(err, &pe) {
		fmt.Println("line", pe.Line, "-", err)
	}
	// Output:
	// web 1.4.2
	// api 2.0.1-3
	// line 2 - manifest line 2: expected "app version" or "app=version", found 1 word: "api"
}
