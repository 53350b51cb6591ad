// Package bus is signet's protocol: the signed request and reply, the
// subjects they travel on, the responder loop that runs on every host and
// the client the operator's CLI uses.
//
// # Envelope
//
// Every message is a frame (see internal/wire): magic "SGNT", a version
// byte, a kind byte ('Q' request, 'R' reply), the payload and an OpenSSH
// SSHSIG signature over exactly the payload bytes. Requests are signed under
// the namespace "signet-request@v1" with the operator's ed25519 key; replies
// under "signet-reply@v1" with the responder's host key. A recorded request
// payload and its armored signature verify with stock
// `ssh-keygen -Y verify -n signet-request@v1`.
//
// # Request
//
// The payload is JSON with the fields of Request: protocol version, a random
// 128-bit id, the sender (claimed user and key fingerprint), collective,
// agent, action, parameters, filter, direct targets, creation time (Unix ms)
// and TTL (seconds). Unknown fields are refused: a host never ignores part
// of a signed command it does not understand.
//
// # Checks on the host
//
// In order: size limit; frame and payload parse; signature namespace; key
// trusted (authorized_keys); signature valid; claimed fingerprint matches the
// key; protocol version; collective; TTL within the host's maximum; not
// dated in the future beyond the clock skew; not expired; a direct request
// names this host; the filter matches; the id was not seen before (replay
// cache, bounded, entries kept until the request could no longer pass the
// freshness check). The cache is in memory, so a responder refuses requests
// signed before it started: a restart cannot reopen the replay window. Then policy and parameter validation in the handler.
// Every refusal is answered with a signed reply carrying a code and a reason
// and is audited; only bytes that are not a frame at all are dropped
// unanswered (and audited as dropped).
//
// # Subjects
//
//	COLLECTIVE.agent.AGENT     broadcast to every host with AGENT
//	COLLECTIVE.node.IDENTITY   direct to one host
//	_INBOX.*                   the client's private reply inbox
//
// AGENT and action names follow CheckName (a lowercase letter, then
// lowercase letters, digits and _, at most 64) and IDENTITY follows
// CheckIdentity (a host name starting with a letter or digit); both are the
// one grammar in internal/grammar that every other package calls too.
//
// # Registry
//
// Responders publish a Registration in the JetStream key-value bucket
// signet_registry_COLLECTIVE, refreshed well within the bucket's TTL and
// deleted on clean shutdown. Clients use it to know which hosts must answer,
// so a request finishes when the last expected host has replied (plus a
// short linger, twice the fleet's answer time within 20-200ms, for hosts
// missing from the registry); hosts that did not are reported by name as
// "no response". Without a registry the
// client discovers hosts with a broadcast rpcutil ping.
package bus
