package signetd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// writePIDFile writes pid to path without ever following a link planted
// there: the number goes into a new file created exclusively in the same
// directory, which is then renamed over path (rename replaces a link
// itself, never its target). A symbolic link or anything but a regular
// file at path is refused. remove deletes the file only if it still holds
// pid.
func writePIDFile(path string, pid int) (remove func(), err error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("pid file: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("pid file %s is a symbolic link; refusing to follow it\nhint: remove it (rm %s), or choose a path in a directory only root can write, such as /run", path, path)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("pid file %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*") // O_CREATE|O_EXCL: never an existing file or link
	if err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	want := strconv.Itoa(pid) + "\n"
	_, err = tmp.WriteString(want)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	return func() {
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			return
		}
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
			os.Remove(path)
		}
	}, nil
}
