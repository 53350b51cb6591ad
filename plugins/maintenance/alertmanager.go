package maintenance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/lazyre"
)

// AlertmanagerConfig configures the alertmanager backend, which mutes the
// host with a silence through Alertmanager's API v2 (/api/v2/silences).
type AlertmanagerConfig struct {
	// URL is Alertmanager's base URL, such as http://alertmanager:9093,
	// with its route prefix when it has one (https://mon/alertmanager).
	// Required. Credentials in the URL are refused.
	URL string `json:"url"`

	// Matchers select the alerts the silence mutes. Each value may hold
	// {{identity}}, replaced by the host's identity (regexp-quoted for a
	// regex matcher). At least one matcher must use {{identity}}, so that
	// a silence never mutes other hosts by mistake. Empty means one
	// matcher: instance =~ "{{identity}}(:[0-9]+)?", which matches the
	// identity alone and the identity with any port.
	Matchers []MatcherConfig `json:"matchers,omitempty"`

	// BearerTokenFile is the absolute path of a file holding a bearer
	// token sent as "Authorization: Bearer", for an Alertmanager behind
	// an authenticating proxy. Read on each request; never logged.
	BearerTokenFile string `json:"bearer_token_file,omitempty"`

	// BasicAuth sends HTTP basic credentials. Not with BearerTokenFile.
	BasicAuth *BasicAuthConfig `json:"basic_auth,omitempty"`

	// CAFile is the absolute path of a PEM file with the CAs that sign
	// Alertmanager's certificate, for an https URL. Empty means the
	// system's CAs.
	CAFile string `json:"ca_file,omitempty"`

	// Timeout bounds each HTTP request, as a Go duration. Empty means 10s.
	Timeout string `json:"timeout,omitempty"`
}

// MatcherConfig is one Alertmanager label matcher. Only equality matchers
// (= and =~) exist here: a negative matcher would mute every other host.
type MatcherConfig struct {
	// Name is the label name, such as instance or host.
	Name string `json:"name"`
	// Value is the label value, or a regular expression when Regex is
	// set (Alertmanager anchors it). {{identity}} is replaced by the
	// host's identity.
	Value string `json:"value"`
	// Regex makes Value a regular expression (=~).
	Regex bool `json:"regex,omitempty"`
}

// BasicAuthConfig holds HTTP basic credentials.
type BasicAuthConfig struct {
	// Username is the user name. Required.
	Username string `json:"username"`
	// PasswordFile is the absolute path of a file holding the password
	// on one line. Read on each request; never logged. Required.
	PasswordFile string `json:"password_file"`
}

// identityToken is the placeholder replaced by the host's identity.
const identityToken = "{{identity}}"

