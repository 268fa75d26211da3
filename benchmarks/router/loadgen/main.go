// An open-loop HTTP/1.1 load generator for benchmarks/router, cheap enough per request that it
// and the backend share one core and still outrun the proxy under test on the other.
//
// Requests are sent on a fixed schedule, request i at start + i/rate, whatever the responses do:
// when every connection is busy a new one is opened (up to -max-conns), so a slow answer adds
// latency, not a gap in the offered load (the model of vegeta, github.com/tsenart/vegeta).
// Each connection is a keep-alive TCP connection speaking plain HTTP/1.1; responses may be
// Content-Length or chunked. It prints one JSON object:
//
//	requests, ok (2xx), success (ok / requests), sent_rps (requests over the send span),
//	throughput_rps (ok over the send span plus the wait for the last answer), latency_ms
//	(send to last byte read: mean, p50, p90, p99, p999, max), schedule_latency_ms (the same
//	from the scheduled send time, which also counts any lateness of the sender),
//	status_codes, errors, conns, refused_latency_ms (the same figures for 429 and 503 answers:
//	how fast a proxy sheds what it will not take), and the latency histogram (latency_hist_ns: [ns, count] pairs,
//	latency_sum_ns, latency_max_ns) for merging runs.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

// hist is a log-linear latency histogram in nanoseconds: exact below 1 us, then 128 sub-buckets
// per power of two (under 1 % error).
type hist struct {
	counts map[int]uint64
	n      uint64
	sum    float64
	max    int64
}

const subBits = 7

func bucket(v int64) int {
	if v < 1<<subBits {
		return int(v)
	}
	exp := 63 - bits.LeadingZeros64(uint64(v)) - subBits
	return (exp+1)<<subBits + int(v>>uint(exp)) - 1<<subBits
}

func bucketValue(b int) float64 { // the middle of the bucket
	if b < 1<<subBits {
		return float64(b)
	}
	exp := b>>subBits - 1
	low := int64(b&(1<<subBits-1)+1<<subBits) << uint(exp)
	return float64(low) + float64(int64(1)<<uint(exp))/2
}

func newHist() *hist { return &hist{counts: map[int]uint64{}} }

func (h *hist) add(v time.Duration) {
	ns := int64(v)
	h.counts[bucket(ns)]++
	h.n++
	h.sum += float64(ns)
	if ns > h.max {
		h.max = ns
	}
}

func (h *hist) merge(o *hist) {
	for b, c := range o.counts {
		h.counts[b] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	keys := make([]int, 0, len(h.counts))
	for b := range h.counts {
		keys = append(keys, b)
	}
	sort.Ints(keys)
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for _, b := range keys {
		seen += h.counts[b]
		if seen >= rank {
			return math.Min(bucketValue(b), float64(h.max))
		}
	}
	return float64(h.max)
}

// buckets lists [value ns, count] for each bucket used, so that runs can be merged.
func (h *hist) buckets() [][2]float64 {
	keys := make([]int, 0, len(h.counts))
	for b := range h.counts {
		keys = append(keys, b)
	}
	sort.Ints(keys)
	out := make([][2]float64, 0, len(keys))
	for _, b := range keys {
		out = append(out, [2]float64{bucketValue(b), float64(h.counts[b])})
	}
	return out
}

func (h *hist) summary() map[string]float64 {
	ms := func(ns float64) float64 { return math.Round(ns/1e3) / 1e3 }
	mean := 0.0
	if h.n > 0 {
		mean = h.sum / float64(h.n)
	}
	return map[string]float64{
		"mean": ms(mean), "p50": ms(h.quantile(0.50)), "p90": ms(h.quantile(0.90)),
		"p99": ms(h.quantile(0.99)), "p999": ms(h.quantile(0.999)), "max": ms(float64(h.max)),
	}
}

// worker owns one connection and its tallies; only its goroutine touches them until the end.
type worker struct {
	conn     net.Conn
	reader   *bufio.Reader
	latency  *hist
	schedule *hist
	refused  *hist
	codes    map[int]uint64
	errs     map[string]uint64
	ok       uint64
	first    time.Time
	last     time.Time
	end      time.Time
	sent     uint64
}

type config struct {
	addr    string
	request []byte
	timeout time.Duration
}

var errFormat = errors.New("malformed response")

func (w *worker) do(cfg *config, scheduled time.Time) {
	start := time.Now()
	if w.sent == 0 || start.Before(w.first) {
		w.first = start
	}
	if start.After(w.last) {
		w.last = start
	}
	w.sent++
	code, err := w.roundTrip(cfg, start)
	done := time.Now()
	if done.After(w.end) {
		w.end = done
	}
	if err != nil {
		msg := err.Error()
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			msg = "timeout"
		} else if len(msg) > 120 {
			msg = msg[:120]
		}
		w.errs[msg]++
		if w.conn != nil {
			w.conn.Close()
			w.conn = nil
		}
		return
	}
	w.codes[code]++
	if code >= 200 && code < 300 {
		w.ok++
		w.latency.add(done.Sub(start))
		w.schedule.add(done.Sub(scheduled))
	} else if code == 429 || code == 503 {
		w.refused.add(done.Sub(start))
	}
}

