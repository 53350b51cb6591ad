package bus

import (
	"encoding/json"
	"fmt"
)

// Inventory is the data of an rpcutil inventory reply: what a host offers.
// The host builds it and sends it as Reply.Data (Inventory.Data); the CLI
// and workflows read it back with ParseInventory. Both sides need it, so it
// lives here with the rest of the protocol.
type Inventory struct {
	Agents     []InventoryAgent  `json:"agents"`
	Facts      map[string]string `json:"facts"`
	Classes    []string          `json:"classes"`
	Version    string            `json:"version"`
	Collective string            `json:"collective"`
	Started    string            `json:"started"`
}

// InventoryAgent is one enabled agent.
type InventoryAgent struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Actions     []string `json:"actions"`
}

// AgentNames returns the names of the enabled agents.
func (inv *Inventory) AgentNames() []string {
	names := make([]string, len(inv.Agents))
	for i, a := range inv.Agents {
		names[i] = a.Name
	}
	return names
}

// ParseInventory decodes the Data of an rpcutil inventory reply.
func ParseInventory(data map[string]any) (*Inventory, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	var inv Inventory
	if err := json.Unmarshal(b, &inv); err != nil {
		return nil, fmt.Errorf("bus: inventory: %w", err)
	}
	return &inv, nil
}

// Data returns the inventory as reply data.
func (inv *Inventory) Data() map[string]any {
	b, _ := json.Marshal(inv)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}