var (
	labelNameRE = lazyre.New(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	// silenceIDRE is what an Alertmanager silence id looks like (a UUID)
	// before it goes into a URL path.
	silenceIDRE = lazyre.New(`^[0-9a-fA-F-]{1,64}$`)
)

// defaultMatchers is used when the config sets none.
var defaultMatchers = []MatcherConfig{{Name: "instance", Value: identityToken + "(:[0-9]+)?", Regex: true}}

type alertmanager struct {
	api      *httpAPI
	matchers []MatcherConfig
}

func newAlertmanager(c AlertmanagerConfig) (*alertmanager, error) {
	api, err := newHTTPAPI("alertmanager", c.URL, c.CAFile, c.Timeout)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	if err := setAuth(api, c.BearerTokenFile, c.BasicAuth); err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	ms := c.Matchers
	if len(ms) == 0 {
		ms = defaultMatchers
	}
	usesIdentity := false
	for i, m := range ms {
		if !labelNameRE.MatchString(m.Name) {
			return nil, fmt.Errorf("alertmanager: matchers[%d]: name must be a label name ([a-zA-Z_][a-zA-Z0-9_]*), got %q", i, m.Name)
		}
		rest := strings.ReplaceAll(m.Value, identityToken, "")
		if strings.Contains(rest, "{{") || strings.Contains(rest, "}}") {
			return nil, fmt.Errorf("alertmanager: matchers[%d]: value may hold only the template %s, got %q", i, identityToken, m.Value)
		}
		if m.Value == "" {
			return nil, fmt.Errorf("alertmanager: matchers[%d]: value is empty", i)
		}
		usesIdentity = usesIdentity || strings.Contains(m.Value, identityToken)
		if m.Regex {
			if _, err := regexp.Compile(expand(m, "host.example")); err != nil {
				return nil, fmt.Errorf("alertmanager: matchers[%d]: value is not a regular expression: %w", i, err)
			}
		}
	}
	if !usesIdentity {
		return nil, fmt.Errorf("alertmanager: matchers: want at least one value holding %s, so that the silence mutes this host only", identityToken)
	}
	return &alertmanager{api: api, matchers: ms}, nil
}

// setAuth installs bearer or basic credentials on api, after checking that
// their files can be read.
func setAuth(api *httpAPI, tokenFile string, basic *BasicAuthConfig) error {
	switch {
	case tokenFile != "" && basic != nil:
		return errors.New("set bearer_token_file or basic_auth, not both")
	case tokenFile != "":
		if err := checkPath("bearer_token_file", tokenFile); err != nil {
			return err
		}
		if _, err := readSecret("bearer_token_file", tokenFile); err != nil {
			return err
		}
		api.setAuth = func(r *http.Request) error {
			tok, err := readSecret("bearer_token_file", tokenFile)
			if err != nil {
				return err
			}
			r.Header.Set("Authorization", "Bearer "+tok)
			return nil
		}
	case basic != nil:
		return setBasicAuth(api, basic.Username, basic.PasswordFile)
	}
	return nil
}

func setBasicAuth(api *httpAPI, user, passwordFile string) error {
	if user == "" || strings.ContainsAny(user, ":\r\n") {
		return fmt.Errorf("username must be non-empty without ':' or newlines, got %q", user)
	}
	if err := checkPath("password_file", passwordFile); err != nil {
		return err
	}
	if _, err := readSecret("password_file", passwordFile); err != nil {
		return err
	}
	api.setAuth = func(r *http.Request) error {
		pw, err := readSecret("password_file", passwordFile)
		if err != nil {
			return err
		}
		r.SetBasicAuth(user, pw)
		return nil
	}
	return nil
}

func expand(m MatcherConfig, identity string) string {
	id := identity
	if m.Regex {
		id = regexp.QuoteMeta(identity)
	}
	return strings.ReplaceAll(m.Value, identityToken, id)
}

// amMatcher is a matcher in API v2.
type amMatcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	// IsEqual is absent in answers of Alertmanager before 0.22; absent
	// means true.
	IsEqual *bool `json:"isEqual,omitempty"`
}

// amSilence is both a PostableSilence (ID set to update) and a
// GettableSilence (with Status).
type amSilence struct {
	ID        string      `json:"id,omitempty"`
	Matchers  []amMatcher `json:"matchers"`
	StartsAt  time.Time   `json:"startsAt"`
	EndsAt    time.Time   `json:"endsAt"`
	CreatedBy string      `json:"createdBy"`
	Comment   string      `json:"comment"`
	Status    *struct {
		State string `json:"state"` // active, pending or expired
	} `json:"status,omitempty"`
}

func (a *alertmanager) name() string { return "alertmanager" }

func (a *alertmanager) matchersFor(identity string) []amMatcher {
	t := true
	out := make([]amMatcher, len(a.matchers))
	for i, m := range a.matchers {
		out[i] = amMatcher{Name: m.Name, Value: expand(m, identity), IsRegex: m.Regex, IsEqual: &t}
	}
	return out
}

