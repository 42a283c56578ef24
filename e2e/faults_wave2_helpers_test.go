package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
)

// Helpers of the wave-2 fault tests (faults_wave2_test.go): the OpenSMPP
// simulator run by scripts/smsc.sh, an SMSC of the test's own for what the
// simulator cannot do (throttle, send a receipt on another session), a
// webhook receiver that records every post, and API calls the client
// package has no method for.

// ---------------------------------------------------------------- processes

// kfakeLaneOnly skips t in the real-Kafka lane, where it would add only
// time: the fault is the SMSC's, the webhook receiver's or the API's
// alone, and the broker plays no part in it. The kfake lane (scripts/test.sh
// kfake, and make test) runs it.
func kfakeLaneOnly(t testing.TB) {
	t.Helper()
	if platformtest.RealKafka() {
		t.Skip("the broker plays no part in this fault: runs in the kfake lane (scripts/test.sh kfake)")
	}
}

// smppEnv is a processor's environment for an SMSC at addr.
func smppEnv(addr, password string, more ...string) []string {
	return append([]string{"SMS_CARRIER=smpp", "SMS_SMPP_ADDR=" + addr, "SMS_SMPP_SYSTEM_ID=smsctl", "SMS_SMPP_PASSWORD=" + password}, more...)
}

// ---------------------------------------------------------------- OpenSMPP

// openSMSC is OpenSMPP's SMSC simulator (scripts/smsc.sh) on a port and in
// a state directory of this test's own.
type openSMSC struct {
	t      testing.TB
	script string
	env    []string
	state  string
	addr   string
}

func startOpenSMSC(t testing.TB, env ...string) *openSMSC {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "scripts", "smsc.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"java", "javac", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the SMSC simulator (scripts/smsc.sh) needs %s (a JDK 8+ and Maven): %v", tool, err)
		}
	}
	state := t.TempDir()
	s := &openSMSC{t: t, script: script, state: state, env: append([]string{
		"SMS_SMSC_PORT=" + strconv.Itoa(freePorts(t, 1)),
		"SMS_SMSC_STATE=" + state,
		"SMS_SMSC_START_TIMEOUT=120",
	}, env...)}
	s.addr = strings.TrimSpace(s.run("start"))
	t.Cleanup(func() { s.run("clean") })
	return s
}

