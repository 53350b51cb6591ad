package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/redact"
)

// printer is the one output layer for results: a table on a terminal,
// tab-separated plain text otherwise, or JSON with --json. Status and
// progress go to stderr, never through here.
type printer struct {
	out  io.Writer
	json bool
	tty  bool
}

func (g *globalOptions) printer() *printer {
	return &printer{out: g.io.Out, json: g.json, tty: g.io.IsTerminal}
}

// table prints rows with a header; on a terminal aligned, otherwise as
// tab-separated lines without the header.
func (p *printer) table(header []string, rows [][]string) {
	if !p.tty {
		for _, r := range rows {
			fmt.Fprintln(p.out, strings.Join(r, "\t"))
		}
		return
	}
	tw := tabwriter.NewWriter(p.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func (p *printer) jsonValue(v any) error {
	enc := json.NewEncoder(p.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// outcome prints per-host results of a generic request.
func (p *printer) outcome(o *bus.Outcome) error {
	if p.json {
		return p.jsonValue(jsonOutcome(o))
	}
	rows := make([][]string, 0, len(o.Results))
	for _, r := range o.Results {
		changed := ""
		if r.Reply != nil && r.Reply.Changed {
			changed = "changed"
		}
		msg := r.Error
		if r.Status == bus.ResultOK {
			msg = r.Reply.Summary
		} else if r.Reply != nil && r.Reply.Code != "" {
			msg = r.Reply.Code + ": " + r.Error
		}
		rows = append(rows, []string{r.Identity, string(r.Status), changed, redact.String(msg)})
	}
	p.table([]string{"HOST", "STATUS", "CHANGED", "RESULT"}, rows)
	return nil
}

type jsonResult struct {
	Identity string         `json:"identity"`
	Status   string         `json:"status"`
	Code     string         `json:"code,omitempty"`
	Error    string         `json:"error,omitempty"`
	Changed  bool           `json:"changed"`
	Summary  string         `json:"summary,omitempty"`
	Data     map[string]any `json:"data,omitempty"`
	Elapsed  float64        `json:"elapsed_ms"`
}

type jsonOutput struct {
	RequestIDs []string     `json:"request_ids"`
	Results    []jsonResult `json:"results"`
	Summary    jsonSummary  `json:"summary"`
	Warnings   []string     `json:"warnings,omitempty"`
}

type jsonSummary struct {
	OK         int     `json:"ok"`
	Failed     int     `json:"failed"`
	NoResponse int     `json:"no_response"`
	ElapsedMS  float64 `json:"elapsed_ms"`
}

func jsonOutcome(o *bus.Outcome) jsonOutput {
	out := jsonOutput{RequestIDs: o.RequestIDs, Results: []jsonResult{}}
	for _, w := range o.Warnings {
		out.Warnings = append(out.Warnings, redact.String(w))
	}
	for _, r := range o.Results {
		jr := jsonResult{Identity: r.Identity, Status: string(r.Status), Error: redact.String(r.Error), Elapsed: ms(r.Elapsed)}
		if r.Reply != nil {
			jr.Code, jr.Changed = r.Reply.Code, r.Reply.Changed
			jr.Summary, jr.Data = redact.String(r.Reply.Summary), redact.Params(r.Reply.Data, nil)
		}
		out.Results = append(out.Results, jr)
	}
	out.Summary.OK, out.Summary.Failed, out.Summary.NoResponse = o.Counts()
	out.Summary.ElapsedMS = ms(o.Elapsed)
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// summary prints the one-line tally to stderr.
func summary(w io.Writer, o *bus.Outcome) {
	ok, failed, nr := o.Counts()
	fmt.Fprintf(w, "%d ok, %d failed, %d no response in %s\n", ok, failed, nr, o.Elapsed.Round(time.Millisecond))
	for _, wn := range o.Warnings {
		fmt.Fprintf(w, "warning: %s\n", redact.String(wn))
	}
	var missing []string
	for _, r := range o.Results {
		if r.Status == bus.ResultNoResponse {
			missing = append(missing, r.Identity)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		fmt.Fprintf(w, "no response: %s\n", strings.Join(missing, ", "))
	}
}

// outcomeExit turns an outcome into the command's result: nil when every
// host succeeded, otherwise exit status 1.
// keepPartial reports whether an outcome that came back with err is still
// printed: an interrupted or timed-out query keeps the answers that came in
// (the operator sees which hosts already ran the action).
func keepPartial(o *bus.Outcome, err error) bool {
	return err == nil || (o != nil && len(o.Results) > 0 &&
		(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)))
}

// outcomeExit is the error an outcome exits with; err is the query's
// error when keepPartial printed the outcome anyway.
func outcomeExit(o *bus.Outcome, err error) error {
	if err != nil {
		return fmt.Errorf("interrupted before every host answered: %w", err)
	}
	if ok, _, _ := o.Counts(); ok == len(o.Results) && len(o.Results) > 0 {
		return nil
	}
	return &partialFailure{}
}
