package bus

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/sshsig"
	"github.com/signetbus/signet/internal/wire"
)

// ProtocolVersion is the newest version of the request and reply payloads
// this release speaks; it also speaks MinProtocolVersion (see version.go
// for what each version is and how hosts and clients of neighbouring
// releases work together).
const ProtocolVersion = 2

// SSHSIG namespaces. A request signature can never pass as a reply
// signature, or the other way round.
const (
	RequestNamespace = "signet-request@v1"
	ReplyNamespace   = "signet-reply@v1"
)

// Sender identifies who signed a request.
type Sender struct {
	// User is the name the operator claims (their login); the host records
	// it beside the name its trust file gives the key.
	User string `json:"user"`
	// Key is the signing key's fingerprint, "SHA256:...". For a
	// certificate it is the certified key's, which signs the request.
	Key string `json:"key"`
	// Cert is the operator's user certificate (EncodeCert), when they sign
	// with one: the host trusts its authority rather than the key, and the
	// certificate's principals are the operator's roles.
	Cert string `json:"cert,omitempty"`
}

// Request is the signed payload of a request. Every field is covered by the
// signature.
type Request struct {
	Version    int            `json:"v"`
	ID         string         `json:"id"`
	Sender     Sender         `json:"sender"`
	Collective string         `json:"collective"`
	Agent      string         `json:"agent"`
	Action     string         `json:"action"`
	Params     map[string]any `json:"params,omitempty"`
	Filter     Filter         `json:"filter,omitzero"`
	// Targets names the hosts of a direct request. A host refuses a direct
	// request that does not name it.
	Targets []string `json:"targets,omitempty"`
	// Created is the signing time in Unix milliseconds.
	Created int64 `json:"created"`
	// TTL is how long the request stays valid, in seconds.
	TTL int `json:"ttl"`
	// Approval carries the approved subject and its approvals when the
	// host's policy requires approvals (the two-person rule, approval.go).
	Approval *ApprovalProof `json:"approval,omitempty"`
	// Provenance names the run, ticket and CI build behind the request,
	// and the reason of a rollback; the host audits it.
	Provenance *Provenance `json:"provenance,omitempty"`
}

// CreatedTime returns Created as a time.
func (r *Request) CreatedTime() time.Time { return time.UnixMilli(r.Created) }

// Status is the outcome of a request on one host.
type Status string

// Reply statuses.
const (
	StatusOK      Status = "ok"      // the action ran and succeeded
	StatusFailed  Status = "failed"  // the action ran, or tried to, and failed
	StatusRefused Status = "refused" // the request was refused before anything ran
)

// Refusal and failure codes carried in Reply.Code.
const (
	CodeMalformed     = "malformed"
	CodeTooLarge      = "too_large"
	CodeBadSignature  = "bad_signature"
	CodeUntrusted     = "untrusted"
	CodeExpired       = "expired"
	CodeFuture        = "future"
	CodeTTL           = "ttl_too_long"
	CodeReplay        = "replay"
	CodeInProgress    = "in_progress"
	CodeWrongHost     = "not_targeted"
	CodeCollective    = "wrong_collective"
	CodeVersion       = "version"
	CodeDenied        = "denied"
	CodeUnknownAgent  = "unknown_agent"
	CodeUnknownAction = "unknown_action"
	CodeInvalidParams = "invalid_params"
	CodeBusy          = "busy"
	CodeTimeout       = "timeout"
	CodeFailed        = "failed"
)

// Reply is the signed payload of a responder's answer.
type Reply struct {
	Version   int    `json:"v"`
	RequestID string `json:"request_id"`
	Identity  string `json:"identity"`
	Agent     string `json:"agent,omitempty"`
	Action    string `json:"action,omitempty"`
	Status    Status `json:"status"`
	// Code says why a request was refused or failed.
	Code string `json:"code,omitempty"`
	// Error is the reason, written for an operator.
	Error   string         `json:"error,omitempty"`
	Changed bool           `json:"changed,omitempty"`
	Summary string         `json:"summary,omitempty"`
	Data    map[string]any `json:"data,omitempty"`
	// Time is when the reply was signed, Unix milliseconds.
	Time int64 `json:"time"`
	// DurationMS is how long the action took.
	DurationMS int64 `json:"duration_ms"`
	// RequestDigest is FrameDigest of the exact request frame the host
	// received: it binds the reply to one signed request, so a reply to a
	// copy with another signature, or to another request, cannot stand
	// in for the answer.
	RequestDigest string `json:"request_digest,omitempty"`
	// HostCert is the host's certificate (EncodeCert), when it presents
	// one: a client trusts its authority for the identity rather than a
	// pinned host key.
	HostCert string `json:"host_cert,omitempty"`
}

