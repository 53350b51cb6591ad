package promtext_test

import (
	"math"
	"os"

	"github.com/signetbus/signet/internal/metrics/promtext"
)

func ExampleWrite() {
	promtext.Write(os.Stdout, []promtext.Family{
		{Name: "signet_broker_in_messages_total", Help: "Messages received.", Type: promtext.Counter,
			Samples: []promtext.Sample{{Value: promtext.Uint(math.MaxUint64)}}},
		{Name: "signet_broker_route_connected", Help: "1 for each node connected.", Type: promtext.Gauge,
			Samples: []promtext.Sample{{Labels: []promtext.Label{{Name: "remote", Value: `n"2`}}, Value: promtext.Bool(true)}}},
		{Name: "signet_broker_ratio", Help: "A ratio.", Type: promtext.Gauge,
			Samples: []promtext.Sample{{Value: promtext.Float(math.NaN())}}},
	})
	// Output:
	// # HELP signet_broker_in_messages_total Messages received.
	// # TYPE signet_broker_in_messages_total counter
	// signet_broker_in_messages_total 18446744073709551615
	// # HELP signet_broker_route_connected 1 for each node connected.
	// # TYPE signet_broker_route_connected gauge
	// signet_broker_route_connected{remote="n\"2"} 1
	// # HELP signet_broker_ratio A ratio.
	// # TYPE signet_broker_ratio gauge
	// signet_broker_ratio NaN
}
