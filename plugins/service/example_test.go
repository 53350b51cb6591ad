package service_test

import (
	"encoding/json"
	"fmt"

	"github.com/signetbus/signet/plugins"
	"github.com/signetbus/signet/plugins/service"
)

// A host limits the plugin to the services it deploys; names outside the
// list, and names that are not service names, are refused before anything
// runs.
func ExampleService_Validate() {
	p, err := service.New(json.RawMessage(`{"backend":"systemd","services":["middleware"]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	v := p.(plugins.Validator)
	fmt.Println(v.Validate("restart", plugins.Params{"service": "middleware.service"}))
	fmt.Println(v.Validate("restart", plugins.Params{"service": "sshd"}))
	fmt.Println(v.Validate("restart", plugins.Params{"service": "../x"}))
	// Output:
	// <nil>
	// invalid parameter "service" for restart: service "sshd" is not in this host's services list
	// invalid parameter "service" for restart: "../x" is not a service name: want a letter or digit, then letters, digits and :_.@- (at most 255 bytes)
}