func (s *openSMSC) run(args ...string) string {
	s.t.Helper()
	cmd := exec.Command(s.script, args...)
	cmd.Env = append(os.Environ(), s.env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("smsc.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// submitLine is a submit_sm as the simulator logs it on arrival:
// "client request: (submit: (pdu: LEN 4 0 SEQ) (addr: TON NPI SRC)  (addr: TON NPI DST) ...".
var submitLine = regexp.MustCompile(`client request: \(submit: \(pdu: \d+ 4 0 \d+\) \(addr: \d+ \d+ [^)]*\)\s+\(addr: \d+ \d+ (\d+)\)`)

// submitsByDestination counts the submit_sm the simulator received, over
// every run of it in this state directory, by destination address.
func (s *openSMSC) submitsByDestination() map[string]int {
	s.t.Helper()
	f, err := os.Open(filepath.Join(s.state, "smsc.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := submitLine.FindStringSubmatch(sc.Text()); m != nil {
			counts[m[1]]++
		}
	}
	return counts
}

// receiptLine is a receipt the simulator sent: "server request: (deliver:
// ... msg: id:Smsc2001 sub:1 ...".
var receiptLine = regexp.MustCompile(`server request: \(deliver: .* msg: id:(\S+) `)

// receiptsByRun returns the message ids of the receipts the simulator
// sent, upper-cased, per run (each start opens a new one in the log).
func (s *openSMSC) receiptsByRun() []map[string]bool {
	s.t.Helper()
	f, err := os.Open(filepath.Join(s.state, "smsc.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	var runs []map[string]bool
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "===== ") && strings.Contains(line, "smsc.sh start") {
			runs = append(runs, map[string]bool{})
			continue
		}
		if m := receiptLine.FindStringSubmatch(line); m != nil && len(runs) > 0 {
			runs[len(runs)-1][strings.ToUpper(m[1])] = true
		}
	}
	return runs
}

// ---------------------------------------------------------------- Go SMSC

// testSMSC is an SMSC of the test's own, over real TCP, for what the
// OpenSMPP simulator cannot be made to do: answer ESME_RTHROTTLED, and send
// a receipt on a session other than the one that submitted the message
// (as SMSCs that route receipts to any bind of the system_id do). It binds
// transceivers, answers submit_sm with ids of its own, sends one receipt
// per accepted submit_sm, and sends it again until a deliver_sm_resp
// answers ESME_ROK. It records every submit_sm.
type testSMSC struct {
	t  testing.TB
	ln net.Listener

	mu       sync.Mutex
	password string
	sessions map[int]*smscSession
	nextSess int
	nextID   int
	// throttle, when set, says whether to answer this submit_sm
	// ESME_RTHROTTLED (called under mu).
	throttle func(now time.Time) bool
	// otherSession makes receipts go to a bound session other than the
	// submitting one (waiting while there is none).
	otherSession bool
	// receiptFirst sends the receipt just before the submit_sm_resp, on
	// the same session, for every other message.
	receiptFirst bool
	// noReceipts sends none; holdReceipts keeps them until releaseReceipts.
	noReceipts, holdReceipts bool
	submits                  []smscSubmit
	receipts                 []*smscReceipt
	wake                     chan struct{}
	done                     chan struct{}
	wg                       sync.WaitGroup
}

type smscSession struct {
	id     int
	conn   net.Conn
	wmu    sync.Mutex
	bound  bool
	closed bool
	// sent are the receipts awaiting their deliver_sm_resp, by sequence.
	sent map[int32]*smscReceipt
}

// smscSubmit is one submit_sm received.
type smscSubmit struct {
	session int
	dest    string
	// messageID is the id it was accepted under; empty: throttled.
	messageID string
}

// smscReceipt is a receipt to send until acknowledged.
type smscReceipt struct {
	messageID, dest string
	submitter       int
	inFlight        bool
	due             time.Time
	tries           int
	ackedOn         int  // session that acknowledged it; 0 while not
	beforeResp      bool // written ahead of its submit_sm_resp
	// mo, when set, makes this a mobile-originated message, sent again
	// as the same PDU (same sequence number) until acknowledged.
	mo *pdu.DeliverSM
}

func startTestSMSC(t testing.TB) *testSMSC {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testSMSC{t: t, ln: ln, password: "smsctl", sessions: map[int]*smscSession{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.wg.Go(s.accept)
	s.wg.Go(s.sendReceipts)
	t.Cleanup(s.close)
	return s
}

func (s *testSMSC) addr() string { return s.ln.Addr().String() }

func (s *testSMSC) close() {
	close(s.done)
	s.ln.Close()
	s.mu.Lock()
	for _, ss := range s.sessions {
		ss.conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *testSMSC) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *testSMSC) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.nextSess++
		ss := &smscSession{id: s.nextSess, conn: c, sent: map[int32]*smscReceipt{}}
		s.sessions[ss.id] = ss
		s.mu.Unlock()
		s.wg.Go(func() { s.serve(ss) })
	}
}

func (ss *smscSession) write(p pdu.PDU) error {
	b := pdu.NewBuffer(nil)
	p.Marshal(b)
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	_ = ss.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := ss.conn.Write(b.Bytes())
	return err
}

func (s *testSMSC) serve(ss *smscSession) {
	defer func() {
		ss.conn.Close()
		s.mu.Lock()
		ss.closed = true
		delete(s.sessions, ss.id)
		// Receipts sent on it and not acknowledged go again elsewhere.
		for _, r := range ss.sent {
			r.inFlight = false
		}
		ss.sent = nil
		s.mu.Unlock()
		s.poke()
	}()
	r := bufio.NewReader(ss.conn)
	for {
		p, err := pdu.Parse(r)
		if err != nil {
			return
		}
		switch q := p.(type) {
		case *pdu.BindRequest:
			resp := pdu.NewBindResp(*q)
			resp.SystemID = "test-smsc"
			s.mu.Lock()
			ok := q.BindingType == pdu.Transceiver && q.Password == s.password
			ss.bound = ok
			s.mu.Unlock()
			if !ok {
				resp.CommandStatus = data.ESME_RBINDFAIL
			}
			_ = ss.write(resp)
			if !ok {
				return
			}
			s.poke()
		case *pdu.SubmitSM:
			s.submit(ss, q)
		case *pdu.DeliverSMResp:
			s.mu.Lock()
			if rc := ss.sent[q.SequenceNumber]; rc != nil {
				delete(ss.sent, q.SequenceNumber)
				rc.inFlight = false
				if q.CommandStatus == data.ESME_ROK {
					rc.ackedOn = ss.id
				} else {
					// Again later, backing off as SMSCs do: 100 ms doubling to 1 s.
					rc.due = time.Now().Add(min(100*time.Millisecond<<min(rc.tries, 4), time.Second))
				}
			}
			s.mu.Unlock()
			s.poke()
		case *pdu.EnquireLink:
			_ = ss.write(q.GetResponse())
		case *pdu.Unbind:
			_ = ss.write(q.GetResponse())
			return
		default:
			if p.CanResponse() {
				nack := pdu.NewGenericNack().(*pdu.GenericNack)
				nack.SequenceNumber, nack.CommandStatus = p.GetSequenceNumber(), data.ESME_RINVCMDID
				_ = ss.write(nack)
			}
		}
	}
}

func (s *testSMSC) submit(ss *smscSession, q *pdu.SubmitSM) {
	now := time.Now()
	resp := q.GetResponse().(*pdu.SubmitSMResp)
	s.mu.Lock()
	sub := smscSubmit{session: ss.id, dest: q.DestAddr.Address()}
	var rc *smscReceipt
	if s.throttle != nil && s.throttle(now) {
		resp.CommandStatus = data.ESME_RTHROTTLED
	} else {
		s.nextID++
		resp.MessageID = fmt.Sprintf("T%06d", s.nextID)
		sub.messageID = resp.MessageID
		if q.RegisteredDelivery&0x03 == 1 && !s.noReceipts {
			rc = &smscReceipt{messageID: resp.MessageID, dest: sub.dest, submitter: ss.id, due: now}
			s.receipts = append(s.receipts, rc)
		}
	}
	s.submits = append(s.submits, sub)
	// The receipt is held until the answer is written, or, for every
	// other message when receiptFirst is set, written on this session
	// just ahead of it.
	var early *pdu.DeliverSM
	if rc != nil {
		rc.inFlight = true
		if s.receiptFirst && !s.holdReceipts && s.nextID%2 == 0 {
			early = receiptPDU(rc, now)
			rc.tries, rc.beforeResp = 1, true
			ss.sent[early.SequenceNumber] = rc
		}
	}
	s.mu.Unlock()
	if early != nil {
		_ = ss.write(early)
	}
	_ = ss.write(resp)
	if rc != nil && early == nil {
		s.mu.Lock()
		rc.inFlight = false
		s.mu.Unlock()
		s.poke()
	}
}

// sendReceipts sends due receipts, each on a bound session the policy
// allows, until acknowledged.
func (s *testSMSC) sendReceipts() {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		case <-tick.C:
		}
		type job struct {
			ss *smscSession
			d  *pdu.DeliverSM
		}
		var jobs []job
		now := time.Now()
		s.mu.Lock()
		for _, rc := range s.receipts {
			if s.holdReceipts || rc.ackedOn != 0 || rc.inFlight || now.Before(rc.due) {
				continue
			}
			ss := s.pickSession(rc)
			if ss == nil {
				continue
			}
			d := rc.mo
			if d == nil {
				d = receiptPDU(rc, now)
			}
			rc.inFlight, rc.tries = true, rc.tries+1
			ss.sent[d.SequenceNumber] = rc
			jobs = append(jobs, job{ss, d})
		}
		s.mu.Unlock()
		for _, j := range jobs {
			if err := j.ss.write(j.d); err != nil {
				j.ss.conn.Close() // its reader ends and frees the receipt
			}
		}
	}
}

// pickSession chooses the session a receipt goes to (mu held): the bound
// session with the lowest id, other than the submitter's when
// otherSession is set.
func (s *testSMSC) pickSession(rc *smscReceipt) *smscSession {
	var best *smscSession
	for _, ss := range s.sessions {
		if !ss.bound || ss.closed || (s.otherSession && ss.id == rc.submitter) {
			continue
		}
		if best == nil || ss.id < best.id {
			best = ss
		}
	}
	return best
}

func receiptPDU(rc *smscReceipt, now time.Time) *pdu.DeliverSM {
	d := pdu.NewDeliverSM().(*pdu.DeliverSM)
	d.SourceAddr, _ = pdu.NewAddressWithTonNpiAddr(data.GSM_TON_INTERNATIONAL, data.GSM_NPI_E164, rc.dest)
	d.DestAddr, _ = pdu.NewAddressWithTonNpiAddr(data.GSM_TON_INTERNATIONAL, data.GSM_NPI_E164, "14155550100")
	d.EsmClass = 0x04
	date := now.UTC().Format("0601021504")
	text := fmt.Sprintf("id:%s sub:001 dlvrd:001 submit date:%s done date:%s stat:DELIVRD err:000 text:", rc.messageID, date, date)
	_ = d.Message.SetMessageWithEncoding(text, data.LATIN1)
	return d
}

// mo sends a mobile-originated message from a handset (esm_class 0, GSM
// 7-bit) on a bound session, and again until a deliver_sm_resp says
// ESME_ROK.
func (s *testSMSC) mo(from, to, text string) {
	d := pdu.NewDeliverSM().(*pdu.DeliverSM)
	d.SourceAddr, _ = pdu.NewAddressWithTonNpiAddr(data.GSM_TON_INTERNATIONAL, data.GSM_NPI_E164, strings.TrimPrefix(from, "+"))
	d.DestAddr, _ = pdu.NewAddressWithTonNpiAddr(data.GSM_TON_INTERNATIONAL, data.GSM_NPI_E164, strings.TrimPrefix(to, "+"))
	_ = d.Message.SetMessageWithEncoding(text, data.GSM7BIT)
	s.mu.Lock()
	s.receipts = append(s.receipts, &smscReceipt{mo: d, due: time.Now()})
	s.mu.Unlock()
	s.poke()
}

// moLedger returns copies of the mobile-originated messages sent.
func (s *testSMSC) moLedger() []smscReceipt {
	var out []smscReceipt
	for _, r := range s.receiptLedger() {
		if r.mo != nil {
			out = append(out, r)
		}
	}
	return out
}

// configure changes the SMSC's behaviour under its lock.
func (s *testSMSC) configure(f func(s *testSMSC)) {
	s.mu.Lock()
	f(s)
	s.mu.Unlock()
	s.poke()
}

// submitLedger returns a copy of the submit_sm received.
func (s *testSMSC) submitLedger() []smscSubmit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]smscSubmit(nil), s.submits...)
}

