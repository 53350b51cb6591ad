// Package cluster holds the tests of signet on a production broker
// topology, all on loopback in one process: a three-node `signet broker`
// cluster with JetStream replicated three times, hundreds of signed
// responders spread across its nodes, and a DR site whose broker joins the
// cluster as a leafnode.
//
// The tests kill a node in the middle of a rolling deploy and cut the
// leafnode, then check what the operator sees: the deploy rides through
// (or halts in a state that --resume finishes), no action runs twice on
// any host, the registry, run state and locks survive, and DR hosts are
// reported by name as not responding while production carries on.
//
// They also force a deploy to halt on a node kill and resume it through
// the surviving nodes, run a two-node cluster (a warning, and readable
// errors when its JetStream is gone), a locked-down cluster whose routes
// and leafnodes refuse brokers without its credentials, and provisioning
// that scales one-copy streams up to three.
package cluster
