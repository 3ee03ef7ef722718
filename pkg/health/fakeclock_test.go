package health

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a manual clock: timers fire only on Advance.
type fakeClock struct {
	mu      sync.Mutex
	cond    *sync.Cond
	now     time.Time
	timers  []*fakeTimer
	lastDur time.Duration
}

type fakeTimer struct {
	c  chan time.Time
	at time.Time
	fc *fakeClock
}

func newFakeClock() *fakeClock {
	fc := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	fc.cond = sync.NewCond(&fc.mu)
	return fc
}

func (fc *fakeClock) Now() time.Time {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.now
}

func (fc *fakeClock) NewTimer(d time.Duration) Timer {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	t := &fakeTimer{c: make(chan time.Time, 1), at: fc.now.Add(d), fc: fc}
	fc.timers = append(fc.timers, t)
	fc.lastDur = d
	fc.cond.Broadcast()
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	fc := t.fc
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for i, x := range fc.timers {
		if x == t {
			fc.timers = append(fc.timers[:i], fc.timers[i+1:]...)
			fc.cond.Broadcast()
			return true
		}
	}
	return false
}

// Advance moves time forward and fires the timers that are due.
func (fc *fakeClock) Advance(d time.Duration) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.now = fc.now.Add(d)
	keep := fc.timers[:0]
	for _, t := range fc.timers {
		if !t.at.After(fc.now) {
			t.c <- fc.now
		} else {
			keep = append(keep, t)
		}
	}
	fc.timers = keep
}

// waitTimers blocks until n timers are pending (the checker loops have
// recorded their result and armed the next check), or fails after 5 s.
func (fc *fakeClock) waitTimers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	waker := time.AfterFunc(5*time.Second, func() { // wake the waiter at the deadline
		fc.mu.Lock()
		fc.cond.Broadcast()
		fc.mu.Unlock()
	})
	defer waker.Stop()
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for len(fc.timers) < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d pending timers (have %d)", n, len(fc.timers))
		}
		fc.cond.Wait()
	}
}

func (fc *fakeClock) lastDuration() time.Duration {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.lastDur
}
