package agents

import (
	"errors"
	"testing"
)

// TestValidateReplicas: nats.replicas is 0 (auto) or 1 to 5, the most
// copies JetStream keeps; anything else names the key.
func TestValidateReplicas(t *testing.T) {
	for n, ok := range map[int]bool{0: true, 1: true, 3: true, 5: true, 6: false, -1: false} {
		c := validConfig()
		c.NATS.Replicas = n
		err := c.Validate()
		var ce *ConfigError
		switch {
		case ok && err != nil:
			t.Errorf("replicas %d: %v", n, err)
		case !ok && (!errors.As(err, &ce) || ce.Key != "nats.replicas"):
			t.Errorf("replicas %d: got %v, want an error naming nats.replicas", n, err)
		}
	}
}
