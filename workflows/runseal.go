package workflows

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/lazyre"
	"github.com/signetbus/signet/internal/sshsig"
)

// RunStateNamespace is the SSHSIG namespace of a signed run state; a
// signature made for a request or a reply can never pass for one.
const RunStateNamespace = "signet-runstate@v1"

// Errors of a run state read back from the broker.
var (
	// ErrStateUnsigned: the stored state carries no signature.
	ErrStateUnsigned = errors.New("workflows: run state is not signed")
	// ErrStateSignature: the signature does not verify over the stored
	// bytes: someone changed the state after it was written.
	ErrStateSignature = errors.New("workflows: run state signature does not verify (the state was changed after it was written)")
	// ErrStateSigner: the state was signed by a key that may not resume it.
	ErrStateSigner = errors.New("workflows: run state was signed by a key that is not allowed to resume it")
	// ErrStateInvalid: the state fails the checks of a new run's input.
	ErrStateInvalid = errors.New("workflows: invalid run state")
)

// sealedState is how a run state is stored: the exact JSON bytes that were
// signed and the SSHSIG over them (wire form).
type sealedState struct {
	State json.RawMessage `json:"state,omitempty"`
	// StateGzip is State gzip-compressed, for a state over
	// sealCompressAbove (a run approved as a plan of thousands of hosts
	// keeps the plan): the signature is over the uncompressed bytes.
	StateGzip []byte `json:"state_gzip,omitempty"`
	Signature []byte `json:"signature"`
}

const (
	// sealCompressAbove is the size above which a sealed state is
	// compressed; smaller states are stored as before.
	sealCompressAbove = 64 << 10
	// maxStateBytes bounds a decompressed state.
	maxStateBytes = 64 << 20
)

// SealRunState marshals st and signs the bytes with signer under
// RunStateNamespace.
func SealRunState(signer ssh.Signer, st *RunState) ([]byte, error) {
	if signer == nil {
		return nil, errors.New("workflows: a signer is required to save run state")
	}
	b, sig, err := sshsig.SignJSON(rand.Reader, signer, RunStateNamespace, st)
	if err != nil {
		return nil, fmt.Errorf("sign run state: %w", err)
	}
	if len(b) > sealCompressAbove {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		if _, err := zw.Write(b); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		return json.Marshal(sealedState{StateGzip: z.Bytes(), Signature: sig})
	}
	return json.Marshal(sealedState{State: b, Signature: sig})
}

// OpenRunState verifies a sealed state and returns it with its signer. The
// signer must be one of trusted; the state must pass Validate.
func OpenRunState(b []byte, trusted []ssh.PublicKey) (*RunState, ssh.PublicKey, error) {
	var sealed sealedState
	if err := json.Unmarshal(b, &sealed); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrStateInvalid, err)
	}
	if len(sealed.StateGzip) > 0 {
		if len(sealed.State) > 0 {
			return nil, nil, fmt.Errorf("%w: both a state and a compressed one", ErrStateInvalid)
		}
		zr, err := gzip.NewReader(bytes.NewReader(sealed.StateGzip))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrStateInvalid, err)
		}
		b, err := io.ReadAll(io.LimitReader(zr, maxStateBytes+1))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrStateInvalid, err)
		}
		if len(b) > maxStateBytes {
			return nil, nil, fmt.Errorf("%w: over %d bytes uncompressed", ErrStateInvalid, maxStateBytes)
		}
		sealed.State = b
	}
	if len(sealed.Signature) == 0 || len(sealed.State) == 0 {
		return nil, nil, ErrStateUnsigned
	}
	pub, err := sshsig.OpenSigned(sealed.Signature, RunStateNamespace, sealed.State, trusted)
	switch {
	case errors.Is(err, sshsig.ErrUntrustedSigner):
		return nil, pub, fmt.Errorf("%w: %s", ErrStateSigner, ssh.FingerprintSHA256(pub))
	case err != nil:
		return nil, nil, fmt.Errorf("%w: %w", ErrStateSignature, err)
	}
	dec := json.NewDecoder(bytes.NewReader(sealed.State))
	dec.DisallowUnknownFields()
	var st RunState
	if err := dec.Decode(&st); err != nil {
		return nil, pub, fmt.Errorf("%w: %w", ErrStateInvalid, err)
	}
	if err := st.Validate(); err != nil {
		return nil, pub, err
	}
	return &st, pub, nil
}

var (
	versionRE = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9.+~:_-]{0,127}$`)
)

// ValidVersion reports whether v is an acceptable package version. It is
// the one version grammar of deploys and run states.
func ValidVersion(v string) bool { return versionRE.MatchString(v) }

// Validate checks a run state as strictly as a new run's input: names,
// version, variables, at least one host, every host a valid identity that
// appears once in the batches and has a record.
func (st *RunState) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrStateInvalid, fmt.Sprintf(format, a...))
	}
	if !ValidName(st.ID) {
		return bad("run id: want lowercase letters and digits, found %q", st.ID)
	}
	if !ValidName(st.Workflow) {
		return bad("workflow: want a workflow name, found %q", st.Workflow)
	}
	if st.App != "" && !ValidName(st.App) {
		return bad("app: want an app name, found %q", st.App)
	}
	if st.Env != "" && !ValidName(st.Env) {
		return bad("env: want an environment name, found %q", st.Env)
	}
	if st.Version != "" && !ValidVersion(st.Version) {
		return bad("version: want a package version such as 1.4.2, found %q", st.Version)
	}
	for k := range st.Vars {
		if !varNameRE.MatchString(k) {
			return bad("vars: want variable names of letters, digits and '_', found %q", k)
		}
	}
	if v, ok := st.Vars["version"]; ok && v != st.Version {
		return bad("vars: version %q differs from the run's version %q", v, st.Version)
	}
	if v, ok := st.Vars["env"]; ok && v != st.Env {
		return bad("vars: env %q differs from the run's env %q", v, st.Env)
	}
	if v, ok := st.Vars["app"]; ok && st.App != "" && v != st.App {
		return bad("vars: app %q differs from the run's app %q", v, st.App)
	}
	for _, k := range []string{"identity", "previous", "target_version"} {
		if _, ok := st.Vars[k]; ok {
			return bad("vars: %s is reserved", k)
		}
	}
	seen := map[string]bool{}
	for i, b := range st.Batches {
		if len(b) == 0 {
			return bad("batch %d has no hosts", i+1)
		}
		for _, h := range b {
			if err := bus.CheckIdentity(h); err != nil {
				return bad("batch %d: %v", i+1, err)
			}
			if seen[h] {
				return bad("host %s appears twice in the batches", h)
			}
			seen[h] = true
		}
	}
	if len(seen) == 0 {
		return bad("the run has no hosts")
	}
	for h := range seen {
		if st.Hosts[h] == nil {
			return bad("host %s has no record", h)
		}
	}
	var extra []string
	for h, hs := range st.Hosts {
		if !seen[h] {
			extra = append(extra, h)
		}
		if hs == nil {
			return bad("host %s has no record", h)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return bad("hosts %v are recorded but in no batch", extra)
	}
	for h, z := range st.Zones {
		if !seen[h] || len(z) > 128 {
			return bad("zones: host %s is in no batch or its zone is longer than 128 bytes", h)
		}
	}
	if st.Canary != nil {
		if err := st.Canary.validate(seen); err != nil {
			return bad("%v", err)
		}
	}
	switch st.Status {
	case StatusRunning, StatusDone, StatusFailed, StatusStopped, StatusInterrupted, StatusWaiting:
	default:
		return bad("status: unknown %q", st.Status)
	}
	return st.validateProvenance()
}
