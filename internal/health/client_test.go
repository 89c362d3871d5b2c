package health

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer answers every request with status and body and counts the requests.
func countingServer(t *testing.T, status int, body string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestPageLoopIsCut: a server that hands out a next page token forever is stopped after
// maxPages and reported as malformed, not followed until the job's timeout.
func TestPageLoopIsCut(t *testing.T) {
	t.Parallel()
	srv, n := countingServer(t, 200, `{"pairedDevices":[],"nextPageToken":"again"}`)
	c, err := New(Config{BaseURL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Session(testToken).LastSync(context.Background())
	if KindOf(err) != KindMalformed {
		t.Errorf("LastSync = %v, want malformed", err)
	}
	if n.Load() != maxPages {
		t.Errorf("%d requests, want %d", n.Load(), maxPages)
	}
}

// TestBackoffHonoursContext: a retry delay that would outlast the deadline is not waited for (the
// failure is returned at once, with no further attempt), and a context cancelled during a retry
// delay ends the call at once, as transient, wrapping the cancellation.
func TestBackoffHonoursContext(t *testing.T) {
	t.Parallel()
	srv, n := countingServer(t, 503, `{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}`)
	c, err := New(Config{BaseURL: srv.URL, HTTPClient: srv.Client(), MaxAttempts: 5, BaseBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The delay is at least 15 s (half of maxBackoff); the deadline is 5 s away.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err = c.Session(testToken).Identity(ctx)
	if KindOf(err) != KindTransient || time.Since(start) > 4*time.Second {
		t.Errorf("Identity = %v after %v, want the 503 as transient at once", err, time.Since(start))
	}
	if n.Load() != 1 {
		t.Errorf("%d requests, want 1 (no attempt after the deadline)", n.Load())
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	_, err = c.Session(testToken).Identity(ctx2)
	if KindOf(err) != KindTransient || !errors.Is(err, context.Canceled) {
		t.Errorf("Identity = %v, want transient wrapping the cancellation", err)
	}
	if n.Load() != 2 {
		t.Errorf("%d requests, want 2 (none after the cancellation)", n.Load())
	}
}

// TestEmptyBodyIsNoData: dailyRollUp has been observed to answer 200 with an empty body when
// there is no data; that is a Day without summary values, not an error.
func TestEmptyBodyIsNoData(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, 200, "")
	c, err := New(Config{BaseURL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	loc := mustLoad(t, "Asia/Kathmandu")
	d, err := c.Session(testToken).Day(context.Background(), Date{2026, 3, 8}, loc)
	if err != nil {
		t.Fatal(err)
	}
	if d.Summary != (Summary{}) || d.HeartRate != nil || d.Steps != nil || d.Calories != nil {
		t.Errorf("empty answers gave data: %+v", d)
	}
	if want := time.Date(2026, 3, 7, 18, 15, 0, 0, time.UTC); !d.Start.Equal(want) || d.Start.Location() != time.UTC {
		t.Errorf("Start = %v, want %v in UTC", d.Start, want)
	}
}

func TestDayRejectsBadInput(t *testing.T) {
	t.Parallel()
	srv, n := countingServer(t, 200, "{}")
	c, err := New(Config{BaseURL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Session(testToken)
	if _, err := s.Day(context.Background(), Date{2026, 3, 8}, nil); KindOf(err) != KindAPI {
		t.Errorf("nil location: %v", err)
	}
	if _, err := s.Day(context.Background(), Date{2026, 2, 30}, time.UTC); KindOf(err) != KindAPI {
		t.Errorf("impossible date: %v", err)
	}
	if n.Load() != 0 {
		t.Errorf("%d requests for invalid input", n.Load())
	}
}
