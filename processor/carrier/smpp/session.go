package smpp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/linxGnu/gosmpp"
	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"github.com/rs/zerolog"
)

// deliveryQueue is how many deliver_sm may wait for the sink on one
// session; more are answered ESME_RX_T_APPN at once, so that a slow sink
// never stalls the reader (and with it every submit_sm_resp).
const deliveryQueue = 64

// unbindTimeout bounds the wait for unbind_resp when a bind is closed.
const unbindTimeout = 2 * time.Second

// answer is what became of one submit_sm: the SMSC's response, or err when
// none came (write failed, connection lost, timeout).
type answer struct {
	status data.CommandStatusType
	id     string
	err    error
}

var (
	errConnectionLost = errors.New("connection lost with the submit_sm outstanding (the SMSC may have accepted it)")
	errSubmitTimeout  = errors.New("no submit_sm_resp in time (the SMSC may have accepted it)")
)

// session is one bound connection: gosmpp's Session, the submit_sm
// awaiting their response (matched by sequence number here rather than by
// gosmpp's window, so that a timeout or a dropped connection answers each
// waiting submit exactly once, in one place), and the deliver_sm awaiting
// the sink.
type session struct {
	sess *gosmpp.Session
	log  zerolog.Logger

	mu      sync.Mutex
	waiting map[int32]chan answer
	lost    bool
	readErr error // why reading stopped, when it did on its own

	closeOnce  sync.Once
	closed     chan struct{} // closed once the connection is gone
	unbindResp chan struct{}
	deliveries chan *pdu.DeliverSM
}

func newSession(log zerolog.Logger) *session {
	return &session{
		log:        log,
		waiting:    make(map[int32]chan answer),
		closed:     make(chan struct{}),
		unbindResp: make(chan struct{}, 1),
		deliveries: make(chan *pdu.DeliverSM, deliveryQueue),
	}
}

// dial connects and binds as a transceiver. Connecting and the wait for
// bind_resp are bounded by cfg.BindTimeout and end with ctx (gosmpp waits
// for bind_resp without a deadline of its own).
func (s *session) dial(ctx context.Context, cfg Config) error {
	var stopWatch func() bool
	dialer := func(addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: cfg.BindTimeout, KeepAlive: 30 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if cfg.TLS {
			tc := cfg.TLSConfig
			if tc == nil {
				host, _, _ := net.SplitHostPort(addr)
				tc = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
			}
			tlsConn := tls.Client(conn, tc)
			hctx, cancel := context.WithTimeout(ctx, cfg.BindTimeout)
			err := tlsConn.HandshakeContext(hctx)
			cancel()
			if err != nil {
				conn.Close()
				return nil, err
			}
			conn = tlsConn
		}
		// gosmpp re-arms the read deadline for every PDU and the write
		// deadline for every write once bound; this one covers the bind.
		_ = conn.SetDeadline(time.Now().Add(cfg.BindTimeout))
		stopWatch = context.AfterFunc(ctx, func() { conn.Close() })
		return conn, nil
	}
	auth := gosmpp.Auth{SMSC: cfg.Addr, SystemID: cfg.SystemID, Password: cfg.Password, SystemType: cfg.SystemType}
	sess, err := gosmpp.NewSession(gosmpp.TRXConnector(dialer, auth), gosmpp.Settings{
		EnquireLink: cfg.EnquireLink,
		// Silence for two enquire_link periods means the SMSC is gone.
		ReadTimeout:      2 * cfg.EnquireLink,
		WriteTimeout:     min(cfg.EnquireLink, 10*time.Second),
		OnAllPDU:         s.onPDU,
		OnSubmitError:    s.onSubmitError,
		OnReceivingError: s.onReadError,
		OnClosed:         func(gosmpp.State) { s.markClosed() },
	}, 0) // 0: no rebinding by gosmpp; the bind's loop reconnects with backoff
	if stopWatch != nil {
		stopWatch()
	}
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		// Bound just as ctx ended, with the connection closed under it.
		_ = sess.Close()
		return ctx.Err()
	}
	s.sess = sess
	return nil
}

