// Package plugins defines the contract between signetd and the whitelisted
// actions it may run, and holds the registry those plugins add themselves to.
//
// A plugin lives in its own package under plugins/NAME and registers itself
// from an init function:
//
//	func init() { plugins.Register(plugins.Info{Name: "haproxy", New: New}) }
//
// The whitelist is the list of blank imports in plugins/all: a plugin that is
// not imported there cannot run, whatever a host's config says. Registering a
// name twice panics at start-up, because it is a programming error.
//
// Each plugin describes its actions with a DDL (in the spirit of
// MCollective's): inputs with a type, a required flag and validation rules,
// and the shape of the output. signetd validates parameters against that
// declaration before the plugin sees them, so a plugin only ever receives
// parameters that passed the declared rules. Plugins that need checks beyond
// what the DDL can say (a package name grammar, say) implement Validator.
//
// An input that carries a secret (a password, a token, an API key) is
// declared Sensitive. No validation error then quotes its value, and signetd
// removes the value from anything the plugin says back (errors, summary,
// data, log lines) and from the audit log. Errors about other inputs quote
// the rejected value with Quote: bounded, credentials removed.
package plugins
