package syncer

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/studylab/sync-all/internal/auth"
	"github.com/studylab/sync-all/internal/health"
)

func TestCatchupDays(t *testing.T) {
	seoul, _ := time.LoadLocation("Asia/Seoul")
	la, _ := time.LoadLocation("America/Los_Angeles")
	d := func(s string) health.Date {
		x, err := health.ParseDate(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, tc := range []struct {
		name      string
		watermark time.Time
		loc       *time.Location
		today     string
		max       int
		want      []string
	}{
		{"first sync fetches today", time.Time{}, seoul, "2026-12-04", 7, []string{"2026-12-04"}},
		{"same day", time.Date(2026, 12, 4, 1, 0, 0, 0, time.UTC), seoul, "2026-12-04", 7, []string{"2026-12-04"}},
		// 14:58 UTC is 23:58 in Seoul: yesterday's last minutes are completed after midnight.
		{"just after local midnight", time.Date(2026, 12, 3, 14, 58, 0, 0, time.UTC), seoul, "2026-12-04", 7, []string{"2026-12-03", "2026-12-04"}},
		// The same instant is still Dec 3 in Los Angeles.
		{"zone decides the day", time.Date(2026, 12, 3, 14, 58, 0, 0, time.UTC), la, "2026-12-03", 7, []string{"2026-12-03"}},
		{"offline three days", time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), la, "2026-12-04", 7, []string{"2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"}},
		{"capped at max days", time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), la, "2026-12-04", 3, []string{"2026-12-02", "2026-12-03", "2026-12-04"}},
		{"watermark in the future", time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC), la, "2026-12-04", 7, []string{"2026-12-04"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, day := range catchupDays(tc.watermark, tc.loc, d(tc.today), tc.max) {
				got = append(got, day.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("days (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("refresh: %w", auth.ErrReconsent), ReasonReconsent},
		{fmt.Errorf("refresh: %w", auth.ErrTransient), ReasonNetwork},
		{fmt.Errorf("refresh: %w", auth.ErrClient), ReasonAPI},
		{&health.Error{Kind: health.KindReconsent}, ReasonReconsent},
		{fmt.Errorf("fetch: %w", &health.Error{Kind: health.KindRateLimited}), ReasonRateLimited},
		{&health.Error{Kind: health.KindTransient}, ReasonNetwork},
		{&health.Error{Kind: health.KindMalformed}, ReasonMalformed},
		{&health.Error{Kind: health.KindAPI, Status: 404}, ReasonAPI},
		{dbError{errors.New("connection reset")}, ReasonDB},
		{fmt.Errorf("save: %w", dbError{auth.ErrReconsent}), ReasonDB},
		{errors.New("something else"), ReasonAPI},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
