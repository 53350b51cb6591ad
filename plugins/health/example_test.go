package health_test

import (
	"encoding/json"
	"fmt"

	"github.com/signetbus/signet/plugins"
	"github.com/signetbus/signet/plugins/health"
)

// A host that allows its service network besides loopback still refuses
// every other address before any connection is made.
func ExampleNew() {
	p, err := health.New(json.RawMessage(`{"allow_hosts":["127.0.0.0/8","10.20.0.0/16"]}`))
	if err != nil {
		panic(err)
	}
	v := p.(plugins.Validator)
	fmt.Println(v.Validate("http", plugins.Params{"url": "http://10.20.3.4:8080/version"}))
	fmt.Println(v.Validate("http", plugins.Params{"url": "http://169.254.169.254/latest/meta-data/"}))
	// Output:
	// <nil>
	// invalid parameter "url" for http: host 169.254.169.254 is not in this host's health allow_hosts (loopback only unless configured)
}
