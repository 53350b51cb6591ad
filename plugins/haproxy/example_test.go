package haproxy_test

import (
	"fmt"

	"github.com/signetbus/signet/plugins/haproxy"
)

func ExampleCheckName() {
	fmt.Println(haproxy.CheckName("server", "web3"))
	fmt.Println(haproxy.CheckName("server", "web3;set server app/web1 state maint"))
	fmt.Println(haproxy.CheckName("backend", "app/web3"))
	// Output:
	// <nil>
	// server name "web3;set server app/web1 state maint" contains ';', which separates runtime API commands
	// backend name "app/web3" contains '/', which separates backend and server; pass them as backend= and server=
}
