// Package release runs a ticket-driven production release: `signet release
// TICKET` reads a release manifest (a title and an ordered list of "app
// version" lines) from a Jira issue, a GitHub issue, a file or a URL, asks
// the operator to confirm, then deploys each app in order through a
// Deployer, keeping the team informed in chat, mailing the timestamped log
// and posting it on the ticket, and closing the ticket when every app is out.
//
// Any error stops the release at once: no further app is deployed, the log
// with the error goes to mail, chat and the ticket, and the ticket stays
// open. A chat or mail failure never hides the deploy error; Run returns
// both, joined.
//
// The pieces are small interfaces defined here (Ticket, Notifier, Mailer,
// Deployer) so that Run can be tested against recording fakes and the real
// backends can be tested one by one against servers speaking their
// documented protocols. Config is the YAML configuration reference; see
// docs/releases.md for the operator's view.
package release
