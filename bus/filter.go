package bus

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Filter selects hosts. All parts must hold; within Identity any entry may
// match. The responder evaluates it against its own identity, facts, agents
// and classes, so the client needs no inventory to broadcast.
type Filter struct {
	// Identity entries are exact names or /regex/ (-I).
	Identity []string `json:"identity,omitempty"`
	// Fact entries compare a fact (-F): key=value, key!=value, key>=n,
	// key<=n, key>n, key<n, key=~regex or key=/regex/.
	Fact []string `json:"fact,omitempty"`
	// Agent entries name agents the host must have (-A).
	Agent []string `json:"agent,omitempty"`
	// Class entries name classes the host must have, or /regex/ (-C).
	Class []string `json:"class,omitempty"`
	// Compound is a boolean expression (-S) over fact comparisons and class
	// names with and, or, not and parentheses:
	// "zone=a and (env=dev or env=lab) and not web".
	Compound string `json:"compound,omitempty"`
}

// IsZero reports whether the filter selects every host.
func (f Filter) IsZero() bool {
	return len(f.Identity) == 0 && len(f.Fact) == 0 && len(f.Agent) == 0 && len(f.Class) == 0 && f.Compound == ""
}

// Node is what a filter is evaluated against.
type Node struct {
	Identity string
	Facts    map[string]string
	Agents   []string
	Classes  []string
}

// Matcher is a compiled filter.
type Matcher struct {
	identity []matchFunc
	rest     []matchFunc
}

type matchFunc func(*Node) bool

// FilterError reports an invalid filter expression.
type FilterError struct {
	Expr string
	Msg  string
}

func (e *FilterError) Error() string { return fmt.Sprintf("filter %q: %s", e.Expr, e.Msg) }

const maxFilterLen = 4096

// Compile checks the filter and prepares it for matching.
func (f Filter) Compile() (*Matcher, error) {
	m := &Matcher{}
	total := len(f.Compound)
	for _, id := range f.Identity {
		total += len(id)
		fn, err := stringMatcher(id)
		if err != nil {
			return nil, err
		}
		m.identity = append(m.identity, func(n *Node) bool { return fn(n.Identity) })
	}
	for _, e := range f.Fact {
		total += len(e)
		fn, err := compileFact(e)
		if err != nil {
			return nil, err
		}
		m.rest = append(m.rest, fn)
	}
	for _, a := range f.Agent {
		a := a
		m.rest = append(m.rest, func(n *Node) bool { return slices.Contains(n.Agents, a) })
	}
	for _, c := range f.Class {
		fn, err := stringMatcher(c)
		if err != nil {
			return nil, err
		}
		m.rest = append(m.rest, func(n *Node) bool { return anyMatch(n.Classes, fn) })
	}
	if f.Compound != "" {
		fn, err := compileCompound(f.Compound)
		if err != nil {
			return nil, err
		}
		m.rest = append(m.rest, fn)
	}
	if total > maxFilterLen {
		return nil, &FilterError{Expr: "(filter)", Msg: fmt.Sprintf("longer than %d bytes", maxFilterLen)}
	}
	return m, nil
}

