package cli

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/signetbus/signet/bus"
)

// seconds is a duration flag that also takes a bare number of seconds,
// as mco's -t and --dt do: "5" is 5s, "1m" is a minute.
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil || *s.d == 0 {
		return ""
	}
	return s.d.String()
}

func (s seconds) Set(v string) error {
	if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 {
		*s.d = time.Duration(n * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("want seconds (5) or a duration (5s, 1m), got %q", v)
	}
	*s.d = d
	return nil
}

func (s seconds) Type() string { return "duration" }

// applyLimit parses --limit: a number of hosts, or a percentage of those
// that match ("50%", rounded up, so never zero hosts).
func (q *queryFlags) applyLimit(query *bus.Query) error {
	v := strings.TrimSpace(q.limitSpec)
	switch {
	case q.one:
		query.Limit = 1
	case v == "":
		query.Limit = q.limit
	case strings.HasSuffix(v, "%"):
		n, err := strconv.Atoi(strings.TrimSuffix(v, "%"))
		if err != nil || n < 1 || n > 100 {
			return usageErrorf("--limit %q: want a number of hosts (10) or a percentage from 1%% to 100%% (50%%)", v)
		}
		query.LimitPercent = n
	default:
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return usageErrorf("--limit %q: want a number of hosts (10) or a percentage from 1%% to 100%% (50%%)", v)
		}
		query.Limit = n
	}
	return nil
}

// nodesFromFile reads --nodes: one host identity a line, blank lines and
// # comments skipped, as mco's --nodes file.
func nodesFromFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageErrorf("--nodes: %v", err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := bus.CheckIdentity(line); err != nil {
			return nil, usageErrorf("--nodes %s:%d: %v", path, ln, err)
		}
		ids = append(ids, line)
	}
	if err := sc.Err(); err != nil {
		return nil, usageErrorf("--nodes %s: %v", path, err)
	}
	if len(ids) == 0 {
		return nil, usageErrorf("--nodes %s: no host identities in the file", path)
	}
	return ids, nil
}
