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
// 128-bit id (exactly 32 lowercase hex digits, see CheckID: both sides
// refuse anything else, an empty id above all), the sender (claimed user and key fingerprint), collective,
// agent, action, parameters, filter, direct targets, creation time (Unix ms)
// and TTL (seconds), and optionally the provenance (workflow run id, change
// ticket, CI build URL, and the reason of a rollback; see Provenance.Check),
// which the host copies into every audit record of the request. Unknown
// fields are refused: a host never ignores part of a signed command it does
// not understand.
//
// # Certificates
//
// A sender with an OpenSSH user certificate puts it in sender.cert
// (standard base64 of its SSH encoding, as in a -cert.pub file) and signs
// with the certified key; sender.key is that key's fingerprint. Instead of
// looking the key up, the host looks up the certificate's CA among its
// cert-authority lines (CertTrust), and checks that the certificate is a
// user certificate of the signing key, valid now within the clock skew,
// with no critical option, with at least one principal that the CA may
// grant as a role, and signed by the CA (x/crypto's CertChecker, once per
// certificate per host). The principal's name is the key ID, its roles the
// principals the CA may grant. A reply signed by a host that presents a
// host certificate carries it in host_cert; a client without a pinned key
// for the identity accepts it when known_hosts trusts its CA for that
// identity (HostAuthorities) and the certificate is a valid host
// certificate of the signing key naming the identity.
//
// # Reply binding
//
// Every signed reply, accepted or refused, carries the request's id, agent
// and action (when the request parsed) and request_digest: the lowercase
// hex SHA-256 of the exact request frame the host received (FrameDigest).
// The client takes a verified reply as a host's answer only if its digest
// is the digest of a frame the client sent, and its id, agent and action
// are that request's. A reply that fails the binding (a reply harvested
// from another request, a reply with an empty id, the host's refusal of a
// copy of the request that a broker user republished with a broken
// signature) is never a result: the client counts it as a warning ("a
// reply that does not answer this request was received from HOST:
// possible tampering") and the host stays pending.
//
// Refusals with code replay or in_progress are not final: the host saw
// these exact bytes before or is still running them, so the real answer
// may still come. They never satisfy a pending host; if nothing else comes
// before the timeout the host is reported with that refusal. The same
// signed reply received twice counts once. Two different final, bound
// replies signed by one host for one request make that host's result
// failed ("conflicting signed replies from HOST"), never ok: only the
// host's key can make them, and the client does not let either one win.
//
// # Checks on the host
//
// In order: size limit; frame and payload parse; for a broadcast, the
// addressing (a cheap look for the host's quoted identity in the frame
// bytes, then the exact check of Targets and of the filter after parsing):
// a broadcast that does not name this host, or whose filter does not match
// it, is dropped silently BEFORE any signature verify (changing those
// fields breaks the signature, so only a forged copy can be dropped this
// way); the id is 32 lowercase hex digits; signature namespace; key trusted (authorized_keys), or its certificate's CA (see Certificates); signature
// valid; claimed fingerprint matches the key; protocol version
// (MinProtocolVersion to ProtocolVersion, see version.go); collective;
// TTL within the host's maximum; not dated in the future beyond the clock
// skew; not expired; not signed before the responder started (the replay
// cache is in memory, so a restart cannot reopen the replay window); a
// direct request names this host; the filter matches; then policy and
// parameter validation (the handler's Authorizer); only then the replay
// cache. The cache admits only requests that will run, is bounded, gives
// one signing key at most a share of it, and keeps entries until the
// request could no longer pass the freshness check.
//
// A copy of an admitted request (same id, same frame digest) never runs
// again: if it finished, the responder re-sends its signed reply frame
// verbatim (kept within a memory bound; audited as "duplicate"); while it
// runs, the copy is refused with code in_progress. The same id with other
// bytes is refused as a replay.
//
// These checks run in the subscription's callback; only a request admitted
// to run gets a goroutine, which waits for an action slot, writes the
// "started" audit record (and refuses with audit_unavailable if it cannot),
// runs the handler, signs the reply and writes the result record.
//
// Every refusal to an authenticated key is answered with a signed reply
// carrying a code and a reason, and audited. Messages that do not
// authenticate (not a frame, oversized, malformed or bad signature,
// untrusted key) are rate-limited: per window only the first few are
// audited, logged and answered with a signed refusal; the rest are counted
// in one "suppressed" audit record and one log line per window. Copies of a
// signed frame (anyone on the broker can republish one) count the same way
// after the first refusal or answer of that frame. Bytes that are not a
// frame are never answered.
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
// deleted on clean shutdown. Clients use it to know which hosts must
// answer: the signed request names them (Request.Targets), so a host that
// matches the filter but is not in the registry (an expired or deleted
// entry) does not run it, and the request finishes when the last named
// host has replied; hosts that did not are reported by name as "no
// response". There is no linger. A verified reply from a host that the
// request did not name (an old responder, or one that misbehaves) is
// reported with status "unexpected" and counts as a failure, so the exit
// code shows it. Without a registry the client discovers hosts with a
// broadcast rpcutil ping (an open broadcast, the only one) and then names
// the hosts that answered.
//
// A request sent directly to named hosts (Query.Targets, `signet rpc -I`)
// is checked against the registry first: a named host without an entry
// gets the result "not registered" at once, naming it, and is not sent
// the request nor waited for (one registry read per named host, for up to
// 64 hosts). The check is skipped, and the host waited for as before, when
// there is no registry, when it cannot be read within two seconds, for a
// request naming more than 64 hosts, or while the registry is being
// refilled after the broker lost its state (Registry.Check).
//
// # Targets and large fleets
//
// Wire form: Request.Targets is a JSON array of identities, each at most
// 253 bytes, so each costs its length plus 3 bytes. The client sends the
// hosts of one call in one of two ways:
//
//   - When the whole list takes at most 2 KiB (about 90 names of 20
//     characters), one signed request names them all and is published
//     once on COLLECTIVE.agent.AGENT. Every host with the agent receives
//     it; a host that is not named drops it (before it spends a signature
//     verify on it, see the responder), a named host verifies one
//     signature over at most 2 KiB of names.
//   - Otherwise the hosts are split into chunks of 64, each chunk signed
//     as its own request (its own id) and published to each of its hosts'
//     own subjects COLLECTIVE.node.IDENTITY. Each host receives exactly one
//     message naming at most 64 hosts (at most 16 KiB with the longest
//     names, about 1.5 KiB with 20-character ones); hosts outside the
//     call receive nothing.
//
// Either way a request frame holds at most 16 KiB of targets plus the
// parameters, filter and about 300 bytes of envelope and signature, well
// under the responder's default MaxRequestBytes of 64 KiB. Why not one
// list, or broadcast chunks: every host would receive, and every named
// host parse and hash, the whole list, which costs the fleet O(hosts²) -
// for 10,000 hosts of 20-character names 230 KB per host and 2.3 GB
// leaving the broker per call. With chunks of 64 the same call costs the
// client 157 signatures (about 8 ms with a key file, longer with
// ssh-agent) and 10,000 publishes of about 1.9 KB (19 MB), and each host
// one small message and one verify. The 2 KiB bound for a single
// broadcast was chosen by measurement (test/bench): with 1,000 responders
// a 12 KB list made the fan-out slower than chunks. Batches (--batch)
// always use the hosts' own subjects.
//
// Shard subjects. Publishing each chunk to each of its 64 hosts' subjects
// uploads it 64 times, so a host also listens on COLLECTIVE.shard.K.S for
// each K of internal/shard.Sizes (16, 256, 4096), S = FNV-1a(identity)
// mod K (ShardSubject), and says so in its signed registry entry
// (Registration.Shards). When the client listed the registry for a call
// whose targets need chunks, it picks the smallest K whose shards hold at
// most 64 of the targets each, groups the targets that list K by shard,
// and publishes each group's chunks once on the shard's subject, when the
// group holds at least half of the shard's listening hosts (the others
// receive it and drop it unverified, as for a broadcast). The remaining
// targets (hosts older than the field, sparse shards) get their chunk on
// their own subjects as above. A host that has not answered a shard
// publish within a third of the timeout while at least half of its chunk
// has, or whose shard subject earned "no responders", is sent the same
// signed chunk on its own subject (its broker may have refused it the
// subscription; only its own subject tells "not connected" apart): a host
// that already ran it answers with its kept reply. While most of a chunk
// is silent its hosts are slow, not deaf, and are not sent it again. (A
// named host that cannot hear its shard, in a chunk of which it is the
// only named host, while an unnamed host of the shard listens, is reported
// as no response.) Requests that name their hosts without a listing (workflow
// steps, -I) use the hosts' own subjects. test/bench -upload: a ping to
// 10,000 hosts uploads 0.35 MB in 261 publishes instead of 19.65 MB in
// 10,005 (docs/performance.md).
//
// # Lost messages
//
// A request sent to a host's own subject while the host is not connected
// gets the broker's "no responders" status on the reply subject (each host
// of a direct send has its own reply subject, so the client knows which
// one); a broadcast that reaches no one gets it too. The client then sends
// the same signed frame again with backoff (250 ms doubling to 2 s) until
// the host answers or the timeout passes, and reports a host that never
// came as "no responders: nothing listens on HOST's subject". When the
// client's connection to the broker comes back while hosts are pending
// (nats.go counts reconnects; the client polls the count, so it composes
// with any reconnect handler the caller set), the request or its reply may
// have been lost: the client sends the same frame again to the pending
// hosts, at most three times. This is safe because a host never runs one
// request id twice: a host that never got it runs it, one that ran it
// answers with its kept reply or refuses the copy as a replay or in
// progress, which are not final (see Reply binding).
//
// A host that does not answer is reported with the time the client really
// waited: "no response within 10s of sending (12.1s since the query
// started)", discovery included.
//
// When the context ends (the operator pressed ^C), Do returns the results
// collected so far with the error, for broadcasts and direct requests
// alike.
package bus
