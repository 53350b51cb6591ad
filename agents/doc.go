// Package agents is the host side of signet: it composes the enabled
// plugins, the trust file, the policy, the audit log and the host's facts
// into the bus.Handler that signetd's responder calls, and runs the daemon
// (broker connection, registry, reloads, graceful shutdown).
//
// A request that passed the bus checks goes through, in order: the agent
// and action must exist on this host; the policy must allow one of the
// signer's roles to run agent.action here; parameters must pass the DDL and
// the plugin's own Validator; then the plugin runs under the action timeout.
package agents
