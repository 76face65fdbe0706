package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrBusy is matched (errors.Is) by the *BusyError a Hasher returns when it
// refuses work: its queue is full, or a caller waited QueueTimeout.
var ErrBusy = errors.New("password: hasher busy")

// BusyError is returned when admission control refuses a hash. The HTTP edge
// answers 503 with a Retry-After header of RetryAfter().
type BusyError struct {
	Reason     string // "queue full" or "queue timeout"
	retryAfter time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("password: hasher busy (%s), retry after %s", e.Reason, e.retryAfter)
}

// Is makes errors.Is(err, ErrBusy) hold.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// RetryAfter estimates when a retry could be served: the recent mean hash
// time × (callers waiting + 1) / MaxConcurrent, rounded up to whole seconds
// (Retry-After is in seconds), at least 1 s and at most 60 s.
func (e *BusyError) RetryAfter() time.Duration { return e.retryAfter }

// Config configures a Hasher. Zero fields take their defaults.
type Config struct {
	Params        Params                // default DefaultParams()
	MaxConcurrent int                   // hashes computed at once; default runtime.NumCPU()
	MaxQueue      int                   // callers allowed to wait; default 4 × MaxConcurrent; negative means none
	QueueTimeout  time.Duration         // longest wait for a slot; default 2 s
	Rand          io.Reader             // salt source; default crypto/rand
	Registerer    prometheus.Registerer // optional; metrics are named ward_password_*
}

// Hasher hashes and verifies passwords under admission control. It is safe
// for concurrent use.
type Hasher struct {
	params       Params
	rand         io.Reader
	slots        chan struct{}
	maxQueue     int
	queueTimeout time.Duration
	dummy        PHC
	m            *metrics

	mu       sync.Mutex
	queued   int
	meanHash time.Duration // exponentially weighted mean of recent hash times

	// key computes the argon2id key; tests replace it to control timing.
	key func(password, salt []byte, p Params) []byte
	// onQueued, when set by a test, runs after a caller joins the queue.
	onQueued func()
}

// New returns a Hasher configured by c.
func New(c Config) (*Hasher, error) {
	if c.Params == (Params{}) {
		c.Params = DefaultParams()
	}
	if err := c.Params.Validate(); err != nil {
		return nil, fmt.Errorf("password: invalid params: %w", err)
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = runtime.NumCPU()
	}
	switch {
	case c.MaxQueue == 0:
		c.MaxQueue = 4 * c.MaxConcurrent
	case c.MaxQueue < 0:
		c.MaxQueue = 0
	}
	if c.QueueTimeout <= 0 {
		c.QueueTimeout = 2 * time.Second
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	h := &Hasher{
		params:       c.Params,
		rand:         c.Rand,
		slots:        make(chan struct{}, c.MaxConcurrent),
		maxQueue:     c.MaxQueue,
		queueTimeout: c.QueueTimeout,
		key:          idKey,
	}
	// The dummy hash for unknown users: current parameters, random salt and
	// random key. No password can be found to match it, and verifying
	// against it costs exactly what a real verification costs.
	h.dummy = PHC{Params: c.Params, Salt: make([]byte, c.Params.SaltLen), Key: make([]byte, c.Params.KeyLen)}
	if _, err := io.ReadFull(c.Rand, h.dummy.Salt); err != nil {
		return nil, fmt.Errorf("password: reading random salt: %w", err)
	}
	if _, err := io.ReadFull(c.Rand, h.dummy.Key); err != nil {
		return nil, fmt.Errorf("password: reading random bytes: %w", err)
	}
	m, err := newMetrics(c.Registerer)
	if err != nil {
		return nil, err
	}
	h.m = m
	return h, nil
}

// Params returns the parameters new hashes are made with.
func (h *Hasher) Params() Params { return h.params }

// Hash draws a salt and returns the PHC string of password's argon2id hash
// with the current parameters. It fails with a *BusyError (ErrBusy) when
// admission control refuses, or with ctx's error if ctx ends while waiting.
// A hash that has started runs to completion.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	if _, err := io.ReadFull(h.rand, salt); err != nil {
		return "", fmt.Errorf("password: reading random salt: %w", err)
	}
	p := h.params
	key, err := h.compute(ctx, []byte(password), salt, p)
	if err != nil {
		return "", err
	}
	return PHC{Params: p, Salt: salt, Key: key}.String(), nil
}

// Verify reports whether password matches the stored PHC string, and, when
// it does, whether the hash should be replaced by one made with the current
// parameters (needsRehash). A malformed or out-of-bounds stored hash fails
// with an error matching ErrMalformedHash before any work is done.
func (h *Hasher) Verify(ctx context.Context, phc string, password string) (ok, needsRehash bool, err error) {
	stored, err := ParsePHC(phc)
	if err != nil {
		return false, false, err
	}
	ok, err = h.verify(ctx, stored, password)
	if err != nil || !ok {
		return false, false, err
	}
	return true, stored.Params != h.params, nil
}

// VerifyDummy verifies password against a fixed hash that nothing matches,
// made with the current parameters. Call it when the account does not exist
// so the response takes as long as for a real account (no user enumeration
// by timing). Its only possible results are admission-control and context
// errors, which a real verification would have met too.
func (h *Hasher) VerifyDummy(ctx context.Context, password string) error {
	_, err := h.verify(ctx, h.dummy, password)
	return err
}

func (h *Hasher) verify(ctx context.Context, stored PHC, password string) (bool, error) {
	key, err := h.compute(ctx, []byte(password), stored.Salt, stored.Params)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(key, stored.Key) == 1, nil
}

// compute runs one argon2id computation inside an admission slot.
func (h *Hasher) compute(ctx context.Context, password, salt []byte, p Params) ([]byte, error) {
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	defer h.release()
	start := time.Now()
	key := h.key(password, salt, p)
	h.observe(time.Since(start))
	return key, nil
}

func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case h.slots <- struct{}{}:
		h.m.inFlight.Inc()
		return nil
	default:
	}

	h.mu.Lock()
	if h.queued >= h.maxQueue {
		err := h.busyLocked("queue full")
		h.mu.Unlock()
		return err
	}
	h.queued++
	h.mu.Unlock()
	h.m.queued.Inc()
	defer func() {
		h.mu.Lock()
		h.queued--
		h.mu.Unlock()
		h.m.queued.Dec()
	}()
	if h.onQueued != nil {
		h.onQueued()
	}

	timer := time.NewTimer(h.queueTimeout)
	defer timer.Stop()
	// Blocked senders on a channel are served in arrival order, so the
	// queue is FIFO.
	select {
	case h.slots <- struct{}{}:
		if err := ctx.Err(); err != nil {
			<-h.slots
			return err
		}
		h.m.inFlight.Inc()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.busyLocked("queue timeout")
	}
}

func (h *Hasher) release() {
	h.m.inFlight.Dec()
	<-h.slots
}

func (h *Hasher) busyLocked(reason string) *BusyError {
	h.m.busy.Inc()
	est := time.Duration(float64(h.meanHash) * float64(h.queued+1) / float64(cap(h.slots)))
	secs := math.Ceil(est.Seconds())
	secs = max(1, min(secs, 60))
	return &BusyError{Reason: reason, retryAfter: time.Duration(secs) * time.Second}
}

func (h *Hasher) observe(d time.Duration) {
	h.m.hashSeconds.Observe(d.Seconds())
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.meanHash == 0 {
		h.meanHash = d
		return
	}
	// Weight 1/8 for the newest sample: follows load changes within a few
	// dozen hashes without jumping on one outlier.
	h.meanHash += (d - h.meanHash) / 8
}
