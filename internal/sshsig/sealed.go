package sshsig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"
)

// ErrUntrustedSigner is returned by OpenSigned for a valid signature made
// by a key that is not among the trusted ones.
var ErrUntrustedSigner = errors.New("sshsig: signed by a key that is not trusted")

// SignJSON marshals v and signs the JSON bytes under namespace. It
// returns the bytes that were signed and the signature in wire form: a
// document kept on the broker (run state, release records) stores both,
// so that the exact signed bytes are what is verified.
func SignJSON(rand io.Reader, signer ssh.Signer, namespace string, v any) (body, sig []byte, err error) {
	if signer == nil {
		return nil, nil, errors.New("sshsig: a signer is required")
	}
	if body, err = json.Marshal(v); err != nil {
		return nil, nil, err
	}
	s, err := Sign(rand, signer, namespace, body)
	if err != nil {
		return nil, nil, err
	}
	return body, s.Marshal(), nil
}

// OpenSigned verifies sig (wire form) over body under namespace and
// returns the key that made it, which must be one of trusted (otherwise
// ErrUntrustedSigner, with the key). Any other error means the signature
// does not verify over these bytes.
func OpenSigned(sig []byte, namespace string, body []byte, trusted []ssh.PublicKey) (ssh.PublicKey, error) {
	s, err := Parse(sig)
	if err != nil {
		return nil, err
	}
	pub, err := s.Verify(namespace, body)
	if err != nil {
		return nil, err
	}
	for _, k := range trusted {
		if k != nil && bytes.Equal(k.Marshal(), pub.Marshal()) {
			return pub, nil
		}
	}
	return pub, fmt.Errorf("%w: %s", ErrUntrustedSigner, ssh.FingerprintSHA256(pub))
}
