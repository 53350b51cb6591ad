package workflows

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/signetbus/signet/bus"
)

// Run statuses.
const (
	StatusRunning     = "running"
	StatusDone        = "done"
	StatusFailed      = "failed"
	StatusStopped     = "stopped"     // soft stop: resumable
	StatusInterrupted = "interrupted" // hard cancel: resumable
)

// Host statuses, in HostState.Status and host_done events.
const (
	HostPending        = "pending"
	HostRunning        = "running"
	HostDone           = "done"
	HostFailed         = "failed"
	HostStopped        = "stopped" // stopped by another host's failure
	HostInterrupted    = "interrupted"
	HostRolledBack     = "rolled_back"
	HostRollbackFailed = "rollback_failed"
)

// RunState is the persisted record of one run: enough to report it and to
// resume it.
type RunState struct {
	ID       string `json:"id"`
	Workflow string `json:"workflow"`
	App      string `json:"app,omitempty"`
	Env      string `json:"env,omitempty"`
	Version  string `json:"version,omitempty"`
	User     string `json:"user,omitempty"`
	// Vars are the run's template variables (version included).
	Vars    map[string]string     `json:"vars,omitempty"`
	Batches [][]string            `json:"batches"`
	Hosts   map[string]*HostState `json:"hosts"`
	// Zones maps hosts to their failure zone, for max_unavailable_per_zone;
	// a host not listed is in zone "".
	Zones map[string]string `json:"zones,omitempty"`
	// Canary is the run's canary and how far it got; nil without one.
	Canary *CanaryState `json:"canary,omitempty"`
	// Ticket and BuildURL say who asked for the run (a change ticket, the
	// CI build); every request of the run carries them.
	Ticket   string `json:"ticket,omitempty"`
	BuildURL string `json:"build_url,omitempty"`
	// Digests maps package versions to their artifacts' SHA-256: the
	// package plugin refuses a file that does not match.
	Digests map[string]string `json:"digests,omitempty"`
	Status  string            `json:"status"`
	Error   string            `json:"error,omitempty"`
	Started time.Time         `json:"started"`
	Updated time.Time         `json:"updated"`

	// Preflight is the check of the fleet before the run started: the
	// hosts expected, and those missing when --allow-missing let it start
	// without them (preflight.go).
	Preflight *Preflight `json:"preflight,omitempty"`
	// Approval is the approved plan and its approvals the run started
	// under (the two-person rule), carried again when it is resumed
	// (approval.go).
	Approval *bus.ApprovalProof `json:"approval,omitempty"`
}

// HostState is one host's recorded progress.
type HostState struct {
	Status string `json:"status"`
	// Done lists the steps that succeeded, in order.
	Done []string `json:"done,omitempty"`
	// Step is the step running or that failed.
	Step  string `json:"step,omitempty"`
	Error string `json:"error,omitempty"`
	// Marks are the rotation marks the host holds ("drained",
	// "maintenance"); any mark means out of rotation.
	Marks []string `json:"marks,omitempty"`
	// Unreached lists the hosts that did not get this host's last partial
	// broadcast (its drain or enable on a dead load balancer): their state
	// for it may be stale.
	Unreached []string `json:"unreached,omitempty"`
	// Vars are captured host variables, such as previous.
	Vars map[string]string `json:"vars,omitempty"`
	// Touched is set once a step that takes the host out of rotation
	// started on it, in any attempt of the run: on_failure rollback
	// restores every touched host.
	Touched bool `json:"touched,omitempty"`
	// Rollback is the outcome of the host's rollback ("rolled back from
	// 1.1 to 1.0", "rollback failed: ..."), "" when none ran.
	Rollback string `json:"rollback,omitempty"`
}

// NewRunState starts the record of a run.
func NewRunState(workflow string, batches [][]string, vars map[string]string) *RunState {
	st := &RunState{ID: NewRunID(), Workflow: workflow, Vars: vars, Batches: batches, Hosts: map[string]*HostState{}, Status: StatusRunning, Started: time.Now().UTC()}
	for _, b := range batches {
		for _, h := range b {
			st.Hosts[h] = &HostState{Status: HostPending}
		}
	}
	return st
}

// NewRunID returns a short random run id such as "7f3a09c1".
func NewRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (h *HostState) hasMark(m string) bool {
	for _, x := range h.Marks {
		if x == m {
			return true
		}
	}
	return false
}

// SetMark adds a rotation mark.
func (h *HostState) SetMark(m string) {
	if m != "" && !h.hasMark(m) {
		h.Marks = append(h.Marks, m)
	}
}

// ClearMark removes a rotation mark.
func (h *HostState) ClearMark(m string) {
	out := h.Marks[:0]
	for _, x := range h.Marks {
		if x != m {
			out = append(out, x)
		}
	}
	h.Marks = out
	if len(h.Marks) == 0 {
		h.Marks = nil
	}
}

