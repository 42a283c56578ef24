package smpp

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
)

// reply is how the fake SMSC answers one submit_sm.
type reply struct {
	status data.CommandStatusType
	id     string // "" makes one up
	hold   bool   // answer only when the test calls release
	drop   bool   // close the connection instead of answering
	nack   bool   // answer with generic_nack
	// before, when set, is sent ahead of the answer (a receipt that
	// overtakes its submit_sm_resp).
	before func(id string) pdu.PDU
}

// fakeSMSC is an in-process SMSC for unit tests: it binds transceivers,
// answers submit_sm as the test's handler says, and lets the test send
// deliver_sm and watch what the carrier sends back.
type fakeSMSC struct {
	t        testing.TB
	ln       net.Listener
	password string

	mu          sync.Mutex
	handler     func(*pdu.SubmitSM) reply
	conns       []*fakeConn
	nextID      int
	held        []heldSubmit
	outstanding int // submit_sm received and not answered, on all connections
	maxOut      int // the most outstanding at any time
	silent      bool

	binds        chan *pdu.BindRequest
	submits      chan *pdu.SubmitSM
	enquireLinks chan *pdu.EnquireLink
	unbinds      chan *pdu.Unbind
	responses    chan pdu.PDU // deliver_sm_resp, enquire_link_resp, generic_nack
	wg           sync.WaitGroup
}

type fakeConn struct {
	c   net.Conn
	wmu sync.Mutex
}

type heldSubmit struct {
	conn *fakeConn
	sm   *pdu.SubmitSM
	id   string
}

func newFakeSMSC(t testing.TB) *fakeSMSC {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveFakeSMSC(t, ln)
}

// newTLSFakeSMSC is a fake SMSC behind TLS, with a certificate made for
// the test, and the client config that trusts it.
func newTLSFakeSMSC(t testing.TB) (*fakeSMSC, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake smsc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return serveFakeSMSC(t, ln), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

func serveFakeSMSC(t testing.TB, ln net.Listener) *fakeSMSC {
	f := &fakeSMSC{
		t: t, ln: ln, password: "secret",
		binds:        make(chan *pdu.BindRequest, 100),
		submits:      make(chan *pdu.SubmitSM, 1000),
		enquireLinks: make(chan *pdu.EnquireLink, 1000),
		unbinds:      make(chan *pdu.Unbind, 100),
		responses:    make(chan pdu.PDU, 1000),
	}
	f.wg.Go(f.accept)
	t.Cleanup(f.close)
	return f
}

func (f *fakeSMSC) addr() string { return f.ln.Addr().String() }

func (f *fakeSMSC) setHandler(h func(*pdu.SubmitSM) reply) {
	f.mu.Lock()
	f.handler = h
	f.mu.Unlock()
}

// setSilent makes the fake stop answering anything, like a dead peer
// whose TCP connection is still open.
func (f *fakeSMSC) setSilent(silent bool) {
	f.mu.Lock()
	f.silent = silent
	f.mu.Unlock()
}

func (f *fakeSMSC) setPassword(pw string) {
	f.mu.Lock()
	f.password = pw
	f.mu.Unlock()
}

func (f *fakeSMSC) close() {
	f.ln.Close()
	f.dropAll()
	f.wg.Wait()
}

// dropAll closes every connection, as an SMSC that crashed.
func (f *fakeSMSC) dropAll() {
	f.mu.Lock()
	for _, c := range f.conns {
		c.c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
}

func (f *fakeSMSC) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		fc := &fakeConn{c: c}
		f.mu.Lock()
		f.conns = append(f.conns, fc)
		f.mu.Unlock()
		f.wg.Go(func() { f.serve(fc) })
	}
}

func (fc *fakeConn) write(p pdu.PDU) {
	b := pdu.NewBuffer(nil)
	p.Marshal(b)
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	_, _ = fc.c.Write(b.Bytes())
}

func (f *fakeSMSC) serve(fc *fakeConn) {
	defer fc.c.Close()
	r := bufio.NewReader(fc.c)
	for {
		p, err := pdu.Parse(r)
		if err != nil {
			return
		}
		f.mu.Lock()
		silent, password := f.silent, f.password
		f.mu.Unlock()
		if silent {
			continue
		}
		switch q := p.(type) {
		case *pdu.BindRequest:
			f.binds <- q
			resp := pdu.NewBindResp(*q)
			resp.SystemID = "fake"
			if q.Password != password {
				resp.CommandStatus = data.ESME_RINVPASWD
			}
			fc.write(resp)
			if resp.CommandStatus != data.ESME_ROK {
				return
			}
		case *pdu.SubmitSM:
			f.submit(fc, q)
		case *pdu.EnquireLink:
			f.enquireLinks <- q
			fc.write(q.GetResponse())
		case *pdu.Unbind:
			f.unbinds <- q
			fc.write(q.GetResponse())
			return
		default:
			f.responses <- p
		}
	}
}

func (f *fakeSMSC) submit(fc *fakeConn, q *pdu.SubmitSM) {
	f.mu.Lock()
	f.nextID++
	id := "id" + strconv.Itoa(f.nextID)
	rep := reply{}
	if f.handler != nil {
		rep = f.handler(q)
	}
	if rep.id != "" {
		id = rep.id
	}
	f.outstanding++
	f.maxOut = max(f.maxOut, f.outstanding)
	if rep.hold {
		f.held = append(f.held, heldSubmit{conn: fc, sm: q, id: id})
	}
	f.mu.Unlock()
	f.submits <- q
	switch {
	case rep.hold:
	case rep.drop:
		fc.c.Close()
	default:
		if rep.before != nil {
			fc.write(rep.before(id))
		}
		f.answer(fc, q, rep, id)
	}
}

func (f *fakeSMSC) answer(fc *fakeConn, q *pdu.SubmitSM, rep reply, id string) {
	f.mu.Lock()
	f.outstanding--
	f.mu.Unlock()
	if rep.nack {
		nack := pdu.NewGenericNack().(*pdu.GenericNack)
		nack.SequenceNumber, nack.CommandStatus = q.SequenceNumber, rep.status
		fc.write(nack)
		return
	}
	resp := q.GetResponse().(*pdu.SubmitSMResp)
	resp.CommandStatus = rep.status
	if rep.status == data.ESME_ROK {
		resp.MessageID = id
	}
	fc.write(resp)
}

// heldCount is how many submit_sm await release.
func (f *fakeSMSC) heldCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.held)
}

// release answers the oldest held submit_sm with ESME_ROK.
func (f *fakeSMSC) release() {
	f.mu.Lock()
	h := f.held[0]
	f.held = f.held[1:]
	f.mu.Unlock()
	f.answer(h.conn, h.sm, reply{}, h.id)
}

func (f *fakeSMSC) maxOutstanding() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxOut
}

// deliver sends p on the newest connection.
func (f *fakeSMSC) deliver(p pdu.PDU) {
	f.mu.Lock()
	if len(f.conns) == 0 {
		f.mu.Unlock()
		f.t.Fatal("fake SMSC: no connection to deliver on")
	}
	fc := f.conns[len(f.conns)-1]
	f.mu.Unlock()
	fc.write(p)
}

// recv takes the next value from ch, failing the test after a while: a
// guard against hanging, not a timing assertion.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}
