package cli

import (
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
)

// checkCertificate refuses, before anything is signed or sent, an operator
// certificate that is not valid now: every host would refuse the request.
func checkCertificate(s ssh.Signer, now time.Time) (ssh.Signer, error) {
	cert, ok := s.PublicKey().(*ssh.Certificate)
	if !ok {
		return s, nil
	}
	if err := bus.CertValid(cert, now, 0); err != nil {
		return nil, withHint(err, "ask your certificate authority for a new certificate (ssh-keygen -s CA -I NAME -n ROLES -V +8h KEY.pub), then ssh-add the key again if you use ssh-agent")
	}
	return s, nil
}
