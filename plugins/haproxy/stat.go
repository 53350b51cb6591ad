package haproxy

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ParseError is a runtime API answer that does not have the expected shape.
// The bytes come from outside the process, so every parser returns one
// rather than guessing.
type ParseError struct {
	// What names the output being parsed: "show stat" or "show servers state".
	What string
	// Line is the 1-based line the problem is on; 0 when not tied to a line.
	Line int
	// Msg says what was expected and what was found.
	Msg string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("parse %s output: line %d: %s", e.What, e.Line, e.Msg)
	}
	return fmt.Sprintf("parse %s output: %s", e.What, e.Msg)
}

// statTable is the output of "show stat": the column names from the header
// line and one record per proxy, server or listener, in order. Columns are
// looked up by name, since HAProxy versions add columns.
type statTable struct {
	header []string
	rows   [][]string
}

// parseStat parses the CSV answer to "show stat": a header line starting
// with "# ", then records with as many fields as the header, then an empty
// line. Fields may be quoted as in RFC 4180; control characters are refused.
func parseStat(b []byte) (*statTable, error) {
	const what = "show stat"
	if !bytes.HasPrefix(b, []byte("# ")) {
		return nil, &ParseError{What: what, Line: 1, Msg: fmt.Sprintf("want a header line starting with \"# pxname\", got %q", firstLine(b))}
	}
	r := csv.NewReader(bytes.NewReader(b[2:]))
	r.ReuseRecord = false
	t := &statTable{}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, &ParseError{What: what, Line: pe.StartLine, Msg: pe.Err.Error()}
			}
			return nil, &ParseError{What: what, Msg: err.Error()}
		}
		line, _ := r.FieldPos(0)
		for _, f := range rec {
			if i := strings.IndexFunc(f, isControl); i >= 0 {
				return nil, &ParseError{What: what, Line: line, Msg: fmt.Sprintf("control character %q in field %q", f[i], f)}
			}
		}
		if t.header == nil {
			t.header = rec
			continue
		}
		t.rows = append(t.rows, rec)
	}
	if t.header == nil {
		return nil, &ParseError{What: what, Line: 1, Msg: "want a header line, got nothing"}
	}
	for _, col := range []string{"pxname", "svname", "status", "scur"} {
		if t.col(col) < 0 {
			return nil, &ParseError{What: what, Line: 1, Msg: fmt.Sprintf("header has no %q column", col)}
		}
	}
	return t, nil
}

// marshal writes the table back in the "show stat" format.
func (t *statTable) marshal() []byte {
	var buf bytes.Buffer
	buf.WriteString("# ")
	w := csv.NewWriter(&buf)
	_ = w.Write(t.header)
	_ = w.WriteAll(t.rows) // writes to a bytes.Buffer cannot fail
	buf.WriteString("\n")
	return buf.Bytes()
}

// col returns the index of the named column, or -1.
func (t *statTable) col(name string) int {
	for i, h := range t.header {
		if h == name {
			return i
		}
	}
	return -1
}

// statServer is one server line of "show stat".
type statServer struct {
	backend string
	server  string
	// status is HAProxy's status column: "UP", "DOWN", "MAINT", "DRAIN",
	// "no check", or a transition such as "UP 1/3" or "DOWN 1/2".
	status string
	// checkStatus is the last health check's result, such as "L7OK" or
	// "L4CON"; empty without checks.
	checkStatus string
	// weight is the user weight (uweight; the weight column on versions
	// without it), which "set server ... weight" changes.
	weight int64
	// sessions is scur, the sessions open on the server now.
	sessions int64
	// total is stot, the sessions the server has handled since start.
	total int64
}

// servers returns the server records: type 2 where the type column exists,
// otherwise every record that is not a FRONTEND or BACKEND aggregate.
func (t *statTable) servers() ([]statServer, error) {
	const what = "show stat"
	px, sv, st, scur := t.col("pxname"), t.col("svname"), t.col("status"), t.col("scur")
	typ, stot, chk := t.col("type"), t.col("stot"), t.col("check_status")
	wcol := t.col("uweight")
	if wcol < 0 {
		wcol = t.col("weight")
	}
	var out []statServer
	for i, row := range t.rows {
		line := i + 2
		if typ >= 0 {
			if row[typ] != "2" {
				continue
			}
		} else if row[sv] == "FRONTEND" || row[sv] == "BACKEND" {
			continue
		}
		s := statServer{backend: row[px], server: row[sv], status: row[st]}
		if s.backend == "" || s.server == "" {
			return nil, &ParseError{What: what, Line: line, Msg: "server record with an empty pxname or svname"}
		}
		var err error
		if s.sessions, err = statInt(row, scur, "scur"); err != nil {
			return nil, &ParseError{What: what, Line: line, Msg: err.Error()}
		}
		if s.total, err = statInt(row, stot, "stot"); err != nil {
			return nil, &ParseError{What: what, Line: line, Msg: err.Error()}
		}
		if s.weight, err = statInt(row, wcol, "weight"); err != nil {
			return nil, &ParseError{What: what, Line: line, Msg: err.Error()}
		}
		if chk >= 0 {
			s.checkStatus = row[chk]
		}
		out = append(out, s)
	}
	return out, nil
}

