package smpp

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smsctl/smsctl/processor/carrier"
)

// These tests run the carrier against an independent SMSC, OpenSMPP's
// simulator, started by scripts/smsc.sh (its header describes how it
// behaves). It answers about three PDUs a second per bind and sends
// receipts in batches every 5 s, so the tests send little.

// smscSim is a private simulator, on a port and in a state directory of
// its own.
type smscSim struct {
	t      testing.TB
	script string
	env    []string
	addr   string
}

func privateSMSC(t testing.TB, env ...string) *smscSim {
	t.Helper()
	script := os.Getenv("SMS_SMSC_SCRIPT")
	if script == "" {
		var err error
		if script, err = filepath.Abs(filepath.Join("..", "..", "..", "scripts", "smsc.sh")); err != nil {
			t.Fatal(err)
		}
	}
	for _, tool := range []struct{ env, bin string }{{"JAVA", "java"}, {"JAVAC", "javac"}, {"MVN", "mvn"}} {
		bin := os.Getenv(tool.env)
		if bin == "" {
			bin = tool.bin
		}
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("the SMSC simulator (scripts/smsc.sh) needs %s, a JDK 8+ and Maven: %v", bin, err)
		}
	}
	s := &smscSim{t: t, script: script, env: append([]string{
		"SMS_SMSC_PORT=" + strconv.Itoa(freePort(t)),
		"SMS_SMSC_STATE=" + t.TempDir(),
		"SMS_SMSC_START_TIMEOUT=60",
	}, env...)}
	s.addr = strings.TrimSpace(s.run("start"))
	t.Cleanup(func() { s.run("clean") })
	return s
}

func (s *smscSim) run(args ...string) string {
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

// freePort is a free loopback port below the ephemeral range, where no
// outgoing connection takes it between this check and the simulator's bind.
func freePort(t testing.TB) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	for range 200 {
		port := 20000 + rand.N(low-20000)
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func simConfig(addr, systemID, password string) Config {
	return Config{
		Addr: addr, SystemID: systemID, Password: password,
		// Window 10 at 0.3 s a PDU answers within 3 s; twice that, and more.
		SubmitTimeout: 20 * time.Second, EnquireLink: 10 * time.Second,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second,
	}
}

// TestSimulator shares one simulator between subtests, each bound as an
// account of its own.
func TestSimulator(t *testing.T) {
	t.Parallel()
	sim := privateSMSC(t, "SMS_SMSC_EXTRA_USERS=rcpt:pw1 mo:pw2 bad:pw3")

	t.Run("receipts", func(t *testing.T) {
		t.Parallel()
		c := startCarrier(t, simConfig(sim.addr, "rcpt", "pw1"), nil)
		c.waitReady(t)
		want := map[string]string{} // part id -> receipt status
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, tc := range []struct{ to, text, status string }{
			{"+447700900001", "hello from smsctl", "DELIVERED"},
			{"+447700909990", "this one fails", "UNDELIVERED"},
			{"+447700900002", strings.Repeat("two parts € ", 16), "DELIVERED"},
		} {
			wg.Go(func() {
				req := request(tc.to, tc.text)
				acc, err := c.Submit(context.Background(), req, 1)
				if err != nil {
					t.Errorf("Submit to %s: %v", tc.to, err)
					return
				}
				if len(acc.PartIDs) != req.Segments || !acc.Receipts {
					t.Errorf("accepted %+v, want %d parts", acc, req.Segments)
				}
				mu.Lock()
				for _, id := range acc.PartIDs {
					want[id] = tc.status
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(want) != 4 {
			t.Fatalf("%d part ids, want 4: %v", len(want), want)
		}
		got := map[string]string{}
		for range want {
			r := recv(t, c.sink.receipts, "receipt")
			got[r.CarrierID] = string(r.Status)
		}
		for id, status := range want {
			if got[id] != status {
				t.Errorf("receipt for %s: %q, want %s (all: %v)", id, got[id], status, got)
			}
		}
	})

	t.Run("bad password", func(t *testing.T) {
		t.Parallel()
		c := startCarrier(t, simConfig(sim.addr, "bad", "nope"), nil)
		c.waitFor(t, "the refusal", func() bool {
			err := c.Ready()
			return err != nil && strings.Contains(err.Error(), "ESME_RINVPASWD")
		})
	})

	t.Run("inbound", func(t *testing.T) {
		t.Parallel()
		c := startCarrier(t, simConfig(sim.addr, "mo", "pw2"), nil)
		c.waitReady(t)
		for _, text := range []string{"STOP now €", "Привет 😀"} {
			sim.run("mo", "+447700900123", "+447700900999", text, "mo")
			got := recv(t, c.sink.inbound, "inbound message")
			if got.From != "+447700900123" || got.To != "+447700900999" || got.Text != text || !strings.HasPrefix(got.CarrierID, "MO-") {
				t.Errorf("inbound %+v, want %q from +447700900123 to +447700900999", got, text)
			}
		}
	})
}

// TestSimulatorRestart checks that the carrier binds again after the SMSC
// was killed and started again, and sends through it.
func TestSimulatorRestart(t *testing.T) {
	t.Parallel()
	sim := privateSMSC(t)
	c := startCarrier(t, simConfig(sim.addr, "smsctl", "smsctl"), nil)
	c.waitReady(t)
	send := func() carrier.Accepted {
		t.Helper()
		acc, err := c.Submit(context.Background(), request("+447700900001", "hi"), 1)
		if err != nil {
			t.Fatal(err)
		}
		return acc
	}
	first := send()
	sim.run("kill")
	c.waitFor(t, "the bind to go down", func() bool { return c.Ready() != nil })
	sim.run("start")
	c.waitReady(t)
	again := send()
	// Ids restart with the simulator: proof it is a new one.
	if first.PartIDs[0] != "SMSC2001" || again.PartIDs[0] != "SMSC2001" {
		t.Errorf("ids %v then %v, want SMSC2001 from each simulator run", first.PartIDs, again.PartIDs)
	}
}
