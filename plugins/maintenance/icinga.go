package maintenance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"
)

// IcingaConfig configures the icinga2 backend, which schedules a fixed
// downtime on the host and all its services through the Icinga 2 REST API
// (/v1/actions/schedule-downtime, /v1/actions/remove-downtime and
// /v1/objects/downtimes).
type IcingaConfig struct {
	// URL is the Icinga 2 API's base URL, such as
	// https://icinga-master:5665. Required. Credentials in the URL are
	// refused.
	URL string `json:"url"`

	// Username is the ApiUser's name. Required. The ApiUser needs the
	// permissions actions/schedule-downtime, actions/remove-downtime and
	// objects/query/Downtime (and objects/query/Host to resolve the host
	// filter).
	Username string `json:"username"`

	// PasswordFile is the absolute path of a file holding the ApiUser's
	// password on one line. Read on each request; never logged. Required.
	PasswordFile string `json:"password_file"`

	// CAFile is the absolute path of a PEM file with the Icinga CA
	// (/var/lib/icinga2/certs/ca.crt on the master), for an https URL.
	// Empty means the system's CAs.
	CAFile string `json:"ca_file,omitempty"`

	// HostName is the Icinga host object's name. {{identity}} is replaced
	// by the host's identity. Empty means {{identity}}.
	HostName string `json:"host_name,omitempty"`

	// Timeout bounds each HTTP request, as a Go duration. Empty means 10s.
	Timeout string `json:"timeout,omitempty"`
}

type icinga struct {
	api      *httpAPI
	hostName string
}

func newIcinga(c IcingaConfig) (*icinga, error) {
	api, err := newHTTPAPI("icinga2", c.URL, c.CAFile, c.Timeout)
	if err != nil {
		return nil, fmt.Errorf("icinga2: %w", err)
	}
	if err := setBasicAuth(api, c.Username, c.PasswordFile); err != nil {
		return nil, fmt.Errorf("icinga2: %w", err)
	}
	hn := c.HostName
	if hn == "" {
		hn = identityToken
	}
	rest := strings.ReplaceAll(hn, identityToken, "")
	if !strings.Contains(hn, identityToken) || strings.Contains(rest, "{{") || strings.Contains(rest, "}}") {
		return nil, fmt.Errorf("icinga2: host_name must hold %s and no other template, got %q", identityToken, c.HostName)
	}
	if strings.IndexFunc(rest, isControl) >= 0 || strings.ContainsAny(rest, "!\"\\") {
		return nil, fmt.Errorf("icinga2: host_name must not hold control characters, '!', '\"' or '\\', got %q", c.HostName)
	}
	return &icinga{api: api, hostName: hn}, nil
}

func (c *icinga) name() string { return "icinga2" }

func (c *icinga) host(identity string) string {
	return strings.ReplaceAll(c.hostName, identityToken, identity)
}

// icingaResults is the envelope of every Icinga 2 API answer.
type icingaResults[T any] struct {
	Results []T `json:"results"`
}

// icingaActionResult is one result of an action.
type icingaActionResult struct {
	Code   float64 `json:"code"`
	Status string  `json:"status"`
	// Name is the full name of the downtime scheduled (host!name, or
	// host!service!name).
	Name string `json:"name"`
	// ServiceDowntimes are the full names of the service downtimes
	// all_services scheduled (Icinga 2.11 and later).
	ServiceDowntimes []string `json:"service_downtimes"`
}

// icingaDowntime is one object of /v1/objects/downtimes.
type icingaDowntime struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Attrs struct {
		HostName    string  `json:"host_name"`
		ServiceName string  `json:"service_name"`
		Author      string  `json:"author"`
		Comment     string  `json:"comment"`
		StartTime   float64 `json:"start_time"`
		EndTime     float64 `json:"end_time"`
	} `json:"attrs"`
}

