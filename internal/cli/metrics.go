package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/studylab/sync-all/internal/store"
	"github.com/studylab/sync-all/internal/syncer"
)

const metricLastSuccess = "sync_all_last_success_timestamp_seconds"

// writeMetrics writes the run's figures in the Prometheus text format for node_exporter's
// textfile collector: to a temporary file in the same folder, then renamed over the old one, so
// the collector never reads half a file.
func writeMetrics(path string, run store.Run, res syncer.Result, api *apiTransport, needReconsent int) error {
	lastSuccess := previousGauge(path, metricLastSuccess)
	if run.Status == store.RunOK {
		lastSuccess = float64(run.FinishedAt.UnixMilli()) / 1000
	}
	var b bytes.Buffer
	gauge := func(name, help string, labels map[string]string, v float64) {
		if !strings.Contains(b.String(), "# HELP "+name+" ") {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
		}
		fmt.Fprintf(&b, "%s%s %s\n", name, labelString(labels), strconv.FormatFloat(v, 'f', -1, 64))
	}
	gauge("sync_all_last_run_timestamp_seconds", "When the last run finished (Unix time).", nil, float64(run.FinishedAt.UnixMilli())/1000)
	if lastSuccess > 0 {
		gauge(metricLastSuccess, "When the last run that synced every participant finished (Unix time).", nil, lastSuccess)
	}
	gauge("sync_all_last_run_duration_seconds", "Duration of the last run.", nil, run.FinishedAt.Sub(run.StartedAt).Seconds())
	gauge("sync_all_last_run_success", "1 if the last run synced every selected participant, else 0.", nil, boolFloat(run.Status == store.RunOK))
	for _, o := range []struct {
		name string
		n    int
	}{{"synced", res.UsersOK - res.UsersUnchanged}, {"unchanged", res.UsersUnchanged}, {"failed", res.UsersFailed}, {"skipped", res.UsersSkipped}} {
		gauge("sync_all_last_run_participants", "Participants of the last run by outcome.", map[string]string{"outcome": o.name}, float64(o.n))
	}
	reasons := make([]string, 0, len(res.FailuresBy))
	for r := range res.FailuresBy {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		gauge("sync_all_last_run_failures", "Failed participants of the last run by reason.", map[string]string{"reason": r}, float64(res.FailuresBy[r]))
	}
	for _, k := range []struct {
		name string
		n    int64
	}{{"inserted", res.Counts.Inserted}, {"updated", res.Counts.Updated}, {"unchanged", res.Counts.Unchanged}} {
		gauge("sync_all_last_run_records", "Rows written by the last run by kind.", map[string]string{"kind": k.name}, float64(k.n))
	}
	gauge("sync_all_last_run_api_requests", "Google Health API requests made by the last run.", nil, float64(api.calls.Load()))
	gauge("sync_all_last_run_api_rate_limited", "Google Health API answers 429 in the last run.", nil, float64(api.limited.Load()))
	gauge("sync_all_participants_needing_reconsent", "Participants whose consent is gone (status needs_reconsent).", nil, float64(needReconsent))

	tmp, err := os.CreateTemp(filepath.Dir(path), ".metrics-*.prom")
	if err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write metrics: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write metrics: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// previousGauge reads an unlabelled gauge from the last metrics file, so a failed run keeps
// reporting when the last good one finished.
func previousGauge(path, name string) float64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			x, _ := strconv.ParseFloat(v, 64)
			return x
		}
	}
	return 0
}

func labelString(l map[string]string) string {
	if len(l) == 0 {
		return ""
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, l[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
