package keys_test

import (
	"fmt"
	"strings"

	"github.com/signetbus/signet/internal/keys"
)

func ExampleParseAuthorizedKeys() {
	file := `# who may sign requests for this host
roles="admin,deploy",name="alice" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9jvkcQns0EfAGLLKwkmPNqEhplYhViOngNb4zpFwuK alice@laptop
roles="ci" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJo4Z2k941+Dv3y4/0OnH0WmT3B3c47Z18wte8/G+nB9 ci-runner
`
	auth, err := keys.ParseAuthorizedKeys(strings.NewReader(file))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, a := range auth {
		fmt.Println(a.Line, a.Name, a.Roles)
	}
	// Output:
	// 2 alice [admin deploy]
	// 3 ci-runner [ci]
}
