// Package all is signet's plugin whitelist: importing it registers every
// plugin signetd may run. A plugin that is not listed here cannot run on any
// host, whatever the host's config says.
package all
