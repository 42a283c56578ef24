package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/smsctl/smsctl/platform/platformtest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "smsctl-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "smsctl")
	build := exec.Command("go", "build", "-race", "-o", binary, "..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build smsctl:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	// Every test stops the processes, clients and pools it started.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// platform is one test's deployment: a database, topics, a group, a token.
type platform struct {
	t           testing.TB
	env         []string
	apiKey      string
	apiAddr     string
	databaseURL string
	topic       string
}

func newPlatform(t testing.TB) *platform {
	t.Helper()
	return newPlatformOn(t, platformtest.NewDatabase(t), nil)
}

// newPlatformOn deploys on the given database and brokers (nil: the test
// default).
func newPlatformOn(t testing.TB, databaseURL string, brokers []string) *platform {
	t.Helper()
	topic := platformtest.UniqueTopic("sms.requests")
	if brokers == nil {
		brokers = platformtest.KafkaBrokers(t, topic, topic+".dlq")
	}
	p := &platform{t: t, apiAddr: freeAddr(t), databaseURL: databaseURL, topic: topic}
	p.env = []string{
		"SMS_DATABASE_URL=" + databaseURL,
		"SMS_KAFKA_BROKERS=" + strings.Join(brokers, ","),
		"SMS_KAFKA_TOPIC=" + topic,
		"SMS_KAFKA_DLQ_TOPIC=" + topic + ".dlq",
		"SMS_KAFKA_GROUP=" + platformtest.UniqueTopic("processor-service"),
		"SMS_INTERNAL_TOKEN=e2e-internal-token-0123456789",
		"SMS_HTTP_ADDR=" + p.apiAddr,
		"SMS_API_URL=http://" + p.apiAddr,
		"SMS_LOG_LEVEL=info",
	}
	p.run("migrate", "up")
	out := p.run("apikey", "create", "--account", "e2e")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	p.apiKey = lines[len(lines)-1]
	return p
}

// run runs a short smsctl command and returns its stdout.
func (p *platform) run(args ...string) string {
	p.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), p.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("smsctl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// proc is a running smsctl process whose output is kept for failures.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs smsctl with args and extra environment, and waits until
// readyURL answers 200.
func (p *platform) start(name, readyURL string, extraEnv []string, args ...string) *proc {
	p.t.Helper()
	pr := &proc{name: name, done: make(chan struct{})}
	pr.cmd = exec.Command(binary, args...)
	pr.cmd.Env = append(append(os.Environ(), p.env...), extraEnv...)
	pr.cmd.Stdout, pr.cmd.Stderr = pr, pr
	if err := pr.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", name, err)
	}
	go func() { pr.err = pr.cmd.Wait(); close(pr.done) }()
	p.t.Cleanup(func() {
		pr.kill()
		if p.t.Failed() {
			p.t.Logf("--- output of %s ---\n%s", name, tail(pr.output(), 60))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return pr
			}
		}
		select {
		case <-pr.done:
			p.t.Fatalf("%s exited before it was ready: %v\n%s", name, pr.err, pr.output())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready after 30s\n%s", name, pr.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *platform) startAPI(extraEnv ...string) *proc {
	p.t.Helper()
	return p.start("api", "http://"+p.apiAddr+"/readyz", extraEnv, "serve", "api")
}

func (p *platform) startProcessor(name string, extraEnv ...string) *proc {
	p.t.Helper()
	pr, _ := p.startProcessorAt(name, true, extraEnv...)
	return pr
}

// startProcessorAt starts a processor and returns it with the address of
// its /healthz, /readyz and /metrics. With ready false it waits for
// /healthz only: a processor that cannot bind its carrier is alive but
// never ready.
func (p *platform) startProcessorAt(name string, ready bool, extraEnv ...string) (*proc, string) {
	p.t.Helper()
	addr := freeAddr(p.t)
	path := "/readyz"
	if !ready {
		path = "/healthz"
	}
	env := append([]string{"SMS_PROCESSOR_HTTP_ADDR=" + addr}, extraEnv...)
	return p.start(name, "http://"+addr+path, env, "serve", "processor"), addr
}

// stop sends SIGTERM and waits for a clean exit.
func (pr *proc) stop(t testing.TB) {
	t.Helper()
	pr.terminate()
	pr.wait(t)
}

// terminate sends SIGTERM without waiting.
func (pr *proc) terminate() { _ = pr.cmd.Process.Signal(syscall.SIGTERM) }

// wait waits for a clean exit after SIGTERM.
func (pr *proc) wait(t testing.TB) {
	t.Helper()
	select {
	case <-pr.done:
		if pr.err != nil {
			t.Errorf("%s exited with %v after SIGTERM\n%s", pr.name, pr.err, tail(pr.output(), 40))
		}
	case <-time.After(40 * time.Second):
		t.Errorf("%s did not stop within 40s of SIGTERM", pr.name)
		pr.kill()
	}
}

// kill sends SIGKILL: no cleanup, no goodbye.
func (pr *proc) kill() {
	select {
	case <-pr.done:
		return
	default:
	}
	_ = pr.cmd.Process.Kill()
	<-pr.done
}

// freeAddr returns a loopback address nobody listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(freePorts(t, 1))
}

// freePorts returns the first of n consecutive free loopback ports, chosen
// below the kernel's ephemeral range: a port from that range can be taken by
// any outgoing connection between this check and the server's bind (a
// private broker failed to bind its controller port, PORT+1, that way in CI).
func freePorts(t testing.TB, n int) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	const first = 20000
	if low-n <= first {
		t.Fatalf("ephemeral port range starts at %d: no room below it for test servers", low)
	}
	for range 200 {
		base := first + rand.IntN(low-n-first)
		if portsFree(base, n) {
			return base
		}
	}
	t.Fatalf("no %d free consecutive ports found between %d and %d", n, first, low)
	return 0
}

func portsFree(base, n int) bool {
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		held = append(held, ln)
	}
	return true
}

func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	platformtest.Eventually(t, within, 200*time.Millisecond, what, cond)
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