// statInt reads a counter column; an absent column or empty field is 0.
func statInt(row []string, i int, name string) (int64, error) {
	if i < 0 || row[i] == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(row[i], 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("column %s: want a non-negative integer, got %q", name, row[i])
	}
	return n, nil
}

// Admin state bits of "show servers state" (srv_admin_state), from
// HAProxy's include/haproxy/server-t.h.
const (
	admForcedMaint    = 0x01 // set server ... state maint
	admInheritedMaint = 0x02 // tracked server in maintenance
	admConfigMaint    = 0x04 // "disabled" in the config
	admForcedDrain    = 0x08 // set server ... state drain
	admInheritedDrain = 0x10 // tracked server draining
	admResolvMaint    = 0x20 // DNS resolution failed
	admHostMaint      = 0x40 // no address yet
)

// Admin states as the plugin reports them.
const (
	stateReady = "ready"
	stateDrain = "drain"
	stateMaint = "maint"
)

// serverState is one line of "show servers state".
type serverState struct {
	backend string
	server  string
	admin   int64 // srv_admin_state bits
	uweight int64 // srv_uweight
}

// forced is the state an operator set with "set server ... state": the
// state the plugin compares with what an action asks for.
func (s serverState) forced() string {
	switch {
	case s.admin&admForcedMaint != 0:
		return stateMaint
	case s.admin&admForcedDrain != 0:
		return stateDrain
	}
	return stateReady
}

// effective is the admin state in force, whatever set it: a server can be
// in maintenance because the server it tracks is, or because its DNS name
// does not resolve. A config "disabled" (CMAINT) alone does not count: it
// stays set after "state ready" puts the server back in service.
func (s serverState) effective() string {
	switch {
	case s.admin&(admForcedMaint|admInheritedMaint|admResolvMaint|admHostMaint) != 0:
		return stateMaint
	case s.admin&(admForcedDrain|admInheritedDrain) != 0:
		return stateDrain
	}
	return stateReady
}

// parseServersState parses the answer to "show servers state": a version
// line "1", a header line starting with "# ", then one space-separated line
// per server, then an empty line.
func parseServersState(b []byte) ([]serverState, error) {
	const what = "show servers state"
	lines := strings.Split(string(b), "\n")
	if strings.TrimSpace(lines[0]) != "1" {
		return nil, &ParseError{What: what, Line: 1, Msg: fmt.Sprintf("want format version 1, got %q", firstLine(b))}
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "# ") {
		return nil, &ParseError{What: what, Line: 2, Msg: "want a header line starting with \"# be_id\""}
	}
	header := strings.Fields(lines[1][2:])
	idx := map[string]int{}
	for i, h := range header {
		idx[h] = i
	}
	need := []string{"be_name", "srv_name", "srv_admin_state", "srv_uweight"}
	for _, n := range need {
		if _, ok := idx[n]; !ok {
			return nil, &ParseError{What: what, Line: 2, Msg: fmt.Sprintf("header has no %q column", n)}
		}
	}
	var out []serverState
	for i, l := range lines[2:] {
		line := i + 3
		if strings.TrimSpace(l) == "" {
			continue
		}
		if j := strings.IndexFunc(l, isControl); j >= 0 {
			return nil, &ParseError{What: what, Line: line, Msg: fmt.Sprintf("control character %q", l[j])}
		}
		f := strings.Fields(l)
		if len(f) != len(header) {
			return nil, &ParseError{What: what, Line: line, Msg: fmt.Sprintf("want %d fields as in the header, got %d", len(header), len(f))}
		}
		s := serverState{backend: f[idx["be_name"]], server: f[idx["srv_name"]]}
		var err error
		if s.admin, err = strconv.ParseInt(f[idx["srv_admin_state"]], 10, 64); err != nil || s.admin < 0 {
			return nil, &ParseError{What: what, Line: line, Msg: fmt.Sprintf("srv_admin_state: want a non-negative integer, got %q", f[idx["srv_admin_state"]])}
		}
		if s.uweight, err = strconv.ParseInt(f[idx["srv_uweight"]], 10, 64); err != nil || s.uweight < 0 {
			return nil, &ParseError{What: what, Line: line, Msg: fmt.Sprintf("srv_uweight: want a non-negative integer, got %q", f[idx["srv_uweight"]])}
		}
		out = append(out, s)
	}
	return out, nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 80 {
		b = b[:80]
	}
	return string(b)
}

// isControl reports ASCII and C1 control characters, tab included.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }
