package agents

import (
	"context"
	"log/slog"

	"github.com/signetbus/signet/internal/redact"
	"github.com/signetbus/signet/plugins"
)

// SensitiveParams returns the inputs of an action whose values must never
// be echoed: those its plugin declares sensitive and those whose names
// look secret (redact.SecretName). It is nil for an unknown agent or
// action, or one without such inputs. The audit log calls it
// (audit.Log.Sensitive) to mask those parameters' values.
func (h *Host) SensitiveParams(agent, action string) map[string]bool {
	a, ok := h.ddls[agent].Action(action)
	if !ok {
		return nil
	}
	return sensitiveInputs(a)
}

func sensitiveInputs(a plugins.Action) map[string]bool {
	var out map[string]bool
	for _, in := range a.Inputs {
		if in.Sensitive || redact.SecretName(in.Name) {
			if out == nil {
				out = map[string]bool{}
			}
			out[in.Name] = true
		}
	}
	return out
}

// guarded wraps a plugin so that nothing it says echoes the value of a
// sensitive parameter: its Validate and Run errors, the summary and data of
// its result, and its log lines have those values removed, and errors and
// summaries also go through redact.String (URL credentials and query
// values). The host installs it around every plugin, so a careless plugin,
// or an external program's stderr, cannot leak a password into a reply,
// the audit log or the daemon log.
type guarded struct {
	plugins.Plugin
	// sensitive are the sensitive inputs by action, read once from the
	// declaration (Describe returns the same one every time).
	sensitive map[string]map[string]bool
}

var (
	_ plugins.Validator = (*guarded)(nil)
	_ plugins.Closer    = (*guarded)(nil)
)

func guard(p plugins.Plugin) plugins.Plugin {
	if g, ok := p.(*guarded); ok {
		return g
	}
	g := &guarded{Plugin: p, sensitive: map[string]map[string]bool{}}
	for _, a := range p.Describe().Actions {
		g.sensitive[a.Name] = sensitiveInputs(a)
	}
	return g
}

// secretValues returns the values of the request's sensitive parameters
// (declared, or with secret-looking names).
func (g *guarded) secretValues(action string, params plugins.Params) []string {
	sens := g.sensitive[action]
	return redact.Values(params, func(name string) bool { return sens[name] })
}

// Validate implements plugins.Validator.
func (g *guarded) Validate(action string, params plugins.Params) error {
	v, ok := g.Plugin.(plugins.Validator)
	if !ok {
		return nil
	}
	return scrubError(v.Validate(action, params), g.secretValues(action, params))
}

// Run implements plugins.Plugin.
func (g *guarded) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	secrets := g.secretValues(req.Action, req.Params)
	r := *req
	if r.Log != nil {
		r.Log = slog.New(redact.NewHandler(r.Log.Handler(), secrets))
	}
	res, err := g.Plugin.Run(ctx, &r)
	if res != nil {
		out := *res
		out.Summary = redact.Scrub(redact.String(out.Summary), secrets)
		if len(secrets) > 0 && out.Data != nil {
			out.Data, _ = scrubValue(out.Data, secrets).(map[string]any)
		}
		res = &out
	}
	return res, scrubError(err, secrets)
}

// Close implements plugins.Closer.
func (g *guarded) Close() error {
	if c, ok := g.Plugin.(plugins.Closer); ok {
		return c.Close()
	}
	return nil
}

// scrubbedError is a plugin error with secrets removed from its text; it
// still unwraps to the original, so errors.Is (context.DeadlineExceeded,
// a *ParamError) keeps working.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func scrubError(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := redact.Scrub(redact.String(err.Error()), secrets)
	if msg == err.Error() {
		return err
	}
	return &scrubbedError{msg: msg, err: err}
}

func scrubValue(v any, secrets []string) any {
	switch x := v.(type) {
	case string:
		return redact.Scrub(x, secrets)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = scrubValue(e, secrets)
		}
		return out
	case []string:
		out := make([]string, len(x))
		for i, e := range x {
			out[i] = redact.Scrub(e, secrets)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = scrubValue(e, secrets)
		}
		return out
	}
	return v
}