// signetSilences lists the unexpired silences signet made for identity:
// createdBy and comment carry signet's marks and the matchers are exactly
// this host's. A silence a person made never qualifies.
func (a *alertmanager) signetSilences(ctx context.Context, identity string) ([]amSilence, error) {
	var all []amSilence
	if err := a.api.do(ctx, "list silences", http.MethodGet, "/api/v2/silences", nil, nil, nil, &all); err != nil {
		return nil, err
	}
	want := matcherKey(a.matchersFor(identity))
	var out []amSilence
	for _, s := range all {
		if s.Status == nil || (s.Status.State != "active" && s.Status.State != "pending") {
			continue
		}
		if !strings.HasPrefix(s.CreatedBy, AuthorPrefix) || !strings.HasPrefix(s.Comment, CommentPrefix) {
			continue
		}
		if matcherKey(s.Matchers) != want {
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// matcherKey is a canonical form of a set of matchers.
func matcherKey(ms []amMatcher) string {
	keys := make([]string, len(ms))
	for i, m := range ms {
		eq := m.IsEqual == nil || *m.IsEqual
		keys[i] = fmt.Sprintf("%q %t %t %q", m.Name, m.IsRegex, eq, m.Value)
	}
	sort.Strings(keys)
	return strings.Join(keys, "\n")
}

func (a *alertmanager) start(ctx context.Context, log *slog.Logger, w window) (state, error) {
	existing, err := a.signetSilences(ctx, w.identity)
	if err != nil {
		return state{}, err
	}
	sil := amSilence{
		Matchers:  a.matchersFor(w.identity),
		StartsAt:  w.from,
		EndsAt:    w.until,
		CreatedBy: AuthorPrefix + w.caller,
		Comment:   w.comment,
	}
	if len(existing) > 0 {
		// Update the first in place. Alertmanager keeps the id when only
		// the end, author or comment change and the start is the same;
		// otherwise it expires the old silence and answers a new id.
		sil.ID, sil.StartsAt = existing[0].ID, existing[0].StartsAt
	}
	var resp struct {
		SilenceID string `json:"silenceID"`
	}
	op := "create silence"
	if sil.ID != "" {
		op = "update silence " + sil.ID
	}
	if err := a.api.do(ctx, op, http.MethodPost, "/api/v2/silences", nil, nil, sil, &resp); err != nil {
		return state{}, err
	}
	if resp.SilenceID == "" {
		return state{}, fmt.Errorf("alertmanager: %s: answer holds no silenceID", op)
	}
	// More than one signet silence for this host can only come from a
	// race with another tool; keep one.
	for _, s := range existing[min(1, len(existing)):] {
		if s.ID == resp.SilenceID {
			continue
		}
		if err := a.expire(ctx, s.ID); err != nil {
			return state{}, err
		}
	}
	log.Debug("alertmanager silence set", "silence", resp.SilenceID, "until", w.until, "replaced", len(existing))
	return state{active: true, until: w.until, ids: []string{resp.SilenceID}, changed: true, replaced: len(existing)}, nil
}

func (a *alertmanager) expire(ctx context.Context, id string) error {
	if !silenceIDRE.MatchString(id) {
		return fmt.Errorf("alertmanager: want a silence id such as a UUID, got %q", id)
	}
	err := a.api.do(ctx, "expire silence "+id, http.MethodDelete, "/api/v2/silence/"+url.PathEscape(id), nil, nil, nil, nil)
	return err
}

func (a *alertmanager) end(ctx context.Context, log *slog.Logger, identity, _ string) (state, error) {
	existing, err := a.signetSilences(ctx, identity)
	if err != nil {
		return state{}, err
	}
	ids := []string{}
	for _, s := range existing {
		if err := a.expire(ctx, s.ID); err != nil {
			return state{}, err
		}
		log.Debug("alertmanager silence expired", "silence", s.ID)
		ids = append(ids, s.ID)
	}
	return state{ids: ids, changed: len(ids) > 0}, nil
}

func (a *alertmanager) status(ctx context.Context, identity string) (state, error) {
	existing, err := a.signetSilences(ctx, identity)
	if err != nil {
		return state{}, err
	}
	st := state{ids: []string{}}
	for _, s := range existing {
		st.active = true
		st.ids = append(st.ids, s.ID)
		if s.EndsAt.After(st.until) {
			st.until = s.EndsAt
		}
	}
	return st, nil
}