// receiptLedger returns copies of the receipts.
func (s *testSMSC) receiptLedger() []smscReceipt {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]smscReceipt, len(s.receipts))
	for i, r := range s.receipts {
		out[i] = *r
	}
	return out
}

// boundSessions is how many sessions are bound now.
func (s *testSMSC) boundSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ss := range s.sessions {
		if ss.bound && !ss.closed {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------- webhooks

// hookPost is one webhook post as the receiver took it.
type hookPost struct {
	id       string // webhook-id
	message  string // data.id
	sequence int
	body     []byte
	// outcome: accepted (answered 2xx), refused (answered with the failure
	// status), abandoned (the sender gave up before the answer).
	outcome string
}

// hookSink is a webhook endpoint on loopback that verifies each post's
// signature and records it. It can be taken down (the port closed:
// connections refused) and brought back on the same address, made slow,
// or made to answer a failure status.
type hookSink struct {
	t    testing.TB
	addr string
	wh   *standardwebhooks.Webhook

	mu     sync.Mutex
	srv    *http.Server
	delay  time.Duration
	status int // 0: answer 204
	posts  []hookPost
	bad    int // signature did not verify
	// bodies holds the first body seen per webhook-id, changed counts the
	// posts whose body differed from it under the same id.
	bodies  map[string][]byte
	changed int
}

func startHookSink(t testing.TB) *hookSink {
	t.Helper()
	h := &hookSink{t: t, addr: freeAddr(t), bodies: map[string][]byte{}}
	h.up()
	t.Cleanup(h.down)
	return h
}

func (h *hookSink) url() string { return "http://" + h.addr + "/hook" }

// setSecret sets the endpoint's secret the posts are verified with.
func (h *hookSink) setSecret(secret string) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.wh = wh
	h.mu.Unlock()
}

// up listens again on the receiver's address.
func (h *hookSink) up() {
	h.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		// The port was ours a moment ago; a connection in TIME_WAIT
		// does not stop a listener (SO_REUSEADDR), so this rarely retries.
		if ln, err = net.Listen("tcp", h.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		h.t.Fatalf("webhook receiver: listen again on %s: %v", h.addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(h.serve), ReadHeaderTimeout: 5 * time.Second}
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// down closes the port and every connection: posts are refused.
func (h *hookSink) down() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (h *hookSink) set(delay time.Duration, status int) {
	h.mu.Lock()
	h.delay, h.status = delay, status
	h.mu.Unlock()
}

func (h *hookSink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	h.mu.Lock()
	wh, delay, status := h.wh, h.delay, h.status
	h.mu.Unlock()
	if wh == nil || wh.Verify(body, r.Header) != nil {
		h.mu.Lock()
		h.bad++
		h.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct {
		Data struct {
			ID       string `json:"id"`
			Sequence int    `json:"sequence"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &ev)
	post := hookPost{id: r.Header.Get("webhook-id"), message: ev.Data.ID, sequence: ev.Data.Sequence, body: body}
	h.mu.Lock()
	if first, ok := h.bodies[post.id]; !ok {
		h.bodies[post.id] = body
	} else if !bytes.Equal(first, body) {
		h.changed++
	}
	h.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
	}
	switch {
	case r.Context().Err() != nil:
		post.outcome = "abandoned"
	case status != 0:
		post.outcome = "refused"
	default:
		post.outcome = "accepted"
	}
	h.mu.Lock()
	h.posts = append(h.posts, post)
	h.mu.Unlock()
	switch post.outcome {
	case "refused":
		w.WriteHeader(status)
	case "accepted":
		w.WriteHeader(http.StatusNoContent)
	}
}

// hookTally is what the receiver saw.
type hookTally struct {
	posts, accepted, refused, abandoned int
	distinct                            int // webhook-ids accepted
	duplicates                          int // accepted again under an id accepted before
	outOfOrder                          int // accepted with a sequence at or below one accepted before for its message
	bad, changed                        int
	ids                                 map[string]bool
	// seqs are the sequences accepted per message, in arrival order.
	seqs map[string][]int
}

func (h *hookSink) tally() hookTally {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := hookTally{posts: len(h.posts), bad: h.bad, changed: h.changed, ids: map[string]bool{}, seqs: map[string][]int{}}
	for _, p := range h.posts {
		switch p.outcome {
		case "refused":
			t.refused++
			continue
		case "abandoned":
			t.abandoned++
			continue
		}
		t.accepted++
		if t.ids[p.id] {
			t.duplicates++
			continue
		}
		t.ids[p.id] = true
		if p.message != "" && p.sequence > 0 {
			s := t.seqs[p.message]
			if len(s) > 0 && p.sequence <= s[len(s)-1] {
				t.outOfOrder++
			}
			t.seqs[p.message] = append(s, p.sequence)
		}
	}
	t.distinct = len(t.ids)
	return t
}

func (t hookTally) String() string {
	return fmt.Sprintf("posts=%d posts_accepted=%d distinct=%d duplicates=%d refused=%d abandoned=%d out_of_order=%d bad_signature=%d body_changed=%d",
		t.posts, t.accepted, t.distinct, t.duplicates, t.refused, t.abandoned, t.outOfOrder, t.bad, t.changed)
}

// createEndpoint registers url for every event type and returns its id and
// secret.
func createEndpoint(t testing.TB, apiAddr, key, url string) (string, string) {
	t.Helper()
	var ep struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if code := postJSON(t, "http://"+apiAddr+"/v1/webhook-endpoints", key, map[string]any{"url": url}, &ep); code != http.StatusCreated {
		t.Fatalf("create webhook endpoint: status %d", code)
	}
	return ep.ID, ep.Secret
}

// postJSON posts body as JSON and decodes the answer into out (when not
// nil); it returns the status.
func postJSON(t testing.TB, url, key string, body, out any) int {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("POST %s: decode %q: %v", url, raw, err)
		}
	}
	if resp.StatusCode >= 300 && out != nil {
		t.Logf("POST %s: %d %s", url, resp.StatusCode, raw)
	}
	return resp.StatusCode
}

// sendBatch posts one batch and returns the ids of the accepted messages.
func sendBatch(ctx context.Context, apiAddr, key string, in []sms.SendInput) ([]uuid.UUID, error) {
	b, err := json.Marshal(map[string]any{"messages": in})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+apiAddr+"/v1/messages/batch", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Accepted int `json:"accepted"`
		Results  []struct {
			Status  int          `json:"status"`
			Message *sms.Message `json:"message"`
		} `json:"results"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("batch: status %d: %s", resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	var ids []uuid.UUID
	for _, r := range out.Results {
		if r.Status != http.StatusAccepted || r.Message == nil {
			return nil, fmt.Errorf("batch: a message answered %d: %s", r.Status, raw)
		}
		ids = append(ids, r.Message.ID)
	}
	return ids, nil
}

// scheduleBatches posts n messages, message i due at at(i), in batches of
// 1000 posted concurrently, to recipients base+i.
func scheduleBatches(ctx context.Context, t testing.TB, apiAddr, key string, n, base int, text string, at func(i int) time.Time) []uuid.UUID {
	t.Helper()
	var mu sync.Mutex
	var ids []uuid.UUID
	var errs []error
	var wg sync.WaitGroup
	for start := 0; start < n; start += 1000 {
		wg.Go(func() {
			var in []sms.SendInput
			for i := start; i < min(start+1000, n); i++ {
				send := at(i)
				in = append(in, sms.SendInput{Sender: "+14155550100", Recipient: fmt.Sprintf("+1415%07d", base+i),
					Text: fmt.Sprintf("%s %d", text, i), SendAt: &send})
			}
			got, err := sendBatch(ctx, apiAddr, key, in)
			mu.Lock()
			defer mu.Unlock()
			ids = append(ids, got...)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return ids
}

// countWhere runs a count query.
func countWhere(t testing.TB, db *sqlx.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Get(&n, query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// metric reads one series (or a name summed over its series) from a
// /metrics page; absent is 0.
func metric(t testing.TB, addr, series string) float64 {
	t.Helper()
	return scrape(t, "http://"+addr+"/metrics")[series]
}
