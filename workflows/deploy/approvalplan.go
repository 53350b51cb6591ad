package deploy

import "github.com/signetbus/signet/workflows"

// Step names of the observation before a host is touched (observe.go),
// as the approved plan names them.
const (
	StepObservePackage     = "observe_package"
	StepObserveMaintenance = "observe_maintenance"
	StepObserveHAProxy     = "observe_haproxy"
)

// approvalSteps are the calls a run makes on each host, as the two-person
// rule's plan lists them (Options.Approve): the observer's reads, which
// run before each host is touched, then the deploy's steps. A policy that
// requires approvals for status reads then still lets an approved deploy
// observe its hosts.
func (a *App) approvalSteps() []workflows.Step {
	obs := []workflows.Step{
		{Name: StepObservePackage, Agent: "package", Action: "status", Params: map[string]any{"package": a.Package}},
		{Name: StepObserveMaintenance, Agent: "maintenance", Action: "status", Params: map[string]any{}},
		{Name: StepObserveHAProxy, Agent: "haproxy", Action: "status", Target: workflows.TargetBroadcast, Filter: a.HAProxy.LBFilter,
			Params: map[string]any{"backend": a.HAProxy.Backend, "server": a.HAProxy.Server}},
	}
	return append(obs, a.Steps()...)
}

// RollbackStepPrefix names a rollback step in the approved plan:
// "rollback_update" is the install of a host's previous version.
const RollbackStepPrefix = "rollback_"
