// Package all is signet's plugin whitelist: importing it registers every
// plugin signetd may run. A plugin that is not listed here cannot run on any
// host, whatever the host's config says.
package all

import (
	_ "github.com/signetbus/signet/plugins/haproxy"     // haproxy: drain, disable, enable, weight over the runtime API
	_ "github.com/signetbus/signet/plugins/health"      // health: http and tcp checks
	_ "github.com/signetbus/signet/plugins/maintenance" // maintenance: Alertmanager silences, Icinga 2 downtimes
	_ "github.com/signetbus/signet/plugins/packages"    // package: apt/dpkg and dnf/rpm
	_ "github.com/signetbus/signet/plugins/reboot"      // reboot: systemctl reboot (or the configured command)
	_ "github.com/signetbus/signet/plugins/service"     // service: systemd and runit
)
