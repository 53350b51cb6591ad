// Package trustfile reads the files signetd takes its trust from (the host
// key, authorized_keys, the policy, its own config) only when nobody but
// root or signetd's own user could have written them.
//
// A file is refused when it, or any directory above it (before and after
// following symbolic links), is writable by group or others (a directory
// with the sticky bit, such as /tmp, is allowed), or is owned by a user
// other than root and the user signetd runs as. A private file (the host
// key) must also not be readable by group or others. The checks are made
// on the opened file, so the file read is the file checked.
package trustfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrUnsafe is wrapped by every refusal of a file or directory.
var ErrUnsafe = errors.New("trustfile: unsafe to trust")

// Error says which file or directory is unsafe, why, and how to fix it.
type Error struct {
	// What names the input: "policy", "authorized keys", "host key".
	What string
	// Path is the file or directory at fault.
	Path string
	// Link is the configured path when it is a symbolic link to Path.
	Link    string
	Problem string
	Hint    string
}

func (e *Error) Error() string {
	if e.Link != "" {
		return fmt.Sprintf("%s: %s (the target of %s) %s\nhint: %s", e.What, e.Path, e.Link, e.Problem, e.Hint)
	}
	return fmt.Sprintf("%s: %s %s\nhint: %s", e.What, e.Path, e.Problem, e.Hint)
}

func (e *Error) Unwrap() error { return ErrUnsafe }

// Options say what kind of file is checked.
type Options struct {
	// What names the input in errors: "policy", "authorized keys".
	What string
	// Private refuses a file group or others can read (private keys).
	Private bool
	// MaxBytes bounds the file; zero means 1 MiB.
	MaxBytes int64
}

// euid is the user whose files, besides root's, are trusted. A variable
// so tests can pretend to run as another user.
var euid = os.Geteuid()

// ReadFile checks path as Check does and returns its content.
func ReadFile(path string, o Options) ([]byte, error) {
	f, err := Open(path, o)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	max := o.MaxBytes
	if max <= 0 {
		max = 1 << 20
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", o.What, path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: %s is larger than %d bytes", o.What, path, max)
	}
	return data, nil
}

// Open opens path for reading after checking the opened file and every
// directory above it. The error for a missing file wraps fs.ErrNotExist.
func Open(path string, o Options) (*os.File, error) {
	if o.What == "" {
		o.What = "file"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.What, err)
	}
	if err := check(f, path, o); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Check checks path without reading it.
func Check(path string, o Options) error {
	f, err := Open(path, o)
	if err != nil {
		return err
	}
	return f.Close()
}

func check(f *os.File, path string, o Options) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", o.What, err)
	}
	if !fi.Mode().IsRegular() {
		return &Error{What: o.What, Path: path, Problem: fmt.Sprintf("is not a regular file (%s)", fi.Mode().Type()), Hint: "point the config at a regular file"}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("%s: %w", o.What, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("%s: %w", o.What, err)
	}
	if real != abs {
		// The file read is the target of the link: check and name it.
		if err := checkInfo(o, real, fi, o.Private); err != nil {
			err.Link = path
			return err
		}
	} else if err := checkInfo(o, path, fi, o.Private); err != nil {
		return err
	}
	// Whoever can write a directory above the file (or above the link to
	// it) can swap the file.
	seen := map[string]bool{}
	for _, start := range []string{abs, real} {
		for d := filepath.Dir(start); !seen[d]; d = filepath.Dir(d) {
			seen[d] = true
			di, err := os.Stat(d)
			if err != nil {
				return fmt.Errorf("%s: %w", o.What, err)
			}
			if err := checkInfo(o, d, di, false); err != nil {
				return err
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	return nil
}

// checkInfo checks one file or directory's owner and mode.
func checkInfo(o Options, path string, fi fs.FileInfo, private bool) *Error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &Error{What: o.What, Path: path, Problem: "has no owner this system can read", Hint: "run signetd on Linux or another Unix"}
	}
	if st.Uid != 0 && int(st.Uid) != euid {
		return &Error{What: o.What, Path: path, Problem: fmt.Sprintf("is owned by uid %d, neither root nor the uid signetd runs as (%d)", st.Uid, euid),
			Hint: "chown root " + path}
	}
	perm := fi.Mode().Perm()
	dir := fi.IsDir()
	switch {
	case dir && perm&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
		return &Error{What: o.What, Path: path, Problem: fmt.Sprintf("has mode %04o: a directory group or others can write, so they can replace the file in it", perm),
			Hint: "chmod go-w " + path}
	case !dir && private && perm&0o077 != 0:
		return &Error{What: o.What, Path: path, Problem: fmt.Sprintf("has mode %04o: group and others must not have access to a private key", perm),
			Hint: "chmod 600 " + path}
	case !dir && perm&0o022 != 0:
		return &Error{What: o.What, Path: path, Problem: fmt.Sprintf("has mode %04o: group or others can write it", perm),
			Hint: "chmod 644 " + path}
	}
	return nil
}
