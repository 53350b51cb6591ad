package workflows

import "github.com/signetbus/signet/internal/redact"

// Redacted returns the event as every sink sees it: errors and summaries
// through redact.String (URL credentials and query values, secret
// key=value pairs), and results' data through redact.Value (entries with
// secret-looking keys masked). The engine emits only redacted events, so
// the JSON lines for Jenkins, the progress lines and the run log file never
// carry a secret a host or a step echoed.
func (e Event) Redacted() Event {
	e.Summary, e.Error = redact.String(e.Summary), redact.String(e.Error)
	if len(e.Results) > 0 {
		rs := make([]Result, len(e.Results))
		for i, r := range e.Results {
			r.Summary, r.Error = redact.String(r.Summary), redact.String(r.Error)
			r.Data = redact.Params(r.Data, nil)
			rs[i] = r
		}
		e.Results = rs
	}
	return e
}
