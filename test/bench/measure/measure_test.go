package measure

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want time.Duration
		bad  bool
	}{
		{name: "plain", in: "42 (envoy) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3", want: 3 * time.Second},
		{name: "name with spaces and parens", in: "7 (a b) c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 2 3", want: 30 * time.Millisecond},
		{name: "no name", in: "7 R 1", bad: true},
		{name: "too short", in: "7 (x) R 1 2", bad: true},
		{name: "not a number", in: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 x 2 0 0", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStat(tc.in)
			if (err != nil) != tc.bad {
				t.Fatalf("parseStat error = %v, want error %v", err, tc.bad)
			}
			if !tc.bad && got != tc.want {
				t.Errorf("parseStat = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseHWM(t *testing.T) {
	t.Parallel()
	got, err := parseHWM("Name:\tx\nVmPeak:\t 9999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 100 kB\n")
	if err != nil || got != 20 {
		t.Errorf("parseHWM = %v, %v; want 20 MiB", got, err)
	}
	if _, err := parseHWM("Name:\tx\n"); err == nil {
		t.Error("parseHWM without VmHWM: no error")
	}
}

// TestRunCountsAndBounds: allowed answers and errors are counted apart, the
// duration bounds the run, and this process's CPU is read.
func TestRunCountsAndBounds(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	start := time.Now()
	r, err := Run(t.Context(), Load{
		Concurrency: 4, Duration: 100 * time.Millisecond, Pids: []int{os.Getpid()},
		Do: func(context.Context, int) error {
			time.Sleep(time.Millisecond)
			if n.Add(1)%4 == 0 {
				return errors.New("denied")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a 100 ms load took %s", took)
	}
	if r.Requests == 0 || r.Errors == 0 || int64(r.Requests+r.Errors) != n.Load() {
		t.Errorf("requests %d + errors %d, want both > 0 and summing to %d calls", r.Requests, r.Errors, n.Load())
	}
	if r.FirstError == nil || len(r.CPU) != 1 || r.P50 <= 0 || r.P99 < r.P50 || r.PerSec <= 0 {
		t.Errorf("result incomplete: %+v", r)
	}
}

func TestRunWithoutAnyAllowedAnswerFails(t *testing.T) {
	t.Parallel()
	_, err := Run(t.Context(), Load{Concurrency: 1, Duration: 20 * time.Millisecond,
		Do: func(context.Context, int) error { return &StatusError{Status: 401} }})
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 401 {
		t.Errorf("Run = %v, want an error carrying status 401", err)
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	rs := []Result{{Requests: 3, P50: 30}, {Requests: 1, P50: 10}, {Requests: 2, P50: 20}}
	if m := Median(rs, func(r Result) time.Duration { return r.P50 }); m.Requests != 2 {
		t.Errorf("Median picked %+v, want the middle one", m)
	}
}
