package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// suppressionsChannel is where migration 00008's trigger announces every
// change to sms.suppressions.
const suppressionsChannel = "sms_suppressions"

// Suppressions answers from memory whether an account's recipient opted
// out, so that the send path can ask for every message at the cost of a
// map lookup. An account's list is read whole on first use (up to
// MaxPerAccount phones; beyond that, answers are remembered phone by
// phone), and kept current by PostgreSQL's notifications: every change to
// sms.suppressions announces itself at commit (migration 00008) and the
// cache forgets what changed. Changes made through Inbound in this process
// are forgotten before the call that made them returns; those of other
// replicas once their notification arrives, milliseconds after the
// commit. Until the listener is connected, while it is not, and while a
// heartbeat this replica sent on the channel goes unheard for Silence (a
// connection dead without a reset), every question is a query: one
// primary-key lookup. Either way the processor's claim checks the table
// itself, so a message accepted in that window is still not sent.
type Suppressions struct {
	db  *sqlx.DB
	dsn string
	log zerolog.Logger
	lc  platform.Lifecycle

	// The settings below are set before Start.

	// MaxPerAccount is the largest list read whole. Defaults to 100,000.
	MaxPerAccount int
	// MaxAccounts is how many accounts' lists are kept; past it the cache
	// starts over. Defaults to 10,000.
	MaxAccounts int
	// Heartbeat is how often this replica sends a notification to hear it
	// back (one pg_notify through the pool). Defaults to 1s.
	Heartbeat time.Duration
	// Silence is how long a heartbeat sent may go unheard before the
	// cache is no longer trusted (until something is heard). Defaults to 5s.
	Silence time.Duration

	mu sync.RWMutex
	// connected: the listener is listening; silent: it heard nothing for
	// Silence. The cache is used only while live (connected and not silent).
	connected, silent, live bool
	accounts                map[int64]*suppressedSet
	loading                 map[int64]*setLoad
	became                  chan struct{} // closed when first live
	becameOnce              sync.Once

	// queries counts lookups that went to the database (tests).
	queries atomic.Int64
	// notified, when set (tests, before Start), is called after each
	// notification is applied; liveness with each change of live.
	notified func(payload string)
	liveness func(live bool)
}

// suppressedSet is what the cache knows of one account.
type suppressedSet struct {
	// complete: known holds every suppressed phone of the account (and
	// only those), so a phone not in it is not suppressed unless unsure.
	complete bool
	known    map[string]bool
	// unsure are phones of a complete set that changed since it was read.
	unsure map[string]struct{}
	// seq counts changes, so that an answer read before one is not kept.
	seq uint64
}

func (t *suppressedSet) lookup(phone string) (suppressed, known bool) {
	if v, ok := t.known[phone]; ok {
		return v, true
	}
	if _, u := t.unsure[phone]; t.complete && !u {
		return false, true
	}
	return false, false
}

func (t *suppressedSet) forget(phone string) {
	delete(t.known, phone)
	if t.complete {
		t.unsure[phone] = struct{}{}
	}
	t.seq++
}

func (t *suppressedSet) remember(phone string, suppressed bool, max int) {
	if t.complete {
		delete(t.unsure, phone)
		if suppressed {
			t.known[phone] = true
		}
		return
	}
	if len(t.known) >= max {
		clear(t.known)
	}
	t.known[phone] = suppressed
}

// setLoad is a read of an account's list in flight; others wait for it.
type setLoad struct {
	done  chan struct{}
	stale bool // a change came while reading: don't keep what was read
}

// NewSuppressions returns a cache of the suppressions in db, kept current
// by a listener on its own connection to dsn (the URL db was opened
// with); dsn "" makes every question a query. Start starts the listener.
func NewSuppressions(db *sqlx.DB, dsn string, log zerolog.Logger) *Suppressions {
	return &Suppressions{db: db, dsn: dsn, log: log.With().Str("component", "suppressions").Logger(),
		MaxPerAccount: 100_000, MaxAccounts: 10_000, Heartbeat: time.Second, Silence: 5 * time.Second,
		accounts: map[int64]*suppressedSet{}, loading: map[int64]*setLoad{}, became: make(chan struct{})}
}