// FrameDigest is the lowercase hex SHA-256 of a request frame, as carried
// in Reply.RequestDigest.
func FrameDigest(frame []byte) string {
	sum := sha256.Sum256(frame)
	return hex.EncodeToString(sum[:])
}

// NewID returns a random 128-bit request id.
func NewID() string {
	var b [16]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		panic("bus: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// Seal marshals payload, signs it under namespace and frames it.
func seal(kind wire.Kind, namespace string, signer ssh.Signer, payload any) ([]byte, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	sig, err := sshsig.Sign(rand.Reader, signer, namespace, body)
	if err != nil {
		return nil, err
	}
	return (&wire.Envelope{Kind: kind, Payload: body, Sig: sig.Marshal()}).Marshal(), nil
}

// SignRequest signs a request and returns the frame to publish. When the
// signer presents a user certificate (ssh.NewCertSigner, or an ssh-agent
// key with its certificate), SignRequest sets Sender.Cert and Sender.Key
// from it, signs with the certified key, and refuses a certificate that is
// not valid at req.Created: nothing is sent that every host would refuse.
func SignRequest(signer ssh.Signer, req *Request) ([]byte, error) {
	cert, s := certSigner(signer)
	if cert != nil {
		if cert.CertType != ssh.UserCert {
			return nil, fmt.Errorf("%w: certificate %s (serial %d) is a host certificate; sign requests with a user certificate", ErrCertificate, cert.KeyId, cert.Serial)
		}
		if err := CertValid(cert, req.CreatedTime(), 0); err != nil {
			return nil, err
		}
		req.Sender.Cert, req.Sender.Key = EncodeCert(cert), ssh.FingerprintSHA256(cert.Key)
	}
	return seal(wire.KindRequest, RequestNamespace, s, req)
}

// SignReply signs a reply with a host key. When the signer presents a host
// certificate, the reply carries it (HostCert) and is signed by the
// certified key.
func SignReply(signer ssh.Signer, rep *Reply) ([]byte, error) {
	cert, s := certSigner(signer)
	if cert != nil {
		rep.HostCert = EncodeCert(cert)
	}
	return seal(wire.KindReply, ReplyNamespace, s, rep)
}

// Opened is a frame whose payload has been decoded but whose signature has
// not yet been checked against a trusted key.
type Opened struct {
	Envelope *wire.Envelope
	Sig      *sshsig.Signature
}

func open(frame []byte, kind wire.Kind, v any, numbers bool) (*Opened, error) {
	env, err := wire.Parse(frame)
	if err != nil {
		return nil, err
	}
	if env.Kind != kind {
		return nil, fmt.Errorf("envelope carries %q, want %q", env.Kind, kind)
	}
	if err := decodePayload(env.Payload, v, numbers, true); err != nil {
		// A payload of a newer protocol may carry fields this release
		// does not know: it is decoded so that its version can be
		// refused by name (the version check comes after the signature's).
		if !newerVersion(env.Payload) || decodePayload(env.Payload, v, numbers, false) != nil {
			return nil, err
		}
	}
	sig, err := sshsig.Parse(env.Sig)
	if err != nil {
		return &Opened{Envelope: env}, err
	}
	return &Opened{Envelope: env, Sig: sig}, nil
}

func decodePayload(payload []byte, v any, numbers, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if numbers {
		// Request params keep integers exact; validation coerces them.
		dec.UseNumber()
	}
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode payload: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("decode payload: trailing data")
	}
	return nil
}

// ParseRequest decodes a request frame without checking its signature.
// When the frame and payload parse but the signature blob does not, it
// returns the request together with the error, so the refusal can name it.
func ParseRequest(frame []byte) (*Request, *Opened, error) {
	var req Request
	o, err := open(frame, wire.KindRequest, &req, true)
	if o == nil {
		return nil, nil, err
	}
	return &req, o, err
}

// ParseReply decodes a reply frame without checking its signature.
func ParseReply(frame []byte) (*Reply, *Opened, error) {
	var rep Reply
	o, err := open(frame, wire.KindReply, &rep, false)
	if o == nil {
		return nil, nil, err
	}
	return &rep, o, err
}
