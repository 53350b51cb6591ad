package agents

// DaemonProcs is the GOMAXPROCS signetd sets at start, given the
// environment's GOMAXPROCS: 1 when it is unset, else 0 (leave the
// runtime's own choice, which honours the variable).
//
// One P is enough for a host and cheaper: the responder checks the
// messages of a subscription one at a time, and actions spend their time
// waiting for child processes. With a P per core, each request's goroutine
// hand-offs (broker reader, subscription, action, writer, audit shipper)
// woke a second thread that found nothing to do and slept again;
// measured, one P saved 6-18% of a host's CPU per request
// (docs/performance.md, "CPU per request on a host"). It also keeps a flood
// of forged frames, each costing a signature check, to one core.
func DaemonProcs(env string) int {
	if env == "" {
		return 1
	}
	return 0
}
