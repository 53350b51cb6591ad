// Package workflows is the engine that runs a list of plugin steps across a
// fleet batch by batch: the built-in rolling deploy (package workflows/deploy)
// and operators' custom workflows both run through it.
//
// # Model
//
// A [Workflow] is an ordered list of [Step]s. Each step runs one plugin
// action (agent and action) either on the host being worked on (target
// "each") or broadcast to the hosts matching a filter on behalf of that host
// (target "broadcast", e.g. every HAProxy that routes to it). Params and
// expectations are templates over {{identity}}, {{version}} and the run's
// variables.
//
// [Plan] groups the discovered hosts into batches that never take two hosts
// of one zone out of rotation at once. The [Engine] runs the batches in
// order; the hosts of a batch run concurrently, the steps of a host in
// order.
//
// # Capacity and failures
//
// A host starts only when it fits under the run's caps ([Capacity]:
// max_unavailable, default the batch size, and max_unavailable_per_zone),
// counting the hosts in progress and those that failed and were left out.
// A failure within max_failures (default 0) is recorded and the run goes
// on; past it, no new host is touched. Hosts already running finish their
// own steps and go back into rotation, unless on_failure is stop_now
// (they stop after their current step). A partial broadcast step (the
// deploy's drain and enable) succeeds on the hosts that answer and records
// the silent ones ([Silent], [HostUnreached]).
//
// # State, resume and locks
//
// Every step's progress is saved to a [Store] (a JetStream key-value bucket
// in production, [MemStore] in tests) so that a run can be resumed. A
// [Job]'s Prepare hook inspects a host's observed state before its steps run
// and decides which steps still need doing; the deploy uses it to look at
// the package, HAProxy and maintenance state instead of trusting the record.
// [Store.Lock] holds one run per app and environment.
//
// # Rotation marks
//
// A step may set a mark ("drained", "maintenance") when it starts and
// another may clear it when it succeeds. Marks are how the engine reports,
// after a failure or an interrupt, exactly which hosts are left out of
// rotation.
package workflows
