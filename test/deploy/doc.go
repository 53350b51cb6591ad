// Package deploy holds the end-to-end tests of the rolling deploy and of
// the release, run on a whole fleet with real backends (internal/stage):
// six signed responders, a demo app installed as a real .deb at 1.0 and 1.1
// in a dpkg/apt root per host, supervised by runit, behind one real
// HAProxy, with maintenance silences in a real Alertmanager and real HTTP
// health checks.
//
// The tests watch HAProxy while deploys run, read every host's audit log,
// break hosts on purpose (a package that fails to install, an app that
// answers 500, a responder killed mid-run, the broker restarted mid-run),
// then resume and check that the fleet ends where it should. They drive
// both the Go API (deploy.Run, deploy.Resume) and the `signet deploy` and
// `signet release` commands in-process.
//
// A test skips, saying why, when a real backend is missing on the machine;
// CI installs them all, so CI skips nothing.
package deploy
