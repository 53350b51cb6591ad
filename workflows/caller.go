package workflows

import (
	"context"
	"time"
)

// Caller runs plugin actions on hosts over the signed bus.
type Caller interface {
	// Call runs Agent.Action. With Hosts set, the request goes directly to those identities and there is one Result per host (NoResponse for a host that never answered). With Hosts empty it is broadcast to every host that has Agent and matches Filter, and Results are whatever answered.
	Call(ctx context.Context, c Call) ([]Result, error)
	// Discover lists the hosts matching filter (bus filter expressions such as "env=dev", "zone=a"; an agent filter is written "agent=NAME").
	Discover(ctx context.Context, filter []string) ([]Host, error)
}

// Call is one plugin action to run.
type Call struct {
	Agent, Action string
	Params        map[string]any
	Hosts         []string
	Filter        []string
	Timeout       time.Duration
	// Run is the id of the run that makes the call; the signed request
	// carries it into every host's audit record.
	Run string
}

// Result is one host's answer to a Call.
type Result struct {
	Host       string         `json:"host"`
	OK         bool           `json:"ok"`
	Changed    bool           `json:"changed,omitempty"`
	Summary    string         `json:"summary,omitempty"`
	Data       map[string]any `json:"data,omitempty"`
	Error      string         `json:"error,omitempty"`
	NoResponse bool           `json:"no_response,omitempty"`
}

// Host is a discovered host.
type Host struct {
	Identity string
	Facts    map[string]string
	Agents   []string
}
