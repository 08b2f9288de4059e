// Package measure holds what the benchmark commands share to account for a
// server under load: a process's CPU time and peak resident set from /proc,
// and a bounded load loop that reads those before and after.
//
// Every number here is only meaningful as a ratio against another one taken
// in the same run on the same machine: the machines these run on are shared.
package measure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tick is one clock tick of /proc/<pid>/stat's utime and stime. Linux fixes
// USER_HZ at 100 for user space whatever the kernel's own HZ.
const tick = 10 * time.Millisecond

// CPU is a process's user+system CPU time so far, all its threads, from
// /proc/<pid>/stat (10 ms resolution: load long enough for that not to matter).
func CPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	return parseStat(string(raw))
}

// parseStat reads utime+stime from a /proc/<pid>/stat line.
func parseStat(s string) (time.Duration, error) {
	// The command name is in parentheses and may hold spaces and ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, errors.New("parse /proc stat: no command name")
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc stat: %d fields after the name, want 13 or more", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc stat: %w", err)
	}
	return time.Duration(utime+stime) * tick, nil
}

// PeakRSS is a process's high-water resident set (VmHWM) in MiB: the most it
// ever held, over its whole life so far.
func PeakRSS(pid int) (float64, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read peak RSS of pid %d: %w", pid, err)
	}
	return parseHWM(string(raw))
}

// parseHWM reads VmHWM from a /proc/<pid>/status document, in MiB.
func parseHWM(s string) (float64, error) {
	for line := range strings.SplitSeq(s, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmHWM: %w", err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("parse /proc status: no VmHWM line")
}

// Load is one bounded run of requests.
type Load struct {
	// Concurrency is the number of workers, each with one request in flight.
	Concurrency int
	// Duration is how long the workers send requests.
	Duration time.Duration
	// Do sends one request from worker w and returns nil only if it was the
	// allowed answer; anything else counts as an error.
	Do func(ctx context.Context, w int) error
	// Pids are the processes whose CPU time is read before and after.
	Pids []int
}

// maxPerWorker bounds each worker's loop whatever the duration.
const maxPerWorker = 10_000_000

// Result is what one Load measured.
type Result struct {
	// Requests are the allowed answers; Errors every other outcome.
	Requests, Errors int
	// PerSec is allowed answers per second of wall time.
	PerSec float64
	// P50 and P99 are latencies of allowed answers.
	P50, P99 time.Duration
	// CPU is each of Load.Pids' CPU time per allowed answer, in that order.
	CPU []time.Duration
	// FirstError is the first error a worker saw, for the report.
	FirstError error
}

// Run runs l: l.Concurrency workers call l.Do until l.Duration has passed
// (or ctx ends), and the Pids' CPU time is read around them.
func Run(ctx context.Context, l Load) (Result, error) {
	if l.Concurrency < 1 || l.Duration <= 0 || l.Do == nil {
		return Result{}, errors.New("measure: Load needs Concurrency ≥ 1, a Duration and Do")
	}
	before, err := cpus(l.Pids)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	deadline := start.Add(l.Duration)
	var (
		mu    sync.Mutex
		lat   []time.Duration
		errs  int
		first error
		wg    sync.WaitGroup
	)
	for w := range l.Concurrency {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			bad := 0
			var firstLocal error
			for n := 0; n < maxPerWorker && ctx.Err() == nil && time.Now().Before(deadline); n++ {
				t0 := time.Now()
				if err := l.Do(ctx, w); err != nil {
					bad++
					if firstLocal == nil {
						firstLocal = err
					}
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += bad
			if first == nil {
				first = firstLocal
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	after, err := cpus(l.Pids)
	if err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("load interrupted: %w", err)
	}
	if len(lat) == 0 {
		return Result{}, fmt.Errorf("no allowed answer in %s (%d errors, first: %w)", l.Duration, errs, first)
	}
	slices.Sort(lat)
	r := Result{
		Requests: len(lat), Errors: errs, FirstError: first,
		PerSec: float64(len(lat)) / elapsed.Seconds(),
		P50:    lat[len(lat)/2], P99: lat[len(lat)*99/100],
	}
	for i := range l.Pids {
		r.CPU = append(r.CPU, (after[i]-before[i])/time.Duration(len(lat)))
	}
	return r, nil
}

// cpus reads every pid's CPU time.
func cpus(pids []int) ([]time.Duration, error) {
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		var err error
		if out[i], err = CPU(pid); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Median is the result of the round whose key is the median one (rounds
// are interleaved across configurations, so the median round is the one
// least moved by what else ran on the machine). Any per-round result type
// will do: make bench keeps its own.
func Median[R any](rs []R, key func(R) time.Duration) R {
	s := slices.Clone(rs)
	slices.SortStableFunc(s, func(a, b R) int {
		ka, kb := key(a), key(b)
		switch {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

// StatusError is an answer whose status was not the allowed one.
type StatusError struct {
	// Status is the status code received.
	Status int
}

// Error says which status came.
func (e *StatusError) Error() string { return "status " + strconv.Itoa(e.Status) }

// Get sends GET url with header through hc, reads the body to the end (so
// the connection is reused), and returns nil only if the status is want.
func Get(ctx context.Context, hc *http.Client, url string, header http.Header, want int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header = header
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return resp, &StatusError{Status: resp.StatusCode}
	}
	return resp, nil
}