func (w *worker) roundTrip(cfg *config, start time.Time) (int, error) {
	if w.conn == nil {
		conn, err := net.DialTimeout("tcp", cfg.addr, cfg.timeout)
		if err != nil {
			return 0, err
		}
		conn.(*net.TCPConn).SetNoDelay(true)
		w.conn = conn
		if w.reader == nil {
			w.reader = bufio.NewReaderSize(conn, 16<<10)
		} else {
			w.reader.Reset(conn)
		}
	}
	w.conn.SetDeadline(start.Add(cfg.timeout))
	if _, err := w.conn.Write(cfg.request); err != nil {
		return 0, err
	}
	return w.readResponse()
}

func (w *worker) readResponse() (int, error) {
	line, err := w.reader.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, errFormat
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, errFormat
	}
	length, chunked, closing := int64(-1), false, line[7] == '0'
	for {
		header, err := w.reader.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		header = bytes.TrimRight(header, "\r\n")
		if len(header) == 0 {
			break
		}
		colon := bytes.IndexByte(header, ':')
		if colon < 0 {
			return 0, errFormat
		}
		name, value := header[:colon], bytes.TrimSpace(header[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil {
				return 0, errFormat
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				closing = true
			} else if bytes.EqualFold(value, []byte("keep-alive")) {
				closing = false
			}
		}
	}
	switch {
	case chunked:
		if err := w.readChunked(); err != nil {
			return 0, err
		}
	case length >= 0:
		if _, err := w.reader.Discard(int(length)); err != nil {
			return 0, err
		}
	default: // body to the end of the connection
		if _, err := io.Copy(io.Discard, w.reader); err != nil {
			return 0, err
		}
		closing = true
	}
	if closing {
		w.conn.Close()
		w.conn = nil
	}
	return code, nil
}

func (w *worker) readChunked() error {
	for {
		line, err := w.reader.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil {
			return errFormat
		}
		if size == 0 {
			for { // trailers, up to the blank line
				trailer, err := w.reader.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(trailer, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := w.reader.Discard(int(size) + 2); err != nil {
			return err
		}
	}
}

func main() {
	target := flag.String("url", "", "POST to this http:// URL")
	bodyFile := flag.String("body", "", "request body file")
	contentType := flag.String("content-type", "application/json", "")
	rate := flag.Float64("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 3*time.Second, "how long to send")
	timeout := flag.Duration("timeout", 5*time.Second, "per request")
	maxConns := flag.Int("max-conns", 2000, "connections (requests in flight) at most")
	flag.Parse()

	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		fmt.Fprintln(os.Stderr, "-url must be an http:// URL")
		os.Exit(2)
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	path := u.RequestURI()
	request := []byte(fmt.Sprintf(
		"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		path, u.Host, *contentType, len(body)))
	request = append(request, body...)
	cfg := &config{addr: u.Host, request: request, timeout: *timeout}

	total := int(math.Round(*rate * duration.Seconds()))
	interval := float64(time.Second) / *rate
	ticks := make(chan time.Time)
	var workers []*worker
	var wg sync.WaitGroup
	spawn := func() {
		w := &worker{latency: newHist(), schedule: newHist(), refused: newHist(), codes: map[int]uint64{}, errs: map[string]uint64{}}
		workers = append(workers, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for scheduled := range ticks {
				w.do(cfg, scheduled)
			}
			if w.conn != nil {
				w.conn.Close()
			}
		}()
	}
	for i := 0; i < 8 && i < *maxConns; i++ {
		spawn()
	}
	begin := time.Now()
	for i := 0; i < total; i++ {
		scheduled := begin.Add(time.Duration(float64(i) * interval))
		if wait := time.Until(scheduled); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case ticks <- scheduled:
		default:
			if len(workers) < *maxConns {
				spawn()
			}
			ticks <- scheduled
		}
	}
	close(ticks)
	wg.Wait()

	latency, schedule, refused := newHist(), newHist(), newHist()
	codes, errs := map[string]uint64{}, map[string]uint64{}
	var sent, ok uint64
	var first, last, end time.Time
	for _, w := range workers {
		if w.sent == 0 {
			continue
		}
		latency.merge(w.latency)
		schedule.merge(w.schedule)
		refused.merge(w.refused)
		for c, n := range w.codes {
			codes[strconv.Itoa(c)] += n
		}
		for e, n := range w.errs {
			errs[e] += n
		}
		sent += w.sent
		ok += w.ok
		if first.IsZero() || w.first.Before(first) {
			first = w.first
		}
		if w.last.After(last) {
			last = w.last
		}
		if w.end.After(end) {
			end = w.end
		}
	}
	span := last.Sub(first).Seconds()
	result := map[string]any{
		"target_rps": *rate, "requests": sent, "ok": ok, "success": 0.0,
		"sent_rps": 0.0, "throughput_rps": 0.0, "latency_ms": latency.summary(),
		"schedule_latency_ms": schedule.summary(), "status_codes": codes, "errors": errs,
		"conns": len(workers), "wait_ms": end.Sub(last).Seconds() * 1e3, "refused_latency_ms": refused.summary(),
		"latency_hist_ns": latency.buckets(), "latency_sum_ns": latency.sum,
		"latency_max_ns": latency.max,
	}
	if sent > 0 {
		result["success"] = float64(ok) / float64(sent)
	}
	if span > 0 {
		result["sent_rps"] = float64(sent-1) / span
		result["throughput_rps"] = float64(ok) / (span + end.Sub(last).Seconds())
	}
	json.NewEncoder(os.Stdout).Encode(result)
}
