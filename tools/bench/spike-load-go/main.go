// Command spike-load is bench:spike's load generator written in Go: the same
// open loop as spike-load.ts's "grpc" threads (and the closed loop that
// measures capacity), for the same report.
//
// Why: the load generator runs on the two cores the orders server and
// MariaDB run on. The Node threads' event loops lagged 150–180 ms at p99
// sending ten times the server's capacity, and every latency they measured
// included that. grpc-go takes about as much CPU (110–130 µs a call here),
// but each answer is handled as it arrives, on goroutines the Go scheduler
// spreads over the cores, so what the bench measures is more of the server
// and less of its client. spike.ts builds
// this program into .stockroom/bin when Go is installed (BENCH_SPIKE_CLIENT
// chooses) and reads its report as it reads a load thread's.
//
// It reads one task (JSON, spike-load.ts's LoadTask plus a mode) on stdin
// and writes one report (JSON, spike-load.ts's LoadReport) on stdout.
// Requests are encoded by hand (stockroom.order.v1.CreateOrderRequest: the
// request id, one line, the buyer reference): it has no generated code.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"regexp"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

type phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"`
}

type task struct {
	// Mode is "open" (the phases on schedule) or "closed" (Buyers in a closed loop for Seconds, after WarmSeconds).
	Mode        string  `json:"mode"`
	URL         string  `json:"url"`
	APIKey      string  `json:"apiKey"`
	Connections int     `json:"connections"`
	Phases      []phase `json:"phases"`
	// StartAt is when the open loop starts, in ms since the epoch.
	StartAt     float64 `json:"startAt"`
	Skus        int     `json:"skus"`
	Name        string  `json:"name"`
	Buyers      int     `json:"buyers"`
	Seconds     float64 `json:"seconds"`
	WarmSeconds float64 `json:"warmSeconds"`
}

type call struct {
	At        float64 `json:"at"`
	Ms        float64 `json:"ms"`
	Outcome   string  `json:"outcome"`
	Via       string  `json:"via"`
	RetryInfo bool    `json:"retryInfo"`
	// Reason is a shed call's message with its numbers as N, up to its retry
	// delay: which of the server's refusals it was (spike.ts tallies them).
	Reason string `json:"reason,omitempty"`
}

type acknowledged struct {
	OrderID  string `json:"orderId"`
	Sku      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type lag struct {
	P99Ms float64 `json:"p99Ms"`
	MaxMs float64 `json:"maxMs"`
}

type report struct {
	Calls        []call         `json:"calls"`
	Acknowledged []acknowledged `json:"acknowledged"`
	Unexpected   [][2]any       `json:"unexpected"`
	// Lag is the schedule loop's lateness per second: how much later than asked its 2 ms sleeps woke.
	Lag []*lag `json:"lag"`
	// CPUSeconds is the open loop's CPU per phase (empty for the closed loop).
	CPUSeconds []float64 `json:"cpuSeconds"`
	Retries    int       `json:"retries"`
	Early      []string  `json:"early"`
	Lost       [][2]any  `json:"lost"`
	// Placed is the closed loop's orders placed in its measured seconds.
	Placed int `json:"placed"`
}

// rawCodec passes the hand-encoded bytes through: grpc-go frames them, nothing else.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	p := v.(*[]byte)
	*p = append((*p)[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

const method = "/stockroom.order.v1.OrderService/CreateOrder"

// tally counts events by kind under a lock.
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(kind string) {
	t.mu.Lock()
	t.m[kind]++
	t.mu.Unlock()
}

func (t *tally) pairs() [][2]any {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := [][2]any{}
	for k, n := range t.m {
		out = append(out, [2]any{k, n})
	}
	return out
}

type client struct {
	conns      []*grpc.ClientConn
	next       atomic.Uint64
	ctx        context.Context
	skus       int
	unexpected *tally
	lost       *tally
}

func newClient(t *task) (*client, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, err
	}
	c := &client{
		ctx:        metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+t.APIKey),
		skus:       t.Skus,
		unexpected: &tally{m: map[string]int{}},
		lost:       &tally{m: map[string]int{}},
	}
	for i := 0; i < max(1, t.Connections); i++ {
		conn, err := grpc.NewClient("passthrough:///"+u.Host,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
			// Fixed windows: no BDP pings beside the calls.
			grpc.WithInitialWindowSize(1<<20),
			grpc.WithInitialConnWindowSize(1<<20),
		)
		if err != nil {
			return nil, err
		}
		conn.Connect()
		c.conns = append(c.conns, conn)
		// A connection that leaves READY was closed or lost; grpc-go reconnects, as a client does. Counted.
		go func() {
			state := conn.GetState()
			for conn.WaitForStateChange(context.Background(), state) {
				next := conn.GetState()
				if state == connectivity.Ready && next != connectivity.Ready && next != connectivity.Shutdown {
					c.lost.add("connection left READY: " + next.String())
				}
				if next == connectivity.Shutdown {
					return
				}
				state = next
			}
		}()
	}
	return c, nil
}

func (c *client) close() {
	for _, conn := range c.conns {
		conn.Close()
	}
}

func (c *client) conn() *grpc.ClientConn {
	return c.conns[(c.next.Add(1)-1)%uint64(len(c.conns))]
}

// encodeRequest is stockroom.order.v1.CreateOrderRequest{request_id, lines: [{sku, quantity}], buyer_reference}.
func encodeRequest(requestID, sku string, quantity int) []byte {
	var line []byte
	line = protowire.AppendTag(line, 1, protowire.BytesType)
	line = protowire.AppendString(line, sku)
	line = protowire.AppendTag(line, 2, protowire.VarintType)
	line = protowire.AppendVarint(line, uint64(quantity))
	b := make([]byte, 0, 64+len(requestID)+len(line))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, requestID)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, line)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, "black-friday")
	return b
}