// Match reports whether the node is selected.
func (m *Matcher) Match(n *Node) bool {
	if len(m.identity) > 0 {
		ok := false
		for _, fn := range m.identity {
			if fn(n) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, fn := range m.rest {
		if !fn(n) {
			return false
		}
	}
	return true
}

func stringMatcher(s string) (func(string) bool, error) {
	if len(s) >= 2 && strings.HasPrefix(s, "/") && strings.HasSuffix(s, "/") {
		re, err := regexp.Compile(s[1 : len(s)-1])
		if err != nil {
			return nil, &FilterError{Expr: s, Msg: "bad regular expression: " + err.Error()}
		}
		return re.MatchString, nil
	}
	if s == "" {
		return nil, &FilterError{Expr: s, Msg: "empty"}
	}
	return func(v string) bool { return v == s }, nil
}

var factOps = []string{"!=", ">=", "<=", "=~", "=", ">", "<"}

func compileFact(expr string) (matchFunc, error) {
	key, op, val, ok := splitFact(expr)
	if !ok {
		return nil, &FilterError{Expr: expr, Msg: "want key=value, key!=value, key>=n, key<=n, key>n, key<n or key=~regex"}
	}
	get := func(n *Node) (string, bool) {
		switch key {
		case "identity":
			return n.Identity, true
		}
		v, ok := n.Facts[key]
		return v, ok
	}
	if op == "=" && len(val) >= 2 && strings.HasPrefix(val, "/") && strings.HasSuffix(val, "/") {
		op, val = "=~", val[1:len(val)-1]
	}
	switch op {
	case "=":
		return func(n *Node) bool { v, ok := get(n); return ok && v == val }, nil
	case "!=":
		return func(n *Node) bool { v, ok := get(n); return !ok || v != val }, nil
	case "=~":
		re, err := regexp.Compile(val)
		if err != nil {
			return nil, &FilterError{Expr: expr, Msg: "bad regular expression: " + err.Error()}
		}
		return func(n *Node) bool { v, ok := get(n); return ok && re.MatchString(v) }, nil
	}
	want, err := strconv.ParseFloat(val, 64)
	if err != nil {
		return nil, &FilterError{Expr: expr, Msg: fmt.Sprintf("%s needs a number, got %q", op, val)}
	}
	cmp := map[string]func(a, b float64) bool{
		">=": func(a, b float64) bool { return a >= b },
		"<=": func(a, b float64) bool { return a <= b },
		">":  func(a, b float64) bool { return a > b },
		"<":  func(a, b float64) bool { return a < b },
	}[op]
	return func(n *Node) bool {
		v, ok := get(n)
		if !ok {
			return false
		}
		f, err := strconv.ParseFloat(v, 64)
		return err == nil && cmp(f, want)
	}, nil
}

func splitFact(expr string) (key, op, val string, ok bool) {
	best := -1
	for _, o := range factOps {
		if i := strings.Index(expr, o); i > 0 && (best < 0 || i < best || (i == best && len(o) > len(op))) {
			best, op = i, o
		}
	}
	if best <= 0 {
		return "", "", "", false
	}
	key, val = strings.TrimSpace(expr[:best]), strings.TrimSpace(expr[best+len(op):])
	if key == "" || strings.ContainsAny(key, " \t()") {
		return "", "", "", false
	}
	return key, op, val, true
}

func anyMatch(list []string, fn func(string) bool) bool {
	for _, v := range list {
		if fn(v) {
			return true
		}
	}
	return false
}

// compound expressions: a tiny recursive-descent parser.
//
//	expr   = term { "or" term }
//	term   = factor { "and" factor }
//	factor = "not" factor | "!" factor | "(" expr ")" | atom
//	atom   = fact comparison | class name

type compoundParser struct {
	src  string
	toks []string
	pos  int
}

func compileCompound(src string) (matchFunc, error) {
	p := &compoundParser{src: src, toks: tokenize(src)}
	if len(p.toks) == 0 {
		return nil, &FilterError{Expr: src, Msg: "empty expression"}
	}
	fn, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, &FilterError{Expr: src, Msg: fmt.Sprintf("unexpected %q", p.toks[p.pos])}
	}
	return fn, nil
}

func tokenize(s string) []string {
	var toks []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			toks = append(toks, cur.String())
			cur.Reset()
		}
	}
	for _, r := range s {
		switch {
		case r == '(' || r == ')':
			flush()
			toks = append(toks, string(r))
		case r == ' ' || r == '\t' || r == '\n':
			flush()
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	return toks
}

func (p *compoundParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *compoundParser) expr() (matchFunc, error) {
	left, err := p.term()
	if err != nil {
		return nil, err
	}
	for strings.EqualFold(p.peek(), "or") {
		p.pos++
		right, err := p.term()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(n *Node) bool { return l(n) || right(n) }
	}
	return left, nil
}

func (p *compoundParser) term() (matchFunc, error) {
	left, err := p.factor()
	if err != nil {
		return nil, err
	}
	for strings.EqualFold(p.peek(), "and") {
		p.pos++
		right, err := p.factor()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(n *Node) bool { return l(n) && right(n) }
	}
	return left, nil
}

func (p *compoundParser) factor() (matchFunc, error) {
	tok := p.peek()
	switch {
	case tok == "":
		return nil, &FilterError{Expr: p.src, Msg: "unexpected end of expression"}
	case strings.EqualFold(tok, "not") || tok == "!":
		p.pos++
		inner, err := p.factor()
		if err != nil {
			return nil, err
		}
		return func(n *Node) bool { return !inner(n) }, nil
	case tok == "(":
		p.pos++
		inner, err := p.expr()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, &FilterError{Expr: p.src, Msg: "missing )"}
		}
		p.pos++
		return inner, nil
	case tok == ")" || strings.EqualFold(tok, "and") || strings.EqualFold(tok, "or"):
		return nil, &FilterError{Expr: p.src, Msg: fmt.Sprintf("unexpected %q", tok)}
	}
	p.pos++
	if _, _, _, ok := splitFact(tok); ok {
		return compileFact(tok)
	}
	fn, err := stringMatcher(tok)
	if err != nil {
		return nil, err
	}
	return func(n *Node) bool { return anyMatch(n.Classes, fn) }, nil
}