// Check returns sms.OptedOut(phone) when the account's recipient phone
// (E.164) opted out, nil when not, or the store's error.
func (s *Suppressions) Check(ctx context.Context, accountID int64, phone string) error {
	suppressed, err := s.Suppressed(ctx, accountID, phone)
	if err != nil {
		return err
	}
	if suppressed {
		return sms.OptedOut(phone)
	}
	return nil
}

// Suppressed reports whether the account's recipient phone (E.164) opted
// out.
func (s *Suppressions) Suppressed(ctx context.Context, accountID int64, phone string) (bool, error) {
	for attempt := 0; ; attempt++ {
		s.mu.RLock()
		set := s.accounts[accountID]
		if !s.live || set == nil && attempt > 0 {
			s.mu.RUnlock()
			return s.query(ctx, accountID, phone)
		}
		if set == nil {
			s.mu.RUnlock()
			if err := s.load(ctx, accountID); err != nil {
				return false, err
			}
			continue
		}
		if v, ok := set.lookup(phone); ok {
			s.mu.RUnlock()
			return v, nil
		}
		seq := set.seq
		s.mu.RUnlock()
		v, err := s.query(ctx, accountID, phone)
		if err != nil {
			return false, err
		}
		s.mu.Lock()
		if s.live && s.accounts[accountID] == set && set.seq == seq {
			set.remember(phone, v, s.MaxPerAccount)
		}
		s.mu.Unlock()
		return v, nil
	}
}