// signetDowntimes lists the downtimes signet made on the host and its
// services: author and comment carry signet's marks. A downtime a person
// made never qualifies.
func (c *icinga) signetDowntimes(ctx context.Context, identity string) ([]icingaDowntime, error) {
	host := c.host(identity)
	// Filters go in the body with X-HTTP-Method-Override, as the Icinga 2
	// API documentation recommends, and the host name as a filter
	// variable, so that it is never parsed as filter language.
	body := map[string]any{
		"filter":      "downtime.host_name==host_name",
		"filter_vars": map[string]string{"host_name": host},
		"attrs":       []string{"host_name", "service_name", "author", "comment", "start_time", "end_time"},
	}
	hdr := http.Header{"X-Http-Method-Override": {"GET"}}
	var res icingaResults[icingaDowntime]
	err := c.api.do(ctx, "list downtimes", http.MethodPost, "/v1/objects/downtimes", nil, hdr, body, &res)
	var aerr *APIError
	if errors.As(err, &aerr) && aerr.Status == http.StatusNotFound {
		// Icinga answers 404 "No objects found" to an empty result.
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []icingaDowntime
	for _, d := range res.Results {
		if d.Attrs.HostName != host || !strings.HasPrefix(d.Attrs.Author, AuthorPrefix) || !strings.HasPrefix(d.Attrs.Comment, CommentPrefix) {
			continue
		}
		out = append(out, d)
	}
	// Host downtimes first: removing one may remove its service children.
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Attrs.ServiceName == "") != (out[j].Attrs.ServiceName == "") {
			return out[i].Attrs.ServiceName == ""
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func (c *icinga) start(ctx context.Context, log *slog.Logger, w window) (state, error) {
	existing, err := c.signetDowntimes(ctx, w.identity)
	if err != nil {
		return state{}, err
	}
	host := c.host(w.identity)
	body := map[string]any{
		"type":         "Host",
		"filter":       "host.name==host_name",
		"filter_vars":  map[string]string{"host_name": host},
		"author":       AuthorPrefix + w.caller,
		"comment":      w.comment,
		"start_time":   w.from.Unix(),
		"end_time":     w.until.Unix(),
		"fixed":        true,
		"all_services": true,
	}
	var res icingaResults[icingaActionResult]
	if err := c.api.do(ctx, "schedule downtime for host "+host, http.MethodPost, "/v1/actions/schedule-downtime", nil, nil, body, &res); err != nil {
		var aerr *APIError
		if errors.As(err, &aerr) && aerr.Status == http.StatusNotFound {
			return state{}, fmt.Errorf("icinga2: schedule downtime: no host object named %q: %w", host, err)
		}
		return state{}, err
	}
	if len(res.Results) == 0 {
		return state{}, fmt.Errorf("icinga2: schedule downtime: no host object named %q matched", host)
	}
	ids := []string{}
	for _, r := range res.Results {
		if r.Code < 200 || r.Code > 299 || r.Name == "" {
			return state{}, fmt.Errorf("icinga2: schedule downtime for host %s: want code 200, got %v: %s", host, r.Code, r.Status)
		}
		ids = append(ids, r.Name)
		ids = append(ids, r.ServiceDowntimes...)
	}
	// Remove the previous signet downtimes only now, so that the host is
	// never unmuted in between.
	keep := map[string]bool{}
	for _, id := range ids {
		keep[id] = true
	}
	for _, d := range existing {
		if keep[d.Name] {
			continue
		}
		if err := c.remove(ctx, d.Name); err != nil {
			return state{}, err
		}
	}
	log.Debug("icinga2 downtime scheduled", "downtimes", ids, "until", w.until, "replaced", len(existing))
	return state{active: true, until: w.until, ids: ids, changed: true, replaced: len(existing)}, nil
}

// remove removes one downtime by its full name. One that is already gone
// (removed with its parent, or expired) is not an error.
func (c *icinga) remove(ctx context.Context, name string) error {
	body := map[string]any{"type": "Downtime", "downtime": name}
	var res icingaResults[icingaActionResult]
	err := c.api.do(ctx, "remove downtime "+name, http.MethodPost, "/v1/actions/remove-downtime", nil, nil, body, &res)
	var aerr *APIError
	if errors.As(err, &aerr) && aerr.Status == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	for _, r := range res.Results {
		if r.Code < 200 || r.Code > 299 {
			return fmt.Errorf("icinga2: remove downtime %s: want code 200, got %v: %s", name, r.Code, r.Status)
		}
	}
	return nil
}

func (c *icinga) end(ctx context.Context, log *slog.Logger, identity, _ string) (state, error) {
	existing, err := c.signetDowntimes(ctx, identity)
	if err != nil {
		return state{}, err
	}
	ids := []string{}
	for _, d := range existing {
		if err := c.remove(ctx, d.Name); err != nil {
			return state{}, err
		}
		log.Debug("icinga2 downtime removed", "downtime", d.Name)
		ids = append(ids, d.Name)
	}
	return state{ids: ids, changed: len(ids) > 0}, nil
}

func (c *icinga) status(ctx context.Context, identity string) (state, error) {
	existing, err := c.signetDowntimes(ctx, identity)
	if err != nil {
		return state{}, err
	}
	st := state{ids: []string{}}
	now := time.Now()
	for _, d := range existing {
		end := unixTime(d.Attrs.EndTime)
		if !end.After(now) {
			continue
		}
		st.active = true
		st.ids = append(st.ids, d.Name)
		if end.After(st.until) {
			st.until = end
		}
	}
	return st, nil
}

func unixTime(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}