// Store persists run state and holds run locks.
type Store interface {
	// Save writes the run's state under its ID.
	Save(ctx context.Context, st *RunState) error
	// Load reads a run's state; ErrNotFound when there is none.
	Load(ctx context.Context, id string) (*RunState, error)
	// Lock takes the lock name (such as "middleware/prod") for the lease's
	// holder, or returns a *LockError naming the current holder. The lock
	// is released with Unlock; a crashed holder's lock expires on its own.
	Lock(ctx context.Context, name string, lease Lease) (Held, error)
}

// Held is a lock this process holds.
type Held interface {
	// Renew proves at the store that the lock is still this run's and
	// extends it. It returns a *LockLostError when the lock was deleted,
	// expired or taken by another run, or could not be confirmed in time:
	// the run must then start nothing new.
	Renew(ctx context.Context) error
	// Unlock releases the lock if it is still this run's.
	Unlock(ctx context.Context) error
}

// LockLostError says a run no longer holds its lock.
type LockLostError struct {
	Name string
	Run  string
	Err  error
}

func (e *LockLostError) Error() string {
	return fmt.Sprintf("lock %s of run %s lost: %v", e.Name, e.Run, e.Err)
}

func (e *LockLostError) Unwrap() error { return e.Err }

// ErrStoreClosed is wrapped by a Store whose connection is closed for
// good: retrying cannot help.
var ErrStoreClosed = errors.New("workflows: the run store's connection is closed")

// ErrNotFound is returned by Store.Load for an unknown run.
var ErrNotFound = errors.New("workflows: run not found")

// Lease describes who holds a lock.
type Lease struct {
	// Kind is what is locked, "deploy" or the workflow name.
	Kind string `json:"kind"`
	// Holder is the operator, such as "alice@bastion".
	Holder string    `json:"holder"`
	Run    string    `json:"run"`
	Since  time.Time `json:"since"`
}

// LockError reports a lock held by someone else.
type LockError struct {
	Name   string
	Holder Lease
}

func (e *LockError) Error() string {
	return fmt.Sprintf("%s of %s is locked by %s run %s (since %s)", e.Holder.Kind, e.Name, e.Holder.Holder, e.Holder.Run, e.Holder.Since.Local().Format(time.TimeOnly))
}

// MemStore is an in-memory Store for tests and single-process use. Its locks
// do not expire.
type MemStore struct {
	mu    sync.Mutex
	runs  map[string][]byte
	locks map[string]Lease
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{runs: map[string][]byte{}, locks: map[string]Lease{}}
}

var _ Store = (*MemStore)(nil)

// Save implements Store. The state is copied (as JSON, like the KV store).
func (m *MemStore) Save(_ context.Context, st *RunState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("save run %s: %w", st.ID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs[st.ID] = b
	return nil
}

// Load implements Store.
func (m *MemStore) Load(_ context.Context, id string) (*RunState, error) {
	m.mu.Lock()
	b, ok := m.runs[id]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("load run %s: %w", id, ErrNotFound)
	}
	var st RunState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("load run %s: %w", id, err)
	}
	return &st, nil
}

// Update implements Updater: fn runs under the store's lock, so no write
// comes in between.
func (m *MemStore) Update(_ context.Context, id string, fn func(*RunState) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.runs[id]
	if !ok {
		return fmt.Errorf("load run %s: %w", id, ErrNotFound)
	}
	var st RunState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("load run %s: %w", id, err)
	}
	if err := fn(&st); err != nil {
		return err
	}
	b, err := json.Marshal(&st)
	if err != nil {
		return fmt.Errorf("save run %s: %w", id, err)
	}
	m.runs[id] = b
	return nil
}

// Lock implements Store.
func (m *MemStore) Lock(_ context.Context, name string, lease Lease) (Held, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.locks[name]; ok {
		return nil, &LockError{Name: name, Holder: cur}
	}
	m.locks[name] = lease
	return &memHeld{m: m, name: name, lease: lease}, nil
}

// Break deletes a lock whoever holds it, as a broker user could delete
// the lock key; tests use it.
func (m *MemStore) Break(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.locks, name)
}

type memHeld struct {
	m     *MemStore
	name  string
	lease Lease
}

func (h *memHeld) Renew(context.Context) error {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if cur, ok := h.m.locks[h.name]; !ok || cur.Run != h.lease.Run {
		return &LockLostError{Name: h.name, Run: h.lease.Run, Err: errors.New("the lock was deleted or taken by another run")}
	}
	return nil
}

func (h *memHeld) Unlock(context.Context) error {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if cur, ok := h.m.locks[h.name]; ok && cur.Run == h.lease.Run {
		delete(h.m.locks, h.name)
	}
	return nil
}
