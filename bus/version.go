package bus

// MinProtocolVersion is the oldest protocol version still spoken: a host
// accepts requests of MinProtocolVersion to ProtocolVersion and replies in
// the request's version, and a client accepts replies of those versions.
// Hosts and clients of neighbouring releases therefore work together, in
// either order of upgrade (docs/upgrading.md).
const MinProtocolVersion = max(ProtocolVersion-1, 1)
