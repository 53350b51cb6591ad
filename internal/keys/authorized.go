package keys

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/grammar"
	"github.com/signetbus/signet/internal/trustfile"
)

// ParseError reports a bad line in an authorized_keys or known_hosts file.
type ParseError struct {
	// Path is the file, when known.
	Path string
	// Line is the 1-based line number.
	Line int
	Err  error
}

func (e *ParseError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Authorized is one trusted operator key.
type Authorized struct {
	Key ssh.PublicKey
	// KeyBlob is string(Key.Marshal()), for map lookup.
	KeyBlob string
	// Name is the operator's name: the name= option, else the key comment.
	Name string
	// Roles are the roles= option, in file order.
	Roles       []string
	Fingerprint string
	// Line is where the key sits in the file.
	Line int
	// CA is true for a cert-authority line: Key is a certificate
	// authority, Roles are the roles its user certificates may grant (as
	// principals), and Name names the authority.
	CA bool
}

// maxLine bounds one line of a key file; the longest ed25519 line with
// options is far shorter.
const maxLine = 16 << 10

// LoadAuthorizedKeys reads an authorized_keys file; see
// ParseAuthorizedKeys. Whoever can write the file can trust any key, so it
// is refused when group or others can write it or a directory above it,
// or when it is owned by a user other than root and signetd's own (see
// trustfile).
func LoadAuthorizedKeys(path string) ([]Authorized, error) {
	f, err := trustfile.Open(path, trustfile.Options{What: "authorized keys"})
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer f.Close()
	out, err := ParseAuthorizedKeys(f)
	var pe *ParseError
	if errors.As(err, &pe) {
		pe.Path = path
	}
	return out, err
}

// ParseAuthorizedKeys reads the authorized_keys syntax with signet's
// options:
//
//	roles="admin,deploy",name="alice" ssh-ed25519 AAAAC3Nza... alice@laptop
//	cert-authority,roles="deploy,approver",name="corp-ca" ssh-ed25519 AAAAC3Nza... ca@corp
//
// A cert-authority line trusts the user certificates that key signs; its
// roles= are the principals (roles) such a certificate may grant, so
// OpenSSH's principals= option has no use here and is refused. roles= is required and non-empty; name= is optional and defaults to the
// key comment. Any other option is an error naming the line. Only ed25519
// and sk-ed25519 keys are accepted. Blank lines and # comments are allowed.
// A key listed twice is an error; one name may hold several keys.
func ParseAuthorizedKeys(r io.Reader) ([]Authorized, error) {
	var out []Authorized
	seen := map[string]int{}
	err := eachLine(r, func(n int, line string) error {
		pub, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return fmt.Errorf("not an authorized key line (want [options] ssh-ed25519 AAAA... [comment]): %w", err)
		}
		if len(rest) != 0 {
			return errors.New("more than one key on the line")
		}
		if err := checkType(pub); err != nil {
			return err
		}
		a := Authorized{
			Key:         pub,
			KeyBlob:     string(pub.Marshal()),
			Fingerprint: Fingerprint(pub),
			Line:        n,
		}
		if prev, dup := seen[a.KeyBlob]; dup {
			return fmt.Errorf("key %s is already listed on line %d", a.Fingerprint, prev)
		}
		seen[a.KeyBlob] = n
		haveRoles, haveName := false, false
		for _, opt := range options {
			if opt == "cert-authority" {
				if a.CA {
					return errors.New("cert-authority given twice")
				}
				a.CA = true
				continue
			}
			key, val, err := splitOption(opt)
			if err != nil {
				return err
			}
			switch key {
			case "roles":
				if haveRoles {
					return errors.New("roles= given twice")
				}
				haveRoles = true
				a.Roles, err = parseRoles(val)
				if err != nil {
					return err
				}
			case "name":
				if haveName {
					return errors.New("name= given twice")
				}
				haveName = true
				if grammar.CheckOperator(val) != nil {
					return fmt.Errorf("name=%q: want letters, digits and ._@+- (at most 64)", val)
				}
				a.Name = val
			case "principals":
				return errors.New(`principals= is not used: on a cert-authority line roles="..." lists the principals (roles) its certificates may grant`)
			default:
				return fmt.Errorf("unknown option %q: signet accepts only cert-authority, roles=\"...\" and name=\"...\"", key)
			}
		}
		if !haveRoles {
			return fmt.Errorf("key %s has no roles=\"...\" option", a.Fingerprint)
		}
		if !haveName {
			if comment == "" {
				return fmt.Errorf("key %s has neither name=\"...\" nor a comment to name it by", a.Fingerprint)
			}
			if grammar.CheckOperator(comment) != nil {
				return fmt.Errorf("key comment %q is not usable as a name: add name=\"...\"", comment)
			}
			a.Name = comment
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// splitOption splits `key="value"`; signet's options all take a quoted value.
func splitOption(opt string) (key, val string, err error) {
	key, val, ok := strings.Cut(opt, "=")
	if !ok {
		return "", "", fmt.Errorf("unknown option %q: signet accepts only cert-authority, roles=\"...\" and name=\"...\"", opt)
	}
	if len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
		return "", "", fmt.Errorf("option %s: want a quoted value such as %s=\"...\", got %s", key, key, val)
	}
	val = val[1 : len(val)-1]
	if strings.ContainsAny(val, "\"\\") {
		return "", "", fmt.Errorf("option %s: quotes and backslashes are not allowed in the value", key)
	}
	return key, val, nil
}

func parseRoles(val string) ([]string, error) {
	if strings.TrimSpace(val) == "" {
		return nil, errors.New(`roles="" is empty: list at least one role`)
	}
	var roles []string
	seen := map[string]bool{}
	for r := range strings.SplitSeq(val, ",") {
		r = strings.TrimSpace(r)
		if err := grammar.CheckRole(r); err != nil {
			return nil, err
		}
		if seen[r] {
			return nil, fmt.Errorf("role %q listed twice", r)
		}
		seen[r] = true
		roles = append(roles, r)
	}
	return roles, nil
}

// eachLine calls fn for every line that is not blank or a # comment, and
// wraps fn's errors in a *ParseError with the line number.
func eachLine(r io.Reader, fn func(n int, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(n, line); err != nil {
			return &ParseError{Line: n, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		return &ParseError{Line: n + 1, Err: err}
	}
	return nil
}
