package bus_test

import (
	"fmt"

	"github.com/signetbus/signet/bus"
)

// A responder evaluates the request's filter against itself; -F, -C and -S
// on the command line become these fields.
func ExampleFilter_Compile() {
	f := bus.Filter{
		Fact:     []string{"env=prod", "cores>=4"},
		Compound: "zone=a or zone=b",
	}
	m, err := f.Compile()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, n := range []*bus.Node{
		{Identity: "web1", Facts: map[string]string{"env": "prod", "cores": "8", "zone": "a"}},
		{Identity: "web2", Facts: map[string]string{"env": "prod", "cores": "2", "zone": "b"}},
		{Identity: "web3", Facts: map[string]string{"env": "prod", "cores": "8", "zone": "c"}},
	} {
		fmt.Println(n.Identity, m.Match(n))
	}
	_, err = bus.Filter{Fact: []string{"cores>=many"}}.Compile()
	fmt.Println(err)
	// Output:
	// web1 true
	// web2 false
	// web3 false
	// filter "cores>=many": >= needs a number, got "many"
}