// query asks the database: one primary-key lookup.
func (s *Suppressions) query(ctx context.Context, accountID int64, phone string) (bool, error) {
	s.queries.Add(1)
	var v bool
	err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sms.suppressions WHERE account_id = $1 AND phone = $2)`,
		accountID, phone).Scan(&v)
	if err != nil {
		return false, storeErr("check suppressions", err)
	}
	return v, nil
}

// load reads the account's list into the cache, unless another call is
// reading it (then it waits for that one) or it changes meanwhile.
func (s *Suppressions) load(ctx context.Context, accountID int64) error {
	s.mu.Lock()
	if !s.live || s.accounts[accountID] != nil {
		s.mu.Unlock()
		return nil
	}
	if l := s.loading[accountID]; l != nil {
		s.mu.Unlock()
		select {
		case <-l.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l := &setLoad{done: make(chan struct{})}
	s.loading[accountID] = l
	s.mu.Unlock()
	defer close(l.done)

	s.queries.Add(1)
	var phones []string
	err := s.db.SelectContext(ctx, &phones, `SELECT phone FROM sms.suppressions WHERE account_id = $1 LIMIT $2`, accountID, s.MaxPerAccount+1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loading[accountID] == l {
		delete(s.loading, accountID)
	}
	if err != nil {
		return storeErr("read suppressions", err)
	}
	if l.stale || !s.live {
		return nil
	}
	set := &suppressedSet{complete: len(phones) <= s.MaxPerAccount, known: make(map[string]bool, len(phones))}
	if set.complete {
		set.unsure = map[string]struct{}{}
		for _, p := range phones {
			set.known[p] = true
		}
	}
	if len(s.accounts) >= s.MaxAccounts {
		clear(s.accounts)
	}
	s.accounts[accountID] = set
	return nil
}

// changed forgets what the cache knows of the account's phones, or of the
// whole account when no phone is given.
func (s *Suppressions) changed(accountID int64, phones ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.loading[accountID]; l != nil {
		l.stale = true
	}
	set := s.accounts[accountID]
	switch {
	case set == nil:
	case len(phones) == 0:
		delete(s.accounts, accountID)
	default:
		for _, p := range phones {
			set.forget(p)
		}
	}
}

// apply applies one notification's payload: "<account> <phone>",
// "<account>", "*", or "beat".
func (s *Suppressions) apply(payload string) {
	if payload == "beat" {
		return
	}
	account, phone, one := strings.Cut(payload, " ")
	id, err := strconv.ParseInt(account, 10, 64)
	switch {
	case payload == "*" || err != nil:
		s.mu.Lock()
		s.dropAll()
		s.mu.Unlock()
	case one:
		s.changed(id, phone)
	default:
		s.changed(id)
	}
}

// dropAll forgets everything; s.mu must be held.
func (s *Suppressions) dropAll() {
	clear(s.accounts)
	for _, l := range s.loading {
		l.stale = true
	}
}

// setState records the listener's state; every change of liveness forgets
// everything, since what was missed meanwhile is unknown.
func (s *Suppressions) setState(connected, silent *bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if connected != nil {
		s.connected = *connected
	}
	if silent != nil {
		s.silent = *silent
	}
	live := s.connected && !s.silent
	if live != s.live {
		s.dropAll()
		s.live = live
		if s.liveness != nil {
			s.liveness(live)
		}
	}
	if live {
		s.becameOnce.Do(func() { close(s.became) })
	}
}

// Live is closed once the cache is first in use (the listener listens);
// until then every question is a query.
func (s *Suppressions) Live() <-chan struct{} { return s.became }

// Start listens for changes until Stop; without a dsn it does nothing.
func (s *Suppressions) Start(ctx context.Context) error {
	if s.dsn == "" {
		return nil
	}
	return s.lc.Start(ctx, s.run)
}

// Stop stops listening; the cache is no longer used. Safe to call twice.
func (s *Suppressions) Stop() { _ = s.lc.Stop() }

func (s *Suppressions) run(ctx context.Context) error {
	yes, no := true, false
	l := pq.NewListener(s.dsn, 100*time.Millisecond, 10*time.Second, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventDisconnected:
			s.log.Warn().Err(err).Msg("suppressions listener disconnected; checking the database for every message until it is back")
			s.setState(&no, nil)
		case pq.ListenerEventReconnected:
			s.log.Info().Msg("suppressions listener reconnected")
			s.setState(&yes, nil)
		case pq.ListenerEventConnectionAttemptFailed:
			s.log.Debug().Err(err).Msg("suppressions listener could not connect")
		}
	})
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer func() {
		s.setState(&no, nil)
		if stop() {
			_ = l.Close()
		}
		for range l.Notify { // until the listener's goroutine is gone
		}
	}()
	if err := l.Listen(suppressionsChannel); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		s.log.Error().Err(err).Msg("suppressions listener failed; checking the database for every message")
		return fmt.Errorf("listen %s: %w", suppressionsChannel, err)
	}
	s.setState(&yes, &no)
	// The heartbeats go out from a goroutine of their own, so that a busy
	// pool never holds up the notifications. A beat not heard within
	// Silence of being sent means the listener is deaf (a connection dead
	// without a reset); a beat that could not be sent says nothing.
	var sent atomic.Int64 // when the last beat was sent, Unix nanoseconds
	var wg sync.WaitGroup
	defer wg.Wait()
	beatCtx, stopBeats := context.WithCancel(ctx)
	defer stopBeats()
	wg.Go(func() {
		platform.Every(beatCtx, s.Heartbeat, func(ctx context.Context) {
			bctx, cancel := context.WithTimeout(ctx, s.Silence)
			defer cancel()
			if _, err := s.db.ExecContext(bctx, `SELECT pg_notify($1, 'beat')`, suppressionsChannel); err != nil {
				if ctx.Err() == nil {
					s.log.Debug().Err(err).Msg("suppressions heartbeat not sent")
				}
				return
			}
			sent.Store(time.Now().UnixNano())
		})
	})
	heard := time.Now()
	check := time.NewTicker(s.Heartbeat)
	defer check.Stop()
	for {
		select {
		case n, ok := <-l.Notify:
			if !ok {
				return nil
			}
			heard = time.Now()
			s.setState(nil, &no)
			if n == nil { // reconnected: what was missed is unknown
				s.mu.Lock()
				s.dropAll()
				s.mu.Unlock()
				continue
			}
			s.apply(n.Extra)
			if s.notified != nil {
				s.notified(n.Extra)
			}
		case <-check.C:
			if at := time.Unix(0, sent.Load()); at.After(heard) && time.Since(at) > s.Silence {
				s.mu.RLock()
				live := s.live
				s.mu.RUnlock()
				if live {
					s.log.Warn().Dur("silence", time.Since(heard)).Msg("suppressions listener does not hear its own heartbeat; checking the database for every message")
				}
				s.setState(nil, &yes)
			}
		case <-ctx.Done():
			return nil
		}
	}
}
