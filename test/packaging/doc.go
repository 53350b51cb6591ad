// Package packaging tests the .deb and .rpm packages that
// `go run ./packaging` builds: their files, owners, modes and conffiles,
// the systemd units (systemd-analyze verify), the logrotate config, and,
// as root, a real `dpkg --root` install into a throwaway root whose
// postinst creates the host key and whose upgrade keeps it.
package packaging