// onPDU answers what the SMSC sends, on gosmpp's reader goroutine; it
// must not block. deliver_sm go to the delivery worker, which answers
// them once the sink has taken them.
func (s *session) onPDU(p pdu.PDU) (pdu.PDU, bool) {
	switch q := p.(type) {
	case *pdu.SubmitSMResp:
		s.answer(q.SequenceNumber, answer{status: q.CommandStatus, id: q.MessageID})
	case *pdu.GenericNack:
		s.answer(q.SequenceNumber, answer{status: q.CommandStatus})
	case *pdu.EnquireLink:
		return q.GetResponse(), false
	case *pdu.EnquireLinkResp:
	case *pdu.Unbind:
		s.log.Warn().Msg("the SMSC unbound; reconnecting")
		return q.GetResponse(), true
	case *pdu.UnbindResp:
		select {
		case s.unbindResp <- struct{}{}:
		default:
		}
	case *pdu.DeliverSM:
		select {
		case s.deliveries <- q:
		default:
			s.log.Warn().Msg("deliver_sm queue full; asking the SMSC to send it again")
			return deliverResp(q, data.ESME_RX_T_APPN), false
		}
	default:
		if p.CanResponse() {
			// data_sm and the rest: not supported on this bind.
			nack := pdu.NewGenericNack().(*pdu.GenericNack)
			nack.SequenceNumber = p.GetSequenceNumber()
			nack.CommandStatus = data.ESME_RINVCMDID
			s.log.Warn().Str("command", p.GetHeader().CommandID.String()).Msg("unsupported PDU from the SMSC refused")
			return nack, false
		}
	}
	return nil, false
}

// deliverResp is the deliver_sm_resp for d with status st.
func deliverResp(d *pdu.DeliverSM, st data.CommandStatusType) pdu.PDU {
	r := d.GetResponse().(*pdu.DeliverSMResp)
	r.CommandStatus = st
	return r
}

// onSubmitError hears of a PDU gosmpp could not write.
func (s *session) onSubmitError(p pdu.PDU, err error) {
	if _, ok := p.(*pdu.SubmitSM); ok {
		s.answer(p.GetSequenceNumber(), answer{err: err})
	}
}

func (s *session) onReadError(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = errors.New("nothing heard from the SMSC for two enquire_link periods")
	}
	s.mu.Lock()
	s.readErr = err
	s.mu.Unlock()
}

// lostBecause says why the connection was lost, as far as known.
func (s *session) lostBecause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr != nil {
		return fmt.Errorf("connection lost: %w", s.readErr)
	}
	return errors.New("connection lost")
}

// register makes ready to receive the answer to submit_sm seq; ok is false
// once the connection is gone, when nothing may be sent on it.
func (s *session) register(seq int32) (ch chan answer, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lost {
		return nil, false
	}
	ch = make(chan answer, 1)
	s.waiting[seq] = ch
	return ch, true
}

func (s *session) unregister(seq int32) {
	s.mu.Lock()
	delete(s.waiting, seq)
	s.mu.Unlock()
}

func (s *session) answer(seq int32, a answer) {
	s.mu.Lock()
	ch, ok := s.waiting[seq]
	delete(s.waiting, seq)
	s.mu.Unlock()
	if !ok {
		// Late (after its timeout) or not ours.
		s.log.Debug().Int32("sequence", seq).Msg("response to no waiting submit_sm")
		return
	}
	ch <- a
}

// markClosed fails every submit_sm still awaiting its response: it may or
// may not have reached the SMSC, and the caller says so.
func (s *session) markClosed() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.lost = true
		waiting := s.waiting
		s.waiting = nil
		s.mu.Unlock()
		for _, ch := range waiting {
			ch <- answer{err: errConnectionLost}
		}
		close(s.closed)
	})
}

// send hands p to gosmpp's writer; false when the connection is closing
// (p was not sent).
func (s *session) send(p pdu.PDU) bool {
	return s.sess.Transceiver().Submit(p) == nil
}

// unbind sends unbind and waits briefly for unbind_resp, so that the SMSC
// ends the session cleanly; the caller closes it afterwards. (gosmpp's
// Close writes one more unbind without waiting, which an SMSC that closed
// after the first unbind_resp never reads.)
func (s *session) unbind() bool {
	if !s.send(pdu.NewUnbind()) {
		return false
	}
	t := time.NewTimer(unbindTimeout)
	defer t.Stop()
	select {
	case <-s.unbindResp:
		return true
	case <-s.closed:
		return false
	case <-t.C:
		return false
	}
}

// close ends the connection and fails what still awaits an answer.
func (s *session) close() {
	_ = s.sess.Close()
	s.markClosed()
}