// field returns the first length-delimited field number n of a message.
func field(b []byte, n protowire.Number) ([]byte, bool) {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, false
		}
		b = b[l:]
		if num == n && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			return v, m >= 0
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, false
		}
		b = b[m:]
	}
	return nil, false
}

// order places one order of a random SKU, 1 or 2 units, and classifies the
// answer as spike-load.ts's createOrderer does. Its latency counts from
// arrived, when the loop sent it on its way: a goroutine that starts late
// is the client's delay, and the buyer waits it out all the same.
func (c *client) order(requestID string, arrived time.Time) (call, *acknowledged) {
	sku := "SPIKE-" + strconv.Itoa(rand.IntN(c.skus))
	quantity := 1 + rand.IntN(2)
	req := encodeRequest(requestID, sku, quantity)
	var resp []byte
	err := c.conn().Invoke(c.ctx, method, &req, &resp)
	ms := float64(time.Since(arrived).Nanoseconds()) / 1e6
	if err == nil {
		order, ok := field(resp, 1)
		id, ok2 := field(order, 1)
		if !ok || !ok2 || len(id) == 0 {
			c.unexpected.add("grpc: an OK answer without an order id")
			return call{Ms: ms, Outcome: "error", Via: "grpc"}, nil
		}
		return call{Ms: ms, Outcome: "admitted", Via: "grpc"}, &acknowledged{OrderID: string(id), Sku: sku, Quantity: quantity}
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.ResourceExhausted:
		retryInfo := false
		for _, d := range st.Proto().GetDetails() {
			if strings.HasSuffix(d.GetTypeUrl(), "/google.rpc.RetryInfo") {
				retryInfo = true
			}
		}
		return call{Ms: ms, Outcome: "shed", Via: "grpc", RetryInfo: retryInfo, Reason: shedReason(st.Message())}, nil
	case codes.FailedPrecondition:
		return call{Ms: ms, Outcome: "refused", Via: "grpc"}, nil
	}
	c.unexpected.add(fmt.Sprintf("grpc: [%s] %s", st.Code(), st.Message()))
	return call{Ms: ms, Outcome: "error", Via: "grpc"}, nil
}

var digits = regexp.MustCompile(`[0-9]+`)

// shedReason is a refusal's message without its figures and retry delay
// (spike-load.ts's shedReason).
func shedReason(message string) string {
	message, _, _ = strings.Cut(message, ";")
	return digits.ReplaceAllString(message, "N")
}

func cpuSeconds() float64 {
	var u syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return float64(u.Utime.Nano()+u.Stime.Nano()) / 1e9
}

func epochMs() float64 { return float64(time.Now().UnixNano()) / 1e6 }

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// results gathers what the calls in flight report.
type results struct {
	mu    sync.Mutex
	calls []call
	acks  []acknowledged
	wg    sync.WaitGroup
}

func (r *results) send(c *client, requestID string, at float64) {
	r.wg.Add(1)
	arrived := time.Now()
	go func() {
		defer r.wg.Done()
		result, ack := c.order(requestID, arrived)
		result.At = at
		r.mu.Lock()
		r.calls = append(r.calls, result)
		if ack != nil {
			r.acks = append(r.acks, *ack)
		}
		r.mu.Unlock()
	}()
}

