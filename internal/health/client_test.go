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

// TestBackoffHonoursContext: a deadline that falls inside a retry delay ends the call at once,
// as transient, without a further attempt.
func TestBackoffHonoursContext(t *testing.T) {
	t.Parallel()
	srv, n := countingServer(t, 503, `{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}`)
	c, err := New(Config{BaseURL: srv.URL, HTTPClient: srv.Client(), MaxAttempts: 5, BaseBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Session(testToken).Identity(ctx)
	if KindOf(err) != KindTransient || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Identity = %v, want transient wrapping the deadline", err)
	}
	if n.Load() != 1 {
		t.Errorf("%d requests, want 1 (no attempt after the deadline)", n.Load())
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
