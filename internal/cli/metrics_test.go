package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/studylab/sync-all/internal/healthsim"
)

// gauge returns the value of the metric with the given label (or the unlabelled one).
func gauge(t *testing.T, fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
	for _, m := range f.GetMetric() {
		if label == "" && len(m.GetLabel()) == 0 {
			return m.GetGauge().GetValue()
		}
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{%s=%q} missing", name, label, value)
	return 0
}

func parseMetrics(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("metrics file is not Prometheus text format: %v", err)
	}
	return fams
}

func TestMetricsFileHasTheRunsRealNumbers(t *testing.T) {
	w := newWorld(t, worldOpts{participants: 4})
	ps := w.sim.Participants()
	w.sim.RevokeGrants(ps[0].LegacyUserID)
	w.sim.SetFault(ps[1].LegacyUserID, healthsim.Fault{Status: 429, Reason: "RATE_LIMIT_EXCEEDED"})
	path := filepath.Join(w.dir, "metrics", "sync_all.prom")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	r := w.run(w.env(), "run", "--metrics-file", path)
	if r.code != ExitPartial {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	run := w.lastRun()
	fams := parseMetrics(t, path)
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"sync_all_last_run_participants", "outcome", "synced", float64(run.UsersOK)},
		{"sync_all_last_run_participants", "outcome", "failed", float64(run.UsersFailed)},
		{"sync_all_last_run_participants", "outcome", "skipped", float64(run.UsersSkipped)},
		{"sync_all_last_run_records", "kind", "inserted", float64(run.Counts.Inserted)},
		{"sync_all_last_run_records", "kind", "updated", 0},
		{"sync_all_last_run_failures", "reason", "reconsent", 1},
		{"sync_all_last_run_failures", "reason", "rate_limited", 1},
		{"sync_all_participants_needing_reconsent", "", "", 1},
		{"sync_all_last_run_api_rate_limited", "", "", 1},
		{"sync_all_last_run_success", "", "", 0},
	} {
		if got := gauge(t, fams, c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
	if got := gauge(t, fams, "sync_all_last_run_api_requests", "", ""); got < 4 {
		t.Errorf("api requests = %v", got)
	}
	if _, ok := fams["sync_all_last_success_timestamp_seconds"]; ok {
		t.Errorf("a failed first run reported a last success time")
	}

	// A clean run sets the success time; a later failing run keeps it.
	w.sim.ClearFaults(ps[1].LegacyUserID)
	w.clock.Add(5 * time.Minute)
	w.mustRun("run", "--metrics-file", path)
	fams = parseMetrics(t, path)
	okAt := gauge(t, fams, "sync_all_last_success_timestamp_seconds", "", "")
	if want := float64(w.clock.Now().Unix()); okAt < want-1 || okAt > want+1 {
		t.Errorf("last success = %v, want about %v", okAt, want)
	}
	w.sim.SetFault(ps[2].LegacyUserID, healthsim.Fault{Status: 500})
	w.clock.Add(5 * time.Minute)
	w.run(w.env(), "run", "--metrics-file", path, "--min-interval", "0s")
	if got := gauge(t, parseMetrics(t, path), "sync_all_last_success_timestamp_seconds", "", ""); got != okAt {
		t.Errorf("a failing run moved the last success time from %v to %v", okAt, got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("metrics file mode: %v %v", fi.Mode(), err)
	}
}

func TestHealthcheckPings(t *testing.T) {
	var mu sync.Mutex
	var pings []string
	hc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		pings = append(pings, r.URL.Path)
		mu.Unlock()
	}))
	defer hc.Close()
	w := newWorld(t, worldOpts{participants: 2})
	w.mustRun("run", "--healthcheck-url", hc.URL+"/ping/abc")
	w.sim.SetFault(w.sim.Participants()[0].LegacyUserID, healthsim.Fault{Status: 500})
	w.clock.Add(5 * time.Minute)
	w.sim.SyncDevice(w.sim.Participants()[0].LegacyUserID)
	w.run(w.env(), "run", "--healthcheck-url", hc.URL+"/ping/abc")
	mu.Lock()
	defer mu.Unlock()
	want := []string{"/ping/abc/start", "/ping/abc", "/ping/abc/start", "/ping/abc/fail"}
	if strings.Join(pings, " ") != strings.Join(want, " ") {
		t.Errorf("pings %v, want %v", pings, want)
	}
}