func openLoop(t *task, c *client) *report {
	total := 0.0
	expected := 0.0
	for _, p := range t.Phases {
		total += p.Seconds
		expected += p.Rate * p.Seconds
	}
	r := &results{calls: make([]call, 0, int(expected)+64)}
	// Warm up (connections, the server's first calls) before the loop, as the Node threads do.
	for round := 0; round < 5 && epochMs() < t.StartAt-500; round++ {
		for i := 0; i < 8; i++ {
			r.send(c, fmt.Sprintf("spike-%s-warm-%d-%d", t.Name, round, i), -1)
		}
		r.wg.Wait()
	}
	r.mu.Lock()
	r.calls = r.calls[:0] // the warm-up's calls are not the loop's; their acknowledged orders are kept
	r.mu.Unlock()
	if wait := t.StartAt - epochMs(); wait > 0 {
		time.Sleep(time.Duration(wait * float64(time.Millisecond)))
	}
	due := func(at float64) int {
		n, start := 0.0, 0.0
		for _, p := range t.Phases {
			n += p.Rate * math.Max(0, math.Min(at, start+p.Seconds)-start)
			start += p.Seconds
		}
		return int(math.Floor(n))
	}
	lags := make([]*lag, int(math.Ceil(total)))
	var lateness []float64
	closeSecond := func(s int) {
		if s >= 0 && s < len(lags) && len(lateness) > 0 {
			sort.Float64s(lateness)
			lags[s] = &lag{P99Ms: round1(percentile(lateness, 99)), MaxMs: round1(lateness[len(lateness)-1])}
		}
		lateness = lateness[:0]
	}
	cpuAt := []float64{cpuSeconds()}
	sent, second, ph := 0, 0, 0
	phaseEnd := t.Phases[0].Seconds
	const tick = 2 * time.Millisecond
	for {
		at := (epochMs() - t.StartAt) / 1000
		if int(at) > second {
			closeSecond(second)
			second = int(at)
		}
		for at >= phaseEnd && ph < len(t.Phases) {
			cpuAt = append(cpuAt, cpuSeconds())
			ph++
			if ph < len(t.Phases) {
				phaseEnd += t.Phases[ph].Seconds
			}
		}
		if at >= total {
			break
		}
		for target := due(at); sent < target; sent++ {
			r.send(c, fmt.Sprintf("spike-%s-%d", t.Name, sent), at)
		}
		before := time.Now()
		time.Sleep(tick)
		lateness = append(lateness, float64((time.Since(before)-tick).Microseconds())/1000)
	}
	r.wg.Wait()
	cpu := make([]float64, len(t.Phases))
	for i := range t.Phases {
		end := cpuAt[len(cpuAt)-1]
		if i+1 < len(cpuAt) {
			end = cpuAt[i+1]
		}
		if i < len(cpuAt) {
			cpu[i] = end - cpuAt[i]
		}
	}
	return &report{Calls: r.calls, Acknowledged: r.acks, Lag: lags, CPUSeconds: cpu}
}

func closedLoop(t *task, c *client) *report {
	r := &results{}
	run := func(seconds float64, prefix string) int {
		end := time.Now().Add(time.Duration(seconds * float64(time.Second)))
		var placed int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for b := 0; b < t.Buyers; b++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; time.Now().Before(end); i++ {
					_, ack := c.order(fmt.Sprintf("%s-%s-%d-%d", prefix, t.Name, b, i), time.Now())
					if ack != nil {
						mu.Lock()
						placed++
						r.acks = append(r.acks, *ack)
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		return placed
	}
	if t.WarmSeconds > 0 {
		run(t.WarmSeconds, "capacity-warm")
	}
	placed := run(t.Seconds, "capacity")
	return &report{Acknowledged: r.acks, Placed: placed, CPUSeconds: []float64{}}
}

func main() {
	var t task
	if err := json.NewDecoder(os.Stdin).Decode(&t); err != nil {
		fmt.Fprintln(os.Stderr, "spike-load: reading the task:", err)
		os.Exit(2)
	}
	if t.Skus < 1 || (t.Mode == "open" && len(t.Phases) == 0) || (t.Mode == "closed" && (t.Buyers < 1 || t.Seconds <= 0)) ||
		(t.Mode != "open" && t.Mode != "closed") {
		fmt.Fprintf(os.Stderr, "spike-load: not a task: %+v\n", t)
		os.Exit(2)
	}
	// Fewer collections: every call allocates its stream's objects, and memory is plentiful beside 2 cores.
	// GOGC and GOMEMLIMIT in the environment, as Go reads them, take precedence.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	// SPIKE_LOAD_CPUPROFILE=<file>: where this generator's own CPU goes (go tool pprof).
	if file := os.Getenv("SPIKE_LOAD_CPUPROFILE"); file != "" {
		f, err := os.Create(file)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	c, err := newClient(&t)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spike-load:", err)
		os.Exit(1)
	}
	var out *report
	if t.Mode == "open" {
		out = openLoop(&t, c)
	} else {
		out = closedLoop(&t, c)
	}
	c.close()
	out.Unexpected = c.unexpected.pairs()
	out.Lost = c.lost.pairs()
	if out.Calls == nil {
		out.Calls = []call{}
	}
	if out.Acknowledged == nil {
		out.Acknowledged = []acknowledged{}
	}
	if out.Early == nil {
		out.Early = []string{}
	}
	if out.Lag == nil {
		out.Lag = []*lag{}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "spike-load: writing the report:", err)
		os.Exit(1)
	}
}
